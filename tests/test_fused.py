"""Fused trials (config `members`; trainables.engines.StackedModel and LoopedModels): each member is
the run its own config makes alone, whichever engine runs the members."""

import io
import math

import pytest
import torch
from scipy import stats

from common.errors import ConfigError
from trainables import models, resolve_config
from trainables.engines import LoopedModels, MemberDropout, StackedModel, make_engine, stacks_well_on_cpu
from trainables.optim import OPTIMIZERS
from trainables.registry import member_configs

from test_loop import run, without_timing  # a trial collected as rows and serialised checkpoints
from test_seed_members import per_seed

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files

COMPARED = ["train_loss", "train_acc", "val_loss", "val_acc"]
ENGINES = ["stacked", "looped"]


class Data:  # what the models' builders read of the data: the input shape and the classes
    def __init__(self, shape):
        self.train_x = torch.zeros(1, *shape)
        self.num_classes = 10


def per_member(rows):
    """Fused reports -> {member index: [that member's rows]}."""
    return per_seed(rows, key="member")


def members_for(optimizer: str) -> list[dict]:
    """Members that differ in every hyperparameter `optimizer` reads, in init and in seed; the
    last two share their hyperparameters (one parameter group over two stacked members)."""
    members = [{"lr": 0.05, "seed": 1, "init": "xavier_normal"},
               {"lr": 0.01, "weight_decay": 1e-3, "seed": 1},
               {"lr": 0.02, "seed": 2},
               {"lr": 0.02, "seed": 3}]
    if optimizer == "sgd":
        members[1].update(momentum=0.9, nesterov=True)
        members[2].update(momentum=0.5)
        members[3].update(momentum=0.5)
    else:  # the adaptive optimizers at the learning rates they are used with
        for member in members:
            member["lr"] /= 20
    return members


# The bias of a layer followed by BatchNorm has an analytically zero gradient, and an adaptive
# optimizer's steps (about lr * sign(g)) turn the float noise in it into lr-sized moves. In
# training mode BatchNorm cancels the bias; the running mean that evaluation uses trails it, so
# validation metrics carry that noise. Seed replicates show the same against their unbatched
# runs (about 1e-4 relative here), and a fused member equals its replicate bitwise; training
# metrics stay within 1e-4.
ROUNDING_AMPLIFIED = 5e-3
# The diagnostics' gradient norms are taken in eval mode too (trainables.diagnostics), and a
# gradient is more sensitive to that noise than a loss: up to 2% apart here (the thread count,
# two workers or one, changes the float order), where the members' own values differ by 2x and more.
GRADIENT_ROUNDING_AMPLIFIED = 5e-2
ONE_UNIT = 1 / 48 + 1e-9  # the dead or saturated share of one of the 32 + 16 hidden units: it may flip with that noise


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "bn"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_each_member_matches_its_unfused_run(optimizer, batchnorm, engine, data_root):
    config = {"trainable": "mnist_mlp", "hidden": [32, 16], "batchnorm": batchnorm, "optimizer": optimizer,
              "epochs": 2, "max_eval_samples": 64, "diagnostics": True}
    members = members_for(optimizer)
    fused, _ = run({**config, "members": members, "member_engine": engine}, data_root)
    by_member = per_member(fused)
    assert sorted(by_member) == [0, 1, 2, 3]
    for index, member in enumerate(members):
        alone, _ = run({**config, **member}, data_root)
        rows = by_member[index]
        assert [r["epoch"] for r in rows] == [1, 2]
        assert rows[0]["seed"] == member["seed"]
        for mine, theirs in zip(rows, alone):
            for key in COMPARED + ["grad_norm_first", "grad_norm_last", "dead_fraction", "saturated_fraction"]:
                amplified = batchnorm and optimizer != "sgd"
                rel = ROUNDING_AMPLIFIED if amplified and key.startswith("val") else 1e-4
                rel = GRADIENT_ROUNDING_AMPLIFIED if amplified and key.startswith("grad") else rel
                near = ONE_UNIT if amplified and key.endswith("_fraction") else 1e-5
                assert mine[key] == pytest.approx(theirs[key], rel=rel, abs=near), (optimizer, index, key)
    assert len({rows[-1]["val_loss"] for rows in by_member.values()}) == 4  # different runs, not copies


