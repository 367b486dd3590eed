"""Every registered trainable x a few activations x batchnorm on/off trains one epoch on fixture data."""

import math

import pytest

from trainables import TRAINABLES, fit

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files

ACTIVATIONS = ["relu", "gelu", "prelu"]


@pytest.mark.parametrize("batchnorm", [False, True], ids=["nobn", "bn"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("trainable", list(TRAINABLES))
def test_every_trainable_trains_one_epoch(trainable, activation, batchnorm, data_root):
    rows = []
    config = {"trainable": trainable, "activation": activation, "batchnorm": batchnorm, "epochs": 1,
              "max_train_samples": 64, "max_eval_samples": 32, "dropout": 0.1}
    final = fit(config, lambda metrics, state: rows.append(metrics), data_root=str(data_root))
    assert [r["epoch"] for r in rows] == [1]
    assert final is rows[0]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s", "test_acc",
                "train_us_per_sample", "infer_us_per_sample"):
        assert math.isfinite(final[key]), key
    assert 0 <= final["val_acc"] <= 1 and 0 <= final["test_acc"] <= 1
    assert final["diverged"] is False
    assert final["n_params"] > 0
