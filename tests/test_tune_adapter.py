"""The trainable under real Ray Tune: per-epoch checkpoints, and a crashed trial resumes from its last epoch."""

import sys
from pathlib import Path

import pytest
import ray
from ray import tune

from trainables.tune_adapter import CheckpointEvery, report_to_tune, train

CONFIG = {"trainable": "mnist1d_cnn", "epochs": 4, "max_train_samples": 400, "seed": 3}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # this module's helpers travel to the workers by value (tests/ is not an installed package)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def crash_once_after_epoch_2(marker: str, report_epoch=report_to_tune):
    """A report function that dies like a lost worker after epoch 2's report, the first time only."""

    def report(metrics, state):
        report_epoch(metrics, state)
        if metrics["epoch"] == 2 and not Path(marker).exists():
            Path(marker).touch()
            raise RuntimeError("simulated worker crash")

    return report


def run_tuner(storage, name, data_root, report=report_to_tune, max_failures=0):
    trainable = tune.with_parameters(train, data_root=str(data_root), report=report)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=CONFIG,
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(storage), name=name, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=max_failures)),
    )
    return tuner.fit()


_STEADY = {}


def steady(tmp_path, data_root):
    """The trial run once without a crash (the same for every test here)."""
    if "metrics" not in _STEADY:
        _STEADY["metrics"] = run_tuner(tmp_path / "runs", "steady", data_root)[0].metrics_dataframe
    return _STEADY["metrics"]


def test_crashed_trial_resumes_from_its_last_checkpoint(tmp_path, data_root, local_ray):
    marker = tmp_path / "crashed"
    results = run_tuner(tmp_path / "runs", "flaky", data_root, report=crash_once_after_epoch_2(str(marker)), max_failures=1)
    assert marker.exists()  # the crash did happen
    result = results[0]
    assert result.error is None
    history = result.metrics_dataframe
    # epochs 1-2 before the crash, 3-4 after the restart: continued, not restarted from epoch 1
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert result.checkpoint is not None

    reference = steady(tmp_path, data_root)
    for column in ("train_loss", "val_acc", "val_loss"):
        assert history[column].tolist() == reference[column].tolist(), column


def test_a_restarted_trial_redoes_what_its_last_checkpoint_lacks(tmp_path, data_root, local_ray):
    """checkpoint_every_s longer than the trial: no checkpoint before the end, so the crash after
    epoch 2 sends the trial back to epoch 1; it ends the same. (With a checkpoint every epoch it
    continues at epoch 3: the test above.)"""
    marker = tmp_path / "crashed"
    reporter = CheckpointEvery(1e9, CONFIG["epochs"])
    result = run_tuner(tmp_path / "runs", "sparse", data_root, report=crash_once_after_epoch_2(str(marker), reporter),
                       max_failures=1)[0]
    assert marker.exists() and result.error is None
    assert result.metrics_dataframe["epoch"].tolist() == [1, 2, 1, 2, 3, 4]
    assert result.checkpoint is not None  # the last report always carries one
    reference = steady(tmp_path, data_root)
    assert result.metrics_dataframe["val_acc"].tolist()[-4:] == reference["val_acc"].tolist()
