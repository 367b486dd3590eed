"""Trials of one configuration's seeds as members (config `members`, trainables.registry.seed_members;
trainables.engines.StackedModel or LoopedModels): each member is the run its seed would make alone."""

import io
import math
import statistics

import pytest
import torch
from scipy import stats

from common.errors import ConfigError
from trainables import models, resolve_config
from trainables.engines import StackedModel
from trainables.loop import aggregate
from trainables.registry import seed_members

from test_loop import TIMING, run  # a trial collected as rows and serialised checkpoints

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files

COMPARED = ["train_loss", "train_acc", "val_loss", "val_acc"]


def per_seed(rows, key="seed"):
    """Batched reports -> {seed (or another row key, e.g. `member`): [its rows]}."""
    out = {}
    for metrics in rows:
        for row in metrics["member_metrics"]:
            out.setdefault(row[key], []).append(row)
    return out


DIAGNOSED = ["grad_norm_first", "grad_norm_last", "dead_fraction", "saturated_fraction"]

# Deterministic configurations (no dropout) of every model family, with and without batchnorm,
# on the fixture datasets (real file formats), a few samples each. Adam is left out beside
# batchnorm: the bias of a layer followed by BatchNorm has an analytically zero gradient, and
# Adam's first steps (about lr * sign(g)) turn the float noise in it into lr-sized moves; that is
# the optimizer amplifying rounding, not the batching (the 1-D CNN shows it with or without
# batchnorm, so it trains with SGD here; the window MLP covers Adam).
FAMILIES = {
    "mlp_diagnostics": {"trainable": "mnist_mlp", "hidden": [32, 16], "diagnostics": True},
    "mlp_bn": {"trainable": "mnist_mlp", "hidden": [32, 16], "batchnorm": True},
    "cnn1d": {"trainable": "mnist1d_cnn", "max_train_samples": 300, "optimizer": "sgd", "lr": 0.05},
    "cnn1d_bn": {"trainable": "mnist1d_cnn", "batchnorm": True, "max_train_samples": 300, "optimizer": "sgd",
                 "lr": 0.05, "momentum": 0.9},
    "lenet5_bn_augment": {"trainable": "cifar10_lenet", "batchnorm": True, "augment": True, "lr": 0.05},
    "conv6": {"trainable": "stl10_conv6", "batch_size": 32},
    "window_mlp_prelu": {"trainable": "twitter_pos_mlp", "activation": "prelu", "dropout": 0.0,
                         "max_train_samples": 400},
}


# Every family stacked (the batched computation); looped (plain models one after another, what
# "auto" runs on a CPU for 2-D convolutions and for fewer than 8 members) on LeNet-5, and on the
# MLPs in test_fused.py.
@pytest.mark.parametrize("family, engine", [*[(f, "stacked") for f in FAMILIES], ("lenet5_bn_augment", "looped")])
def test_each_replicate_matches_its_unbatched_run(family, engine, data_root):
    config = {**FAMILIES[family], "epochs": 2, "max_eval_samples": 64, "member_engine": engine}
    batched, _ = run({**config, "members": seed_members(5, 3)}, data_root)
    replicates = per_seed(batched)
    assert sorted(replicates) == [5, 6, 7]
    for seed, rows in replicates.items():
        alone, _ = run({**config, "seed": seed}, data_root)
        assert [r["epoch"] for r in rows] == [1, 2]
        for mine, theirs in zip(rows, alone):
            for key in COMPARED + (DIAGNOSED if config.get("diagnostics") else []):
                assert mine[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-5), (family, seed, key)
        assert rows[-1]["test_acc"] == pytest.approx(alone[-1]["test_acc"], abs=1e-6)
        assert rows[-1]["n_params"] == alone[-1]["n_params"]
    # replicates are different runs, not copies
    assert len({rows[-1]["val_loss"] for rows in replicates.values()}) == 3


def test_dropout_masks_differ_between_replicates():
    torch.manual_seed(0)
    model = models.mlp(20, [64], 3, activation="relu", batchnorm=False, dropout=0.5)
    stacked = StackedModel([model, model])  # two identical replicates: only dropout can tell them apart
    x = torch.randn(8, 20).repeat(2, 1)  # the same batch for both members
    stacked.train()
    out = stacked.train_logits(x).view(2, 8, -1)  # (replicate, batch, classes)
    assert not torch.allclose(out[0], out[1])
    stacked.eval()
    with torch.inference_mode():
        evaluated = stacked.eval_logits(x[:8]).view(2, 8, -1)
    assert torch.equal(evaluated[0], evaluated[1])  # eval mode: no dropout


def test_with_dropout_batched_and_unbatched_seeds_are_statistically_indistinguishable(data_root):
    config = {"trainable": "mnist1d_mlp", "dropout": 0.3, "epochs": 4, "batchnorm": True}
    seeds = 12
    batched, _ = run({**config, "members": seed_members(0, seeds)}, data_root)
    batched_acc = [rows[-1]["val_acc"] for rows in per_seed(batched).values()]
    alone_acc = [run({**config, "seed": s}, data_root)[0][-1]["val_acc"] for s in range(seeds)]
    assert stats.mannwhitneyu(batched_acc, alone_acc).pvalue > 0.01
    assert abs(sum(batched_acc) / seeds - sum(alone_acc) / seeds) < 0.05
    # dropout draws differ from the single runs', so the runs are not the same runs
    assert batched_acc != alone_acc


