"""Gradient and unit diagnostics (config `diagnostics`, trainables.diagnostics): real trials
report them each epoch, a deep sigmoid network reads saturated with vanishing gradients beside
ReLU, hand-built networks give the exact shares, and fused members give their own values."""

import math

import pytest
import torch
from torch import nn

from benchmarks.common import write_mnist_idx
from trainables import fit
from trainables.activations import make_activation
from trainables.diagnostics import member_diagnostics
from trainables.engines import SingleModel
from trainables.tune_adapter import Histograms

from conftest import histogram_records
from test_loop import run  # a trial collected as rows and serialised checkpoints

pytestmark = pytest.mark.no_ray

DIAGNOSED = ["grad_norm_first", "grad_norm_last", "dead_fraction", "saturated_fraction"]


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    """MNIST in its IDX files with 4000 training digits: the real test set's where ../shared/data has it
    (the suite's fixture holds 120, too few for a fixed batch of 128 validation digits)."""
    root = tmp_path_factory.mktemp("mnist")
    write_mnist_idx(root, n_train=4000, n_test=500)
    return root


def deep_mnist_mlp(activation: str, data_root) -> list[dict]:
    """Ten layers of 48 units, each activation at its own init (sigmoid Xavier, ReLU He), a small lr."""
    config = {"trainable": "mnist_mlp", "depth": 10, "width": 48, "activation": activation, "optimizer": "sgd",
              "lr": 0.01, "init": "auto", "epochs": 2, "diagnostics": True}
    return run(config, data_root)[0]


def test_a_deep_sigmoid_mnist_mlp_saturates_and_its_gradients_vanish_where_relu_does_not(mnist_root):
    sigmoid, relu = deep_mnist_mlp("sigmoid", mnist_root), deep_mnist_mlp("relu", mnist_root)
    for rows in (sigmoid, relu):
        assert [r["epoch"] for r in rows] == [1, 2]
        assert all(math.isfinite(r[key]) for r in rows for key in DIAGNOSED)
        assert all(0 <= r[key] <= 1 for r in rows for key in ("dead_fraction", "saturated_fraction"))
    assert all(r["saturated_fraction"] > 0 for r in sigmoid) and all(r["saturated_fraction"] == 0 for r in relu)
    assert all(r["dead_fraction"] == 0 for r in sigmoid)  # a sigmoid unit is never exactly 0
    ratio = {name: rows[-1]["grad_norm_first"] / rows[-1]["grad_norm_last"]
             for name, rows in (("sigmoid", sigmoid), ("relu", relu))}
    assert ratio["sigmoid"] < ratio["relu"] / 100  # the export's grad_ratio: vanishing gradients


def hand_built(activation: str, weight: float, bias: list[float]) -> SingleModel:
    """2 inputs -> 3 hidden units -> 2 classes, every hidden weight `weight`, biases as given."""
    model = nn.Sequential(nn.Linear(2, 3), make_activation(activation), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.fill_(weight)
        model[0].bias.copy_(torch.tensor(bias))
    return SingleModel(model, seed=0)


BATCH = (torch.rand(16, 2, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 2)  # inputs in [0, 1)


def test_dead_fraction_is_zero_when_every_relu_unit_is_active_and_counts_the_units_no_input_switches_on():
    (all_active,) = member_diagnostics(hand_built("relu", 1.0, [1.0, 1.0, 1.0]), *BATCH, units=True)
    assert all_active["dead_fraction"] == 0 and all_active["saturated_fraction"] == 0
    (one_dead,) = member_diagnostics(hand_built("relu", 1.0, [1.0, -5.0, 1.0]), *BATCH, units=True)
    assert one_dead["dead_fraction"] == pytest.approx(1 / 3)


def test_saturated_fraction_counts_bounded_units_within_1_percent_of_a_bound():
    (pinned,) = member_diagnostics(hand_built("sigmoid", 0.0, [10.0, -10.0, 0.0]), *BATCH, units=True)
    assert pinned["saturated_fraction"] == pytest.approx(2 / 3)  # sigmoid(+-10) is within 0.01 of 1 and 0
    (tanh,) = member_diagnostics(hand_built("tanh", 0.0, [3.0, 0.5, -3.0]), *BATCH, units=True)
    assert tanh["saturated_fraction"] == pytest.approx(2 / 3)  # tanh(3) = 0.995: within 0.02 of 1
    assert tanh["dead_fraction"] == 0


def test_diagnostics_leave_training_as_it_is(data_root):
    config = {"trainable": "mnist1d_mlp", "epochs": 2, "dropout": 0.2}
    plain, _ = run(config, data_root)
    diagnosed, _ = run({**config, "diagnostics": True}, data_root)
    for before, after in zip(plain, diagnosed):
        assert after["val_loss"] == before["val_loss"] and after["train_loss"] == before["train_loss"]
        assert "dead_fraction" not in before and "dead_fraction" in after


def test_a_fused_trial_writes_each_members_own_histograms(data_root, tmp_path):
    """--log tensorboard's histograms (trainables.tune_adapter.Histograms), written by fit's on_epoch."""
    config = {"trainable": "mnist1d_mlp", "epochs": 2, "max_train_samples": 300, "member_engine": "stacked",
              "members": [{"seed": 0}, {"seed": 1, "lr": 0.003}]}
    fit(config, lambda metrics, state: None, data_root=str(data_root), on_epoch=Histograms(str(tmp_path)))
    (events,) = tmp_path.glob("events.out.tfevents.*.histograms")
    records = {(step, tag): total for step, tag, total in histogram_records(events)}
    assert sorted(records) == sorted((epoch, f"member{r}/{layer}/{kind}") for epoch in (1, 2) for r in (0, 1)
                                     for layer in ("first_layer", "last_layer") for kind in ("weight", "grad"))
    assert records[(2, "member0/first_layer/weight")] != records[(2, "member1/first_layer/weight")]
