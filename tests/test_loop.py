"""The epoch loop: determinism, divergence, checkpoint/resume, options, config validation."""

import io
import math

import pytest
import torch
import torch.nn.functional as F

from common.errors import ConfigError
from trainables import data as datasets
from trainables import fit, resolve_config
from trainables.engines import build_model
from trainables.loop import by_member, training_order
from trainables.registry import seed_members

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files

TIMING = {"epoch_time_s", "train_time_s", "train_us_per_sample", "infer_us_per_sample"}


def run(config, data_root, **kwargs):
    rows, states = [], []

    def report(metrics, state):
        rows.append(metrics)
        buffer = io.BytesIO()  # serialise now, as a real checkpoint would
        torch.save(state, buffer)
        states.append(buffer.getvalue())

    fit(config, report, data_root=str(data_root), **kwargs)
    return rows, states


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


CNN = {"trainable": "mnist1d_cnn", "epochs": 3, "max_train_samples": 600, "dropout": 0.2, "batchnorm": True}


def test_same_config_and_seed_give_bitwise_identical_metrics(data_root):
    a, _ = run(CNN, data_root)
    b, _ = run(CNN, data_root)
    assert without_timing(a) == without_timing(b)
    c, _ = run({**CNN, "seed": 1}, data_root)
    assert without_timing(c) != without_timing(a)


def test_resume_from_epoch_two_continues_exactly(data_root):
    config = {**CNN, "epochs": 4}
    full, states = run(config, data_root)
    start = torch.load(io.BytesIO(states[1]), weights_only=True)
    assert start["epoch"] == 2
    resumed, _ = run(config, data_root, start=start)
    assert [r["epoch"] for r in resumed] == [3, 4]
    assert without_timing(resumed) == without_timing(full[2:])


def test_resume_of_a_window_mlp_with_adam_and_dropout(data_root):
    config = {"trainable": "twitter_pos_mlp", "epochs": 3, "batch_size": 8, "activation": "prelu"}
    full, states = run(config, data_root)
    resumed, _ = run(config, data_root, start=torch.load(io.BytesIO(states[0]), weights_only=True))
    assert without_timing(resumed) == without_timing(full[1:])


def test_training_order_puts_each_steps_batches_of_every_member_in_one_slice():
    k, n_used, batch = 3, 10, 4  # steps over samples 0-4, 4-8, 8-10
    draws = torch.arange(k)[:, None] * 100 + torch.arange(11)  # member r's draw i is 100 r + i
    ordered = training_order(draws, batch, n_used)
    for i, j in ((0, 4), (4, 8), (8, 10)):
        assert ordered[k * i : k * j].tolist() == [100 * r + s for r in range(k) for s in range(i, j)]
    assert torch.equal(by_member(ordered, k, batch, n_used), draws[:, :n_used])
    pairs = torch.stack([draws, -draws], -1)  # trailing dimensions (crop offsets) travel with their sample
    assert torch.equal(training_order(pairs, batch, n_used)[:, 1], -ordered)


@pytest.mark.parametrize("seeds", [1, 3])
def test_training_loss_and_accuracy_are_the_means_over_the_epochs_samples(data_root, seeds):
    """At an lr too small to move a weight, every step sees the initial model: each member's
    epoch loss and accuracy are its initial model's over the training samples, as a plain
    evaluation computes them (an independent check of the step-order bookkeeping)."""
    config = {"trainable": "mnist1d_mlp", "optimizer": "sgd", "lr": 1e-30, "epochs": 1, "batch_size": 64,
              "max_train_samples": 600, **({"members": seed_members(0, seeds)} if seeds > 1 else {})}  # 600 = 9 full batches + 24
    rows, _ = run(config, data_root)
    per_seed = rows[0]["member_metrics"] if seeds > 1 else rows
    cfg = resolve_config(config)
    splits = datasets.load("mnist1d", data_root).head(600, None)
    for seed, row in enumerate(per_seed):
        model = build_model(cfg, splits, seed, torch.device("cpu")).eval()  # no dropout or BatchNorm: eval = train
        with torch.inference_mode():
            logits = model(splits.prepare(splits.train_x))
        assert row["train_loss"] == pytest.approx(F.cross_entropy(logits, splits.train_y).item(), rel=1e-5)
        assert row["train_acc"] == pytest.approx((logits.argmax(1) == splits.train_y).double().mean().item(),
                                                 abs=1e-12)


def test_a_diverging_lr_ends_the_trial_with_diverged_true(data_root):
    rows, _ = run({"trainable": "mnist1d_mlp", "lr": 1e4, "optimizer": "sgd", "epochs": 5}, data_root)
    assert rows[-1]["diverged"] is True
    assert len(rows) < 5  # stopped early instead of training NaNs
    assert not math.isfinite(rows[-1]["train_loss"])
    assert "test_acc" in rows[-1] and "n_params" in rows[-1]  # a diverged trial still has its final record


