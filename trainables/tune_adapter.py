"""The function Ray Tune runs for one trial: `fit` wired to `tune.report` and Tune checkpoints.

Every epoch's metrics are reported; the trial's state is saved as a Tune checkpoint
with them at most every `checkpoint_every_s` seconds, and always with the trial's
last report. A trial that Tune restarts (lost node, crashed worker, `Tuner.restore`)
finds its last checkpoint with `tune.get_checkpoint()` and continues from the epoch
after it, so it redoes at most `checkpoint_every_s` seconds of training. 0 saves
every epoch.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import ray
import torch
from ray import tune

from trainables.diagnostics import layout
from trainables.loop import fit
from trainables.registry import resolve_config

STATE_FILE = "state.pt"
# A checkpoint of a short epoch costs a large share of it (benchmarks/README.md, study
# overhead); one every 30 s costs little whatever the epoch, and a failure redoes at most 30 s.
CHECKPOINT_EVERY_S = 30.0


def _threads_assigned_by_ray() -> int | None:
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return max(1, int(cpus)) if cpus else None


def report_to_tune(metrics: dict, state: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, os.path.join(folder, STATE_FILE))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


class CheckpointEvery:
    """`report(metrics, state)` for fit: metrics to Tune every epoch, the state as a checkpoint
    when `seconds` have passed since the last one (or the trial started), and always at its end.
    `with_checkpoint(metrics, state)` and `metrics_only(metrics)` send them (Tune's by default;
    the loop-overhead benchmark writes the file as a trial does, without Ray)."""

    def __init__(self, seconds: float, epochs: int, with_checkpoint=report_to_tune, metrics_only=tune.report):
        self.seconds, self.epochs = seconds, epochs
        self.with_checkpoint, self.metrics_only = with_checkpoint, metrics_only
        self.last = time.monotonic()

    def __call__(self, metrics: dict, state: dict) -> None:
        last_report = metrics["epoch"] >= self.epochs or metrics["diverged"]  # fit ends after this one
        if last_report or time.monotonic() - self.last >= self.seconds:
            self.with_checkpoint(metrics, state)
            self.last = time.monotonic()
        else:
            self.metrics_only(metrics)


class Histograms:
    """`fit`'s on_epoch for --log tensorboard: each epoch, histograms of the first and last weight
    layer's weights and gradients (the epoch's last training step's) of every member, written with
    tensorboardX into the trial's folder beside Tune's TensorBoard scalars (tags `first_layer/weight`,
    ..., prefixed `member<r>/` in a trial of several members: the run `<trial id>-m<r>`)."""

    def __init__(self, folder: str):
        # tensorboardX (Ray Tune's own TensorBoard logger needs it too), its synchronous writer: each
        # epoch's histograms are on disk before the epoch's report, whose checkpoint syncs them (its
        # SummaryWriter queues events for a thread, and its flush does not wait for the queue)
        from tensorboardX.event_file_writer import EventsWriter

        self.writer = EventsWriter(os.path.join(folder, "events"), ".histograms")

    def __call__(self, engine, epoch: int) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary
        from tensorboardX.summary import histogram

        summaries = []
        for r in range(len(engine.seeds)):
            member = engine.member(r)
            prefix = f"member{r}/" if len(engine.seeds) > 1 else ""
            parts = layout(member.module)  # the weights the gradient norms watch, found once per model
            for layer, name in (("first_layer", parts.first), ("last_layer", parts.last)):
                for kind, values in (("weight", member.params[name]), ("grad", member.grads[name])):
                    finite = None if values is None else values.detach().float().flatten().cpu()
                    finite = None if finite is None else finite[torch.isfinite(finite)]  # a diverged member's NaNs
                    if finite is not None and len(finite):
                        summaries += histogram(f"{prefix}{layer}/{kind}", finite.numpy(), "auto").value
        self.writer.write_event(Event(wall_time=time.time(), step=epoch, summary=Summary(value=summaries)))
        self.writer.flush()


def trial_device() -> str:
    """The GPU Ray gave this trial (Ray sets CUDA_VISIBLE_DEVICES to it), else the CPU: a trial
    given no GPU trains on the CPU even on a GPU node, off the GPUs other trials were given."""
    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


def load_state(checkpoint: tune.Checkpoint) -> dict:
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / STATE_FILE, weights_only=True)


def train(config: dict, data_root: str | None = None, download: bool = False, splits=None,
          checkpoint_every_s: float = CHECKPOINT_EVERY_S, report=None, histograms: bool = False) -> None:
    """Tune trainable: pass through `tune.with_parameters(train, data_root=..., splits=...)`.

    `data_root` must be absolute (each trial runs in its own folder); `splits`,
    when given through `tune.with_parameters`, is shared by all trials on a
    node via Ray's object store instead of each worker loading its own copy.
    `report` replaces the reporting (tests use it to crash a trial on purpose). `histograms`
    (--log tensorboard) writes the first and last layer's histograms each epoch (Histograms).
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
    if report is None:
        report = CheckpointEvery(checkpoint_every_s, resolve_config(config)["epochs"])
    on_epoch = Histograms(tune.get_context().get_trial_dir()) if histograms else None
    fit(config, report, data_root=data_root, download=download, start=start, splits=splits, tags=node,
        device=trial_device(), on_epoch=on_epoch)
