"""fit(config, report): one trial's epoch loop, for one run or K members trained together.

The loop knows nothing of Ray. After every epoch it calls
`report(metrics, state)`: `metrics` is a flat dict of numbers, `state` the
checkpoint (TrialState.as_checkpoint: model, optimizer, RNG states, epoch) a caller
may save; a later `fit(..., start=state)` continues from that epoch exactly where it
stopped, bitwise on CPU. Ray's adapter (trainables.tune_adapter) saves the state as a
Tune checkpoint; tests pass a function that appends to a list.

The loop drives an engine (trainables.engines) of K members: with config `members` K
configurations, or K seeds of one (trainables.registry.member_configs, seed_members).
Member k is the run a trial of its own config alone makes: its model is built and
initialised from its seed, its data order and augmentation come from its own generator
seeded the same way, and it has its own dropout masks (at its own rate), BatchNorm running
statistics and optimizer state and hyperparameters. Every epoch makes one row per member
still training (with its `seed` and its index `member`); a trial of one run reports its one
row as its metrics.

A non-finite training loss ends a member with `diverged=True` (its last row
carries its test metrics): a diverging learning rate is a result of the study, not
an error. The others go on; the trial ends when every member has finished or
diverged.

A trial of K > 1 members reports the aggregate over them (config `aggregate`: mean,
median or min of each metric, every member counted at its latest row), which is what a
search optimises, and `member_metrics`: this epoch's rows, one per member still training.
study.export turns those into ordinary per-run rows. Time columns of a member's rows are
its share of the trial's time (the trial's time / K), so per-sample costs compare with
trials of one run.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

from common.contract import MEMBER_METRICS
from trainables import augment
from trainables import data as datasets
from trainables.diagnostics import DIAGNOSTIC_BATCH, member_diagnostics
from trainables.engines import Engine, make_engine
from trainables.keys import AGGREGATES
from trainables.optim import make_optimizer, member_groups
from trainables.registry import get_spec, member_configs, resolve_config

Report = Callable[[dict, dict], None]

EVAL_BATCH_SIZE = 2048


def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def trial_splits(cfg: dict, dev: torch.device, data_root, download: bool, splits) -> datasets.Splits:
    """The trial's data on its device: handed over (Ray's object store) or loaded, cut for smoke runs."""
    if splits is None:
        splits = datasets.load(get_spec(cfg["trainable"]).dataset, data_root, download=download, device=dev)
    else:
        splits = splits.from_shared()
        if splits.device != dev:
            splits = splits.to(dev)
    return splits.head(cfg["max_train_samples"], cfg["max_eval_samples"])


def autocast_for(cfg: dict, dev: torch.device):
    if cfg["precision"] == "bf16":
        return lambda: torch.autocast(dev.type, dtype=torch.bfloat16)
    return nullcontext


def samples_used(n_train: int, batch_size: int) -> int:
    # A last batch of one sample is dropped: BatchNorm cannot normalise it, and
    # one sample's gradient is noise, not signal.
    return n_train - 1 if n_train % batch_size == 1 and n_train > 1 else n_train


def cost_metrics(train_time_s: float, samples_trained: int, infer_seconds: float, test_y: torch.Tensor,
                 dev: torch.device) -> dict:
    """The final row's timing, provenance and test-set columns (trials.parquet).

    `chance_acc` is the accuracy of always predicting the test set's most frequent class:
    what "did not train" is measured against (for POS tags far above 1 / classes), carried
    with the results so the analysis needs neither torch nor the dataset."""
    n_test = len(test_y)
    return dict(
        train_time_s=train_time_s,
        train_us_per_sample=1e6 * train_time_s / max(samples_trained, 1),
        infer_us_per_sample=1e6 * infer_seconds / max(n_test, 1),
        chance_acc=torch.bincount(test_y).max().item() / n_test if n_test else float("nan"),
        device=str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        hostname=socket.gethostname(),
    )


def augmented_image_size(cfg: dict, splits: datasets.Splits) -> int | None:
    """The side of the images a trial augments (random crop + flip), or None: no augmentation."""
    return splits.train_x.shape[-1] if cfg["augment"] and splits.train_x.dim() == 4 else None


def epoch_draws(n_train: int, image_size: int | None, rng: torch.Generator):
    """One epoch's random draws from a trial's data generator, in a fixed order: the sample
    order, then (for augmented images of side `image_size`) crop offsets and flips. Batched
    members draw through this too, so each member sees what its run alone sees."""
    perm = torch.randperm(n_train, generator=rng)
    shifts, flips = augment.draw(n_train, image_size, rng) if image_size else (None, None)
    return perm, shifts, flips


AGGREGATED = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def aggregate(rows: list[dict], how: str) -> dict:
    """One value per metric across members (NaN propagates: a diverged loss is not hidden)."""
    out = {}
    for key in AGGREGATED:
        values = [row[key] for row in rows if key in row]
        if len(values) == len(rows):
            out[key] = float(AGGREGATES[how](np.asarray(values, dtype=float)))
    return out


@torch.inference_mode()
def evaluate(engine, splits: datasets.Splits, x: torch.Tensor, y: torch.Tensor, autocast) -> tuple[list, list]:
    """Each member's mean cross-entropy and accuracy over (x, y), in large batches."""
    k = len(engine.seeds)
    engine.eval()
    loss_sum = torch.zeros(k, device=x.device)
    correct = torch.zeros(k, device=x.device, dtype=torch.int64)
    batch = max(1, EVAL_BATCH_SIZE // k)  # K members' activations at once: keep memory as one model's
    for i in range(0, len(y), batch):
        xb, yb = splits.prepare(x[i : i + batch]), y[i : i + batch]
        with autocast():
            logits = engine.eval_logits(xb)
        yb = yb.repeat(k)  # as the logits: every member's predictions for the batch, one after another
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="none").view(k, -1).sum(1)
        correct += (logits.argmax(-1) == yb).view(k, -1).sum(1)
    n = max(len(y), 1)
    return (loss_sum / n).tolist(), (correct.double() / n).tolist()