def test_a_window_mlp_member_matches_its_unfused_run(data_root):
    """The embedding model with Adam: members differ in lr and weight decay."""
    config = {"trainable": "twitter_pos_mlp", "dropout": 0.0, "max_train_samples": 400, "epochs": 2,
              "max_eval_samples": 64}
    members = [{"lr": 1e-3, "seed": 0}, {"lr": 3e-3, "weight_decay": 1e-4, "seed": 0}]
    by_member = per_member(run({**config, "members": members}, data_root)[0])
    for index, member in enumerate(members):
        alone, _ = run({**config, **member}, data_root)
        for mine, theirs in zip(by_member[index], alone):
            for key in COMPARED:
                assert mine[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-5), (index, key)


def test_each_member_drops_at_its_own_rate():
    """Members with different dropout rates: every member's model gets the same dropout layers,
    each holding the member's own rate, and under vmap each member's mask keeps its own share of
    units (a binomial test per member), scaled by 1 / (1 - p), drawn apart from the others'."""
    rates = [0.0, 0.2, 0.5, [0.7, 0.1]]
    cfg = resolve_config({"trainable": "mnist_mlp", "hidden": [64, 64], "member_engine": "stacked",
                          "members": [{"dropout": p, "seed": 0} for p in rates]})
    engine = make_engine(member_configs(cfg), Data((1, 28, 28)), torch.device("cpu"))
    assert sum(isinstance(m, MemberDropout) for m in engine.base.modules()) == 2  # one per hidden layer
    layer_rates = sorted((name, value) for name, value in engine.buffers.items() if name.endswith(".p"))
    per_layer = [p if isinstance(p, list) else [p, p] for p in rates]
    for layer, (_, value) in enumerate(layer_rates):
        assert value.tolist() == pytest.approx([r[layer] for r in per_layer])

    torch.manual_seed(0)
    drop = MemberDropout(0.0).train()
    ones = torch.ones(len(rates), 20000)
    first_layer = layer_rates[0][1]
    out = torch.vmap(lambda p, x: torch.func.functional_call(drop, {"p": p}, (x,)), randomness="different")(
        first_layer, ones)
    for member, rate in enumerate(first_layer.tolist()):
        kept = out[member] != 0
        n_kept = int(kept.sum())
        assert stats.binomtest(n_kept, ones.shape[1], 1 - rate).pvalue > 1e-3, (member, rate, n_kept)
        assert out[member][kept].tolist() == pytest.approx([1 / (1 - rate)] * n_kept)
    assert not torch.equal(out[1] != 0, out[2] != 0)  # each member its own masks
    # eval mode drops nothing
    drop.eval()
    assert torch.equal(drop(ones[0]), ones[0])


# SGD with momentum on 512 MNIST-1D samples: lr 1e4 diverges in its first epoch, lr 0.05 trains.
DIVERGING = {"trainable": "mnist1d_mlp", "epochs": 4, "max_train_samples": 512, "max_eval_samples": 128,
             "optimizer": "sgd", "momentum": 0.9}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_diverging_member_stops_while_the_others_train(engine, data_root):
    members = [{"lr": 0.05, "seed": 1}, {"lr": 1e4, "seed": 1}, {"lr": 0.05, "seed": 2}]
    fused, _ = run({**DIVERGING, "members": members, "member_engine": engine}, data_root)
    by_member = per_member(fused)
    diverging = by_member[1]
    assert diverging[-1]["diverged"] and diverging[-1]["epoch"] < 4
    assert math.isfinite(diverging[-1]["test_acc"])
    for index in (0, 2):
        rows = by_member[index]
        assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and not any(r["diverged"] for r in rows)
        alone, _ = run({**DIVERGING, **members[index]}, data_root)
        for mine, theirs in zip(rows, alone):
            assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)
        assert rows[-1]["val_acc"] > 0.2  # it trains (chance: 0.1)
    assert fused[-1]["members_diverged"] == 1 and not fused[-1]["diverged"]


