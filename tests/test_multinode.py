"""A real multi-node Ray cluster on this machine: a study joins it with --address, trials spread over
both worker nodes, and losing a worker node mid-study loses nothing."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from ray.cluster_utils import Cluster

from study import export

EPOCHS = 150


@pytest.fixture
def cluster():
    # head: schedules only (0 CPUs); two 1-CPU worker nodes run the trials
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    cluster.shutdown()


def reported(folder: Path) -> dict[str, list[dict]]:
    out = {}
    for path in folder.glob("*/result.json"):
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line being written right now
        out[path.parent.name] = rows
    return out


def test_node_loss_mid_study_loses_nothing(cluster, tmp_path, data_root):
    cluster, workers = cluster
    folder = tmp_path / "mnist1d_grid"
    log = (tmp_path / "driver.log").open("w+")  # a file, not a pipe: a full pipe would stall the driver
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.mnist1d_grid", "--smoke", "--epochs", str(EPOCHS), "--address", cluster.address,
         "--storage", str(tmp_path), "--data-root", str(data_root), "--max-failures", "3"],
        stdout=log, stderr=subprocess.STDOUT, text=True)

    # wait until a trial is running on the victim node, a few epochs in and far from done
    victim = workers[1]
    deadline = time.monotonic() + 240
    while True:
        assert time.monotonic() < deadline and proc.poll() is None, "no trial ran long enough on the victim node"
        running = {trial: rows for trial, rows in reported(folder).items()
                   if rows and 3 <= rows[-1]["epoch"] < EPOCHS - 50 and rows[-1]["node_id"] == victim.node_id}
        if running:
            break
        time.sleep(0.1)
    moved = next(iter(running))
    epoch_at_loss = reported(folder)[moved][-1]["epoch"]
    cluster.remove_node(victim)

    proc.wait(timeout=300)
    out = (tmp_path / "driver.log").read_text()
    assert proc.returncode == 0, out[-4000:]
    assert "4 trials: 4 completed, 0 diverged, 0 errored" in out

    epochs = pd.read_parquet(folder / export.EPOCHS_FILE)
    trials = pd.read_parquet(folder / export.TRIALS_FILE)
    assert len(trials) == 4 and (trials["status"] == "completed").all()
    assert (trials["epochs_completed"] == EPOCHS).all()
    assert len(epochs) == 4 * EPOCHS and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert set(epochs["node_id"]) == {w.node_id for w in workers}  # both nodes trained

    # the moved trial continued on the surviving node from its last checkpoint, not from epoch 1
    history = reported(folder)[moved]
    after = [r["epoch"] for r in history if r["node_id"] == workers[0].node_id]
    assert after and after[0] > 1 and after[0] >= epoch_at_loss - 1, (epoch_at_loss, after[:3])
    assert after[-1] == EPOCHS
    moved_rows = epochs[epochs["trial_id"] == moved].sort_values("epoch")
    assert moved_rows["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert {workers[0].node_id, victim.node_id} == set(moved_rows["node_id"])