def training_order(draws: torch.Tensor, batch_size: int, n_used: int) -> torch.Tensor:
    """Each member's epoch draws (K, n, ...) in the order the steps consume them: step s's batch
    of member 0, then member 1's, ..., then step s+1's. The step over samples i..j is then the
    contiguous slice [K*i, K*j), taken with one slice instead of per-step indexing and reshapes."""
    k, rest = draws.shape[0], draws.shape[2:]
    full_steps = n_used // batch_size
    full = full_steps * batch_size
    head = draws[:, :full].reshape(k, full_steps, batch_size, *rest).transpose(0, 1).reshape(-1, *rest)
    return torch.cat([head, draws[:, full:n_used].reshape(-1, *rest)])


def by_member(ordered: torch.Tensor, k: int, batch_size: int, n_used: int) -> torch.Tensor:
    """The inverse of training_order for one value per sample: (K * n_used,) -> (K, n_used)."""
    full = n_used // batch_size * batch_size
    head = ordered[: k * full].view(-1, k, batch_size).transpose(0, 1).reshape(k, full)
    return torch.cat([head, ordered[k * full :].view(k, -1)], 1)


def train_epoch(engine, optimizer, splits: datasets.Splits, batch_size: int, data_rngs: list[torch.Generator],
                augment_size: int | None, autocast) -> tuple[list, list]:
    """One pass over the training data for every member, each in the order its own generator draws.

    Returns each member's mean training loss and accuracy. A step does little beyond a bare
    PyTorch loop's (benchmarks/README.md, loop overhead): the epoch's sample order and targets are
    laid out in step order once, and the running loss and accuracy are summed once at the end
    from each step's detached loss and predictions, not with a handful of small ops per step."""
    k, dev = len(engine.seeds), splits.train_y.device
    n_train = len(splits.train_y)
    n_used = samples_used(n_train, batch_size)
    draws = [epoch_draws(n_train, augment_size, rng) for rng in data_rngs]
    order = training_order(torch.stack([perm for perm, _, _ in draws]), batch_size, n_used).to(dev)
    if augment_size:
        shifts = training_order(torch.stack([shift for _, shift, _ in draws]), batch_size, n_used).to(dev)
        flips = training_order(torch.stack([flip for _, _, flip in draws]), batch_size, n_used).to(dev)
    targets = splits.train_y[order]
    engine.train()
    step_losses, step_predictions, step_sizes = [], [], []
    for i in range(0, n_used, batch_size):
        j = min(i + batch_size, n_used)
        step = slice(k * i, k * j)  # every member's batch of this step: member 0's, then member 1's, ...
        xb = splits.train_x[order[step]]
        if augment_size:
            xb = augment.apply(xb, shifts[step], flips[step])
        yb = targets[step]
        with autocast():
            logits = engine.train_logits(splits.prepare(xb))
        if k == 1:  # one model: the fused mean loss (a per-member reduction slows a small MLP; benchmarks/README.md)
            loss = F.cross_entropy(logits.float(), yb)
            losses = loss.detach()
        else:
            per_member = F.cross_entropy(logits.float(), yb, reduction="none").view(k, -1).mean(1)
            loss = per_member.sum()  # d(sum)/d(loss_r) = 1: member r's slice gets exactly its own gradient
            losses = per_member.detach()
        engine.zero_grad()
        loss.backward()
        optimizer.step()
        step_losses.append(losses)
        step_predictions.append(logits.argmax(-1))
        step_sizes.append(j - i)
    sizes = torch.tensor(step_sizes, dtype=torch.float64, device=dev)
    loss_sum = (torch.stack(step_losses).view(len(step_sizes), k).double() * sizes[:, None]).sum(0)
    correct = by_member(torch.cat(step_predictions) == targets, k, batch_size, n_used).sum(1)
    return (loss_sum / n_used).tolist(), (correct.double() / n_used).tolist()