def test_a_window_mlp_does_not_stack_on_a_cpu():
    # its embedding loses stacked (0.90x at 8 members, benchmarks/README.md), however small the model
    assert not stacks_well_on_cpu(models.window_mlp(100, 25, hidden=16, embedding_dim=8))
    assert stacks_well_on_cpu(models.mlp(20, [64], 3))


@pytest.mark.parametrize("trainable, shape, k, chosen", [
    ("mnist1d_mlp", (40,), 4, LoopedModels),  # below the 8 members from which stacking pays on a CPU
    ("mnist1d_mlp", (40,), 8, StackedModel),  # a small MLP
    ("mnist_mlp", (1, 28, 28), 16, LoopedModels),  # 178 110 weights: looping wins
    ("mnist1d_cnn", (40,), 16, LoopedModels),  # convolutions, even 1-D ones
    ("cifar10_lenet", (3, 32, 32), 8, LoopedModels),
])
def test_auto_runs_members_stacked_only_where_stacking_pays_on_a_cpu(trainable, shape, k, chosen):
    members = [{"lr": 0.01 * (i + 1), "seed": 0} for i in range(k)]
    auto = member_configs(resolve_config({"trainable": trainable, "members": members}))
    assert type(make_engine(auto, Data(shape), torch.device("cpu"))) is chosen
    for forced, engine in [("stacked", StackedModel), ("looped", LoopedModels)]:
        cfg = resolve_config({"trainable": trainable, "members": members, "member_engine": forced})
        assert type(make_engine(member_configs(cfg), Data(shape), torch.device("cpu"))) is engine


@pytest.mark.parametrize("engine", ENGINES)
def test_a_fused_trial_resumes_exactly_in_the_engine_that_saved_it(engine, data_root):
    config = {"trainable": "mnist1d_cnn", "epochs": 3, "max_train_samples": 300, "batchnorm": True,
              "dropout": 0.2, "member_engine": engine,
              "members": [{"lr": 0.05, "seed": 0}, {"lr": 0.01, "seed": 0, "dropout": 0.4}]}
    straight, states = run(config, data_root)
    start = torch.load(io.BytesIO(states[0]), weights_only=True)  # stopped after epoch 1
    assert start["engine"] == engine
    # resumed under "auto" (which picks looped for 2 members on a CPU), it keeps the saving engine
    resumed, _ = run({**config, "member_engine": "auto"}, data_root, start=start)
    assert [m["epoch"] for m in resumed] == [2, 3]
    for a, b in zip(straight[1:], resumed):
        assert without_timing(a["member_metrics"]) == without_timing(b["member_metrics"])


@pytest.mark.parametrize("bad, message", [
    ({"members": []}, "non-empty list"),
    ({"member_engine": "vmap"}, "member_engine"),
    ({"members": [{"lr": 0.1}, {"batch_size": 64}]}, "batch_size sets the computation's shape"),
    ({"members": [{"lr": 0.1}, {"activation": "gelu"}]}, "activation"),
    ({"members": [{"lr": -1}]}, "lr must be a positive number"),
    ({"members": [{"seed": 0}, {"seed": 1}], "replicates": 2}, "unknown config key.s. replicates"),
    ({"members": [{"seed": 0}, {"seed": 1}], "compile": True}, "with members set compile=false"),
])
def test_bad_members(bad, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config({"trainable": "mnist1d_mlp", **bad})