# SGD lr 5 with momentum on 512 MNIST-1D samples: seeds 1 and 5 diverge (epochs 4 and 3), the rest train.
DIVERGING = {"trainable": "mnist1d_mlp", "epochs": 4, "max_train_samples": 512, "max_eval_samples": 128,
             "optimizer": "sgd", "lr": 5.0, "momentum": 0.9}


def test_a_diverging_replicate_stops_alone(data_root):
    batched, _ = run({**DIVERGING, "members": seed_members(0, 6)}, data_root)
    replicates = per_seed(batched)
    alone = {seed: run({**DIVERGING, "seed": seed}, data_root)[0] for seed in range(6)}
    diverged_alone = {seed: rows[-1]["epoch"] for seed, rows in alone.items() if rows[-1]["diverged"]}
    diverged_batched = {seed: rows[-1]["epoch"] for seed, rows in replicates.items() if rows[-1]["diverged"]}
    assert diverged_alone and len(diverged_alone) < 6  # the configuration splits the seeds
    assert diverged_batched == diverged_alone
    for seed, rows in replicates.items():
        last = rows[-1]
        assert [r["epoch"] for r in rows] == list(range(1, last["epoch"] + 1))  # no rows after divergence
        assert not any(r["diverged"] for r in rows[:-1])
        assert "test_acc" in last and math.isfinite(last["test_acc"])
        if seed not in diverged_batched:
            assert last["epoch"] == 4 and not last["diverged"]
    # the trial ran to the end for the seeds that trained, and says how many diverged
    assert batched[-1]["epoch"] == 4 and not batched[-1]["diverged"]
    assert batched[-1]["members_diverged"] == len(diverged_alone)
    # a stable seed beside the diverging ones is untouched by their NaNs
    stable = replicates[3]
    for mine, theirs in zip(stable, alone[3]):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-3)


def test_all_replicates_diverging_ends_the_trial(data_root):
    config = {**DIVERGING, "lr": 1e4, "momentum": 0.0, "epochs": 5, "members": seed_members(0, 3)}
    batched, _ = run(config, data_root)
    assert batched[-1]["diverged"] and batched[-1]["epoch"] < 5
    assert batched[-1]["members_diverged"] == 3


def test_reported_metric_is_the_aggregate_over_replicates(data_root):
    config = {"trainable": "mnist1d_cnn", "epochs": 2, "max_train_samples": 300, "members": seed_members(0, 4)}
    for how, combine in [("mean", statistics.mean), ("median", statistics.median), ("min", min)]:
        batched, _ = run({**config, "aggregate": how}, data_root)
        for metrics in batched:
            values = [row["val_acc"] for row in metrics["member_metrics"]]
            assert metrics["val_acc"] == pytest.approx(combine(values))
        assert batched[-1]["test_acc"] == pytest.approx(combine([r["test_acc"] for r in batched[-1]["member_metrics"]]))


def test_aggregate_counts_a_diverged_replicate_at_its_last_row():
    rows = [{"val_acc": 0.9, "val_loss": 0.3}, {"val_acc": 0.1, "val_loss": float("nan")}]
    assert aggregate(rows, "mean")["val_acc"] == pytest.approx(0.5)
    assert math.isnan(aggregate(rows, "mean")["val_loss"])  # a diverged seed is not hidden
    assert aggregate(rows, "min")["val_acc"] == 0.1


def test_resume_from_a_checkpoint_continues_exactly(data_root):
    config = {"trainable": "mnist1d_cnn", "epochs": 4, "max_train_samples": 300, "batchnorm": True,
              "dropout": 0.2, "members": seed_members(0, 3)}
    straight, states = run(config, data_root)
    start = torch.load(io.BytesIO(states[1]), weights_only=True)  # stopped after epoch 2
    resumed, resumed_states = run(config, data_root, start=start)
    assert [m["epoch"] for m in resumed] == [3, 4]
    for a, b in zip(straight[2:], resumed):
        for ra, rb in zip(a["member_metrics"], b["member_metrics"]):
            assert {k: v for k, v in ra.items() if k not in TIMING} == {k: v for k, v in rb.items() if k not in TIMING}
    # the resumed trial's checkpoint still holds every epoch of every seed
    history = torch.load(io.BytesIO(resumed_states[-1]), weights_only=True)["history"]
    assert [m["epoch"] for m in history] == [1, 2, 3, 4]
    assert [len(m["member_metrics"]) for m in history] == [3, 3, 3, 3]


@pytest.mark.parametrize("bad, message", [
    ({"members": seed_members(0, 0)}, "members must be a non-empty list"),
    ({"members": seed_members(0, 2), "compile": True}, "with members set"),
    ({"members": seed_members(0, 2), "channels_last": True}, "with members set"),
    ({"aggregate": "max"}, "aggregate"),
])
def test_bad_replicate_options(bad, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config({"trainable": "mnist1d_cnn", **bad})