@dataclass
class TrialState:
    """Where a trial stands after an epoch: what a checkpoint saves and `fit(start=...)` restores.

    `as_checkpoint` and `from_checkpoint` are inverses over one flat dict of tensors and plain
    values (torch.load(weights_only=True) reads it back), whose model part is the engine's own
    (`Engine.state`)."""

    epoch: int = 0
    history: list = field(default_factory=list)  # every epoch's metrics so far
    train_time_s: float = 0.0
    training: list = field(default_factory=list)  # per member: False once it diverged
    latest: list = field(default_factory=list)  # per member: its latest row, for the aggregate
    engine: str | None = None  # the engine that saved the optimizer state (its layout)
    model: dict = field(default_factory=dict)  # Engine.state()
    optimizer: dict = field(default_factory=dict)
    torch_rng: object = None  # the global generators (dropout masks), on the CPU and on CUDA
    cuda_rng: object = None
    data_rngs: list = field(default_factory=list)  # per member: data order and augmentation

    def as_checkpoint(self) -> dict:
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        # copies of the lists the loop goes on changing: a saved checkpoint stays the epoch's
        own.update(history=list(self.history), training=list(self.training), latest=[dict(r) for r in self.latest])
        return {**own, **self.model}

    @classmethod
    def from_checkpoint(cls, saved: dict) -> TrialState:
        names = {f.name for f in fields(cls)} - {"model"}
        # checkpoints from before member_engine hold no "engine": K > 1 members were stacked
        own = {"engine": "stacked", **{k: v for k, v in saved.items() if k in names}}
        return cls(**own, model={k: v for k, v in saved.items() if k not in names})


