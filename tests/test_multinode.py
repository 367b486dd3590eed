"""A real multi-node Ray cluster on this machine: a study joins it with --address, trials spread over
both worker nodes, and losing a worker node mid-study loses nothing."""

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from ray.cluster_utils import Cluster

from study import export

# Cluster's head writes /tmp/ray/ray_current_cluster, which any plain ray.init() would join
pytestmark = pytest.mark.machine_wide
EPOCHS = 150


@pytest.fixture
def cluster():
    # head: schedules only (0 CPUs); two 1-CPU worker nodes run the trials
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    cluster.shutdown()


def checkpointed(folder: Path) -> dict[str, int]:
    """Epochs each trial has checkpointed so far. Workers write checkpoints straight to storage, while
    the driver's result.json reaches storage only in bursts (it is synced from a staging folder), so
    checkpoints are the live signal of progress."""
    return {trial.name: len(list(trial.glob("checkpoint_*"))) for trial in folder.glob("*") if trial.is_dir()}


@pytest.mark.parametrize("fused", [False, True], ids=["trials", "fused-trials"])
def test_node_loss_mid_study_loses_nothing(cluster, tmp_path, data_root, fused):
    """Fused: 2 seeds of each of the 4 configurations, a trial of 2 members each; the trial on the
    lost node resumes both members from its checkpoint."""
    cluster, workers = cluster
    members = 2 if fused else 1
    folder = tmp_path / "mnist1d_grid"
    log = (tmp_path / "driver.log").open("w+")  # a file, not a pipe: a full pipe would stall the driver
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.mnist1d_grid", "--smoke", "--epochs", str(EPOCHS), "--address", cluster.address,
         "--storage", str(tmp_path), "--data-root", str(data_root), "--max-failures", "3",
         "--checkpoint-every-s", "0",  # a checkpoint every epoch: progress the test can watch
         "--shared-storage",  # the nodes share this machine's disk
         *(["--seeds", "2", "--fuse", "2"] if fused else [])],
        stdout=log, stderr=subprocess.STDOUT, text=True)

    # wait until two trials are running, a few epochs in and far from done: with one CPU per node,
    # one of them runs on the victim node
    victim = workers[1]
    deadline = time.monotonic() + 240
    while True:
        assert time.monotonic() < deadline and proc.poll() is None, "never saw two trials running mid-way"
        running = {trial: n for trial, n in checkpointed(folder).items() if 10 <= n < EPOCHS - 50}
        if len(running) == 2:
            break
        time.sleep(0.05)
    cluster.remove_node(victim)

    proc.wait(timeout=300)
    out = (tmp_path / "driver.log").read_text()
    assert proc.returncode == 0, out[-4000:]
    runs = 4 * members
    summary = "8 runs (fused, up to 2 per trial): 8 completed" if fused else "4 trials: 4 completed"
    assert f"{summary}, 0 diverged, 0 errored" in out

    epochs = pd.read_parquet(folder / export.EPOCHS_FILE)
    trials = pd.read_parquet(folder / export.TRIALS_FILE)
    assert len(trials) == runs and (trials["status"] == "completed").all()
    assert (trials["epochs_completed"] == EPOCHS).all()
    assert len(epochs) == runs * EPOCHS and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert set(epochs["node_id"]) == {w.node_id for w in workers}  # both nodes trained

    # the trial that ran on the victim continued on the surviving node from a checkpoint, not from
    # epoch 1, every member of it (a fused member's trial_id is its trial's, "-m<index>" added)
    nodes_per_run = epochs.groupby("trial_id")["node_id"].agg(set)
    moved = [run for run, nodes in nodes_per_run.items() if victim.node_id in nodes and len(nodes) == 2]
    trial_of = (lambda run: run.rsplit("-m", 1)[0]) if fused else (lambda run: run)
    assert len(moved) == members and {trial_of(run) for run in moved} <= set(running), (nodes_per_run, running)
    assert len({trial_of(run) for run in moved}) == 1
    for run in moved:
        moved_rows = epochs[epochs["trial_id"] == run].sort_values("epoch")
        assert moved_rows["epoch"].tolist() == list(range(1, EPOCHS + 1))
        after = moved_rows.loc[moved_rows["node_id"] == workers[0].node_id, "epoch"].tolist()
        assert after[0] > 1 and after[-1] == EPOCHS, after[:3]
        assert (moved_rows.loc[moved_rows["node_id"] == victim.node_id, "epoch"] < after[0]).all()