def test_gradient_norms_show_vanishing_gradients_in_a_deep_sigmoid_net(data_root):
    config = {"trainable": "mnist1d_mlp", "epochs": 1, "hidden": [48] * 10, "activation": "sigmoid",
              "optimizer": "sgd", "lr": 0.01, "grad_norms": True, "init": "xavier_normal"}
    rows, _ = run(config, data_root)
    assert rows[0]["grad_norm_first"] < rows[0]["grad_norm_last"] / 100


def test_depth_and_width_build_a_deep_narrow_mlp(data_root):
    rows, _ = run({"trainable": "mnist_mlp", "depth": 5, "width": 64, "epochs": 1}, data_root)
    assert rows[0]["n_params"] == 784 * 64 + 64 + 4 * (64 * 64 + 64) + 64 * 10 + 10


@pytest.mark.parametrize("options", [
    {"augment": True},
    {"channels_last": True},
    {"precision": "bf16"},
    {"optimizer": "cubic_adam", "lr": 1e-3},
    {"optimizer": "sgd", "momentum": 0.9, "nesterov": True},
    {"init": "auto", "activation": "selu"},
])
def test_options_train_on_cifar_fixture(options, data_root):
    rows, _ = run({"trainable": "cifar10_lenet", "epochs": 2, **options}, data_root)
    assert len(rows) == 2 and math.isfinite(rows[-1]["train_loss"])


def test_compiled_model_trains_and_checkpoints_the_plain_model(data_root):
    rows, states = run({"trainable": "mnist1d_mlp", "epochs": 1, "compile": True, "max_train_samples": 500}, data_root)
    assert math.isfinite(rows[0]["train_loss"]) and rows[0]["val_acc"] > 0.1
    state = torch.load(io.BytesIO(states[0]), weights_only=True)
    assert not any(key.startswith("_orig_mod") for key in state["model"])  # loads into an uncompiled model


def test_augmentation_crops_and_flips_each_image_its_own_way():
    from trainables import augment

    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.uint8).view(2, 1, 8, 8)
    centred = torch.tensor([[1, 1], [1, 1]])  # pad_for(8) == 1: offset 1 is the identity crop
    assert torch.equal(augment.apply(x, centred, torch.tensor([False, False])), x)
    flipped = augment.apply(x, centred, torch.tensor([True, False]))
    assert torch.equal(flipped[0], x[0].flip(-1)) and torch.equal(flipped[1], x[1])
    shifted = augment.apply(x, torch.tensor([[0, 0], [2, 2]]), torch.tensor([False, False]))
    assert torch.equal(shifted[0, 0, 1:, 1:], x[0, 0, :-1, :-1]) and shifted[0, 0, 0].sum() == 0
    assert torch.equal(shifted[1, 0, :-1, :-1], x[1, 0, 1:, 1:])


# --- config validation ------------------------------------------------------------

def test_defaults_reproduce_the_reference_setups():
    stl = resolve_config({"trainable": "stl10_conv6"})
    assert (stl["optimizer"], stl["momentum"], stl["weight_decay"], stl["batch_size"], stl["epochs"]) == \
        ("sgd", 0.9, 5e-4, 64, 30)
    cifar = resolve_config({"trainable": "cifar10_lenet"})
    assert (cifar["optimizer"], cifar["lr"], cifar["batch_size"], cifar["epochs"]) == ("sgd", 0.1, 128, 25)
    pos = resolve_config({"trainable": "twitter_pos_mlp"})
    assert (pos["optimizer"], pos["lr"], pos["batch_size"], pos["dropout"], pos["epochs"]) == ("adam", 1e-3, 16, 0.2, 30)
    m1d = resolve_config({"trainable": "mnist1d_cnn"})
    assert (m1d["optimizer"], m1d["lr"], m1d["batch_size"]) == ("adam", 1e-2, 100)
    assert resolve_config({"trainable": "mnist1d_mlp", "activation": "swish"})["activation"] == "silu"


@pytest.mark.parametrize("override, message", [
    ({"trainable": "resnet"}, "unknown trainable 'resnet'; choose one of: cifar10_lenet"),
    ({"activation": "relu6"}, "unknown activation 'relu6'"),
    ({"optimizer": "lion"}, "unknown optimizer 'lion'; choose one of: sgd, adam"),
    ({"init": "orthogonal"}, "unknown init 'orthogonal'"),
    ({"learning_rate": 0.1}, "unknown config key.*learning_rate.*valid keys: activation"),
    ({"lr": 0}, "lr must be a positive number"),
    ({"lr": -0.1}, "lr must be a positive number"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"batch_size": 1.5}, "batch_size must be a positive integer"),
    ({"dropout": 1.0}, r"dropout must lie in \[0, 1\)"),
    ({"dropout": -0.1}, r"dropout must lie in \[0, 1\)"),
    ({"batchnorm": "yes"}, "batchnorm must be true or false"),
    ({"weight_decay": -1}, "weight_decay must be a number >= 0"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"depth": 5}, "depth and width go together"),
])
def test_bad_config_is_one_line_naming_the_fix(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve_config({"trainable": "mnist_mlp", **override})
    assert "\n" not in str(err.value)