class Trial:
    """One trial's parts: its members' engine, their optimizer and data generators, and its state."""

    def __init__(self, cfg: dict, splits: datasets.Splits, dev: torch.device, start: dict | None):
        members = member_configs(cfg)
        restored = TrialState.from_checkpoint(start) if start is not None else None
        # a resumed trial keeps the engine that saved its optimizer state (one member ignores it)
        self.engine: Engine = make_engine(members, splits, dev, restored.engine if restored else None)
        self.k = len(self.engine.seeds)
        self.optimizer = make_optimizer(cfg["optimizer"],
                                        member_groups(cfg["optimizer"], members, self.engine.member_parameters),
                                        lr=cfg["lr"], weight_decay=cfg["weight_decay"], momentum=cfg["momentum"],
                                        nesterov=cfg["nesterov"])
        # data order and augmentation, on the CPU
        self.data_rngs = [torch.Generator().manual_seed(seed) for seed in self.engine.seeds]
        self.dev = dev
        self.state = TrialState(training=[True] * self.k, latest=[{} for _ in range(self.k)])
        if restored is not None:
            self.restore(restored)

    def restore(self, state: TrialState) -> None:
        self.engine.load_state(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        torch.set_rng_state(state.torch_rng)
        if self.dev.type == "cuda" and state.cuda_rng is not None:
            torch.cuda.set_rng_state(state.cuda_rng, self.dev)
        for rng, rng_state in zip(self.data_rngs, state.data_rngs):
            rng.set_state(rng_state)
        self.state = state

    def checkpoint(self, epoch: int) -> dict:
        """The state after `epoch`, as a checkpoint (its history and member states already updated)."""
        self.state.epoch = epoch
        self.state.engine = self.engine.kind
        self.state.model = self.engine.state()
        self.state.optimizer = self.optimizer.state_dict()
        self.state.torch_rng = torch.get_rng_state()
        self.state.cuda_rng = torch.cuda.get_rng_state(self.dev) if self.dev.type == "cuda" else None
        self.state.data_rngs = [rng.get_state() for rng in self.data_rngs]
        return self.state.as_checkpoint()


def member_rows(trial: Trial, epoch: int, train: tuple, val: tuple, epoch_s: float,
                diagnosed: list[dict] | None = None) -> dict[int, dict]:
    """This epoch's row of each member still training (member index -> row); `diagnosed`: each
    member's diagnostics (trainables.diagnostics), where config `grad_norms` or `diagnostics` asks."""
    (train_losses, train_accs), (val_losses, val_accs) = train, val
    rows = {}
    for r in range(trial.k):
        if not trial.state.training[r]:
            continue
        rows[r] = {"epoch": epoch, **({"seed": trial.engine.seeds[r], "member": r} if trial.k > 1 else {}),
                   "train_loss": train_losses[r], "train_acc": train_accs[r], "val_loss": val_losses[r],
                   "val_acc": val_accs[r], "epoch_time_s": epoch_s / trial.k,
                   "diverged": not np.isfinite(train_losses[r])}
        if diagnosed is not None:
            rows[r].update(diagnosed[r])
    return rows


def fit(
    config: dict,
    report: Report,
    *,
    data_root: str | None = None,
    download: bool = False,
    device: str | None = None,
    start: dict | None = None,
    splits: datasets.Splits | None = None,
    tags: dict | None = None,
    on_epoch: Callable[[Engine, int], None] | None = None,
) -> dict:
    """Train one configuration (or K members together); call `report(metrics, state)` after every epoch.

    Returns the last metrics reported. `splits` lets a caller hand over data it
    already holds (Ray's object store); otherwise it is loaded (and cached per process).
    `tags` are added to every epoch's metrics (Ray's adapter adds the node id).
    `on_epoch(engine, epoch)` is called after each epoch's training and evaluation (Ray's adapter
    writes TensorBoard histograms of the first and last layer with it).
    The state carries every epoch's metrics so far ("history"): whoever holds the
    last checkpoint holds the trial's whole record, even where a lost node took
    reports with it.
    """
    cfg = resolve_config(config)
    dev = pick_device(device)
    splits = trial_splits(cfg, dev, data_root, download, splits)
    trial = Trial(cfg, splits, dev, start)
    state, k = trial.state, trial.k
    autocast = autocast_for(cfg, dev)
    augment_size = augmented_image_size(cfg, splits)
    n_used = samples_used(len(splits.train_y), cfg["batch_size"])
    diagnosed_on = None  # the fixed batch of config `grad_norms` / `diagnostics` (trainables.diagnostics)
    if cfg["grad_norms"] or cfg["diagnostics"]:
        diagnosed_on = (splits.prepare(splits.val_x[:DIAGNOSTIC_BATCH]), splits.val_y[:DIAGNOSTIC_BATCH])
    metrics: dict = {}

    for epoch in range(state.epoch + 1, cfg["epochs"] + 1):
        t0 = time.perf_counter()
        trained = train_epoch(trial.engine, trial.optimizer, splits, cfg["batch_size"], trial.data_rngs,
                              augment_size, autocast)
        state.train_time_s += time.perf_counter() - t0
        validated = evaluate(trial.engine, splits, splits.val_x, splits.val_y, autocast)
        epoch_s = time.perf_counter() - t0  # the diagnostics below are not the run's time
        diagnosed = None
        if diagnosed_on is not None:
            diagnosed = member_diagnostics(trial.engine, *diagnosed_on, units=cfg["diagnostics"])
        if on_epoch is not None:
            on_epoch(trial.engine, epoch)
        rows = member_rows(trial, epoch, trained, validated, epoch_s, diagnosed)
        ending = [r for r, row in rows.items() if row["diverged"] or epoch == cfg["epochs"]]
        infer_share = 0.0
        if ending:
            t_test = time.perf_counter()
            test_losses, test_accs = evaluate(trial.engine, splits, splits.test_x, splits.test_y, autocast)
            infer_share = (time.perf_counter() - t_test) / k
            for r in ending:
                rows[r].update(test_loss=test_losses[r], test_acc=test_accs[r], n_params=trial.engine.n_params,
                               **cost_metrics(state.train_time_s / k, n_used * epoch, infer_share, splits.test_y, dev))
        for r, row in rows.items():
            row.update(tags or {})
            state.latest[r] = row
            state.training[r] = not row["diverged"]
        done = epoch == cfg["epochs"] or not any(state.training)

        if k == 1:
            metrics = rows[0]
        else:
            metrics = {"epoch": epoch, **aggregate(state.latest, cfg["aggregate"]), "epoch_time_s": epoch_s,
                       "diverged": not any(state.training), "members_diverged": state.training.count(False)}
            if done:  # every member has its test row now, so the aggregate above has test_loss / test_acc
                metrics.update(n_params=trial.engine.n_params,
                               **cost_metrics(state.train_time_s, n_used * epoch * k, infer_share * k,
                                              splits.test_y, dev))
            metrics.update(tags or {})
            metrics[MEMBER_METRICS] = list(rows.values())
        state.history.append(metrics)
        report(metrics, trial.checkpoint(epoch))
        if done:
            break
    return metrics
