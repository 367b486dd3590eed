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


def crash_once_in_epoch_3(marker: str, log: str, report_epoch=report_to_tune):
    """A report function that logs each epoch it reports (on the worker, so the log does not hang
    on when Tune's driver processes a result) and dies like a lost worker at the end of epoch 3,
    before reporting it, the first time only. Dying an epoch after the last report, not right
    after it, gives the driver that epoch to register epoch 2's checkpoint."""

    def report(metrics, state):
        if metrics["epoch"] == 3 and not Path(marker).exists():
            Path(marker).touch()
            raise RuntimeError("simulated worker crash")
        report_epoch(metrics, state)
        with open(log, "a") as out:
            out.write(f"{metrics['epoch']}\n")

    return report


def reported_epochs(log) -> list[int]:
    return [int(line) for line in Path(log).read_text().split()]


def agrees_with(history, reference, columns=("train_loss", "val_acc", "val_loss")):
    """Every epoch Tune recorded equals the uninterrupted run's. (Which results of the attempt that
    crashed reach Tune's table depends on timing, so the epochs run are checked in the worker's log.)"""
    assert history["epoch"].tolist()[-1] == CONFIG["epochs"]
    expected = reference.set_index("epoch").loc[history["epoch"], list(columns)]
    for column in columns:
        assert history[column].tolist() == expected[column].tolist(), column


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
    marker, log = tmp_path / "crashed", tmp_path / "epochs"
    results = run_tuner(tmp_path / "runs", "flaky", data_root, report=crash_once_in_epoch_3(str(marker), str(log)),
                        max_failures=1)
    assert marker.exists()  # the crash did happen
    result = results[0]
    assert result.error is None
    # epochs 1-2 before the crash, 3-4 after the restart: continued, not restarted from epoch 1
    assert reported_epochs(log) == [1, 2, 3, 4]
    assert result.checkpoint is not None
    agrees_with(result.metrics_dataframe, steady(tmp_path, data_root))


def test_a_restarted_trial_redoes_what_its_last_checkpoint_lacks(tmp_path, data_root, local_ray):
    """checkpoint_every_s longer than the trial: no checkpoint before the end, so the crash in
    epoch 3 sends the trial back to epoch 1; it ends the same. (With a checkpoint every epoch it
    continues at epoch 3: the test above.)"""
    marker, log = tmp_path / "crashed", tmp_path / "epochs"
    reporter = CheckpointEvery(1e9, CONFIG["epochs"])
    result = run_tuner(tmp_path / "runs", "sparse", data_root,
                       report=crash_once_in_epoch_3(str(marker), str(log), reporter), max_failures=1)[0]
    assert marker.exists() and result.error is None
    assert reported_epochs(log) == [1, 2, 1, 2, 3, 4]
    assert result.checkpoint is not None  # the last report always carries one
    agrees_with(result.metrics_dataframe, steady(tmp_path, data_root), columns=("val_acc",))
