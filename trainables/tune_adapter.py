"""The function Ray Tune runs for one trial: `fit` wired to `tune.report` and Tune checkpoints.

Every epoch's state is saved as a Tune checkpoint alongside its metrics; a
trial that Tune restarts (lost node, crashed worker, `Tuner.restore`) finds it
with `tune.get_checkpoint()` and continues from the next epoch.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from trainables.loop import fit

STATE_FILE = "state.pt"


def _threads_assigned_by_ray() -> int | None:
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return max(1, int(cpus)) if cpus else None


def report_to_tune(metrics: dict, state: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, os.path.join(folder, STATE_FILE))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def load_state(checkpoint: tune.Checkpoint) -> dict:
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / STATE_FILE, weights_only=True)


def train(config: dict, data_root: str | None = None, download: bool = False, splits=None, report=report_to_tune) -> None:
    """Tune trainable: pass through `tune.with_parameters(train, data_root=..., splits=...)`.

    `data_root` must be absolute (each trial runs in its own folder); `splits`,
    when given through `tune.with_parameters`, is shared by all trials on a
    node via Ray's object store instead of each worker loading its own copy.
    """
    # One "Checkpoint successfully created" line per epoch per trial drowns the
    # driver's output; failures still surface as warnings and trial errors.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    threads = _threads_assigned_by_ray()
    if threads:
        torch.set_num_threads(threads)
    checkpoint = tune.get_checkpoint()
    start = load_state(checkpoint) if checkpoint else None
    # Which node ran each epoch: a trial moved by a node failure shows it in its rows.
    node = {"node_id": ray.get_runtime_context().get_node_id()}
    fit(config, report, data_root=data_root, download=download, start=start, splits=splits, tags=node)
