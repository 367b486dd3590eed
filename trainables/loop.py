"""fit(config, report): one trial's epoch loop, for one seed or K seeds batched.

The loop knows nothing of Ray. After every epoch it calls
`report(metrics, state)`: `metrics` is a flat dict of numbers, `state` the
checkpoint (model, optimizer, RNG states, epoch) a caller may save; a later
`fit(..., start=state)` continues from that epoch exactly where it stopped,
bitwise on CPU. Ray's adapter (trainables.tune_adapter) saves the state as a
Tune checkpoint; tests pass a function that appends to a list.

The loop drives an engine (trainables.engines) of K members stacked into one batched
computation: with config `replicates` K > 1 the K seeds seed..seed+K-1 of one configuration,
with config `members` K fused configurations (trainables.registry.member_configs). Member k
is the run a single-seed trial of its own config makes: its model is built and initialised
from its seed, its data order and augmentation come from its own generator seeded the same
way, and it has its own dropout masks (at its own rate), BatchNorm running statistics and
optimizer state and hyperparameters. Every epoch makes one row per member still training
(with its `seed`, and for fused members its index `member`); a single-seed trial reports
its one row as its metrics.

A non-finite training loss ends a member with `diverged=True` (its last row
carries its test metrics): a diverging learning rate is a result of the study, not
an error. The others go on; the trial ends when every member has finished or
diverged.

A batched trial's report holds the aggregate over members (config `aggregate`:
mean, median or min of each metric, every member counted at its latest row),
which is what a search optimises, and `replicate_metrics`: this epoch's rows, one
per member still training. study.export turns those into ordinary per-run rows.
Time columns of a member's rows are its share of
the batched trial's time (the trial's time / K), so per-sample costs compare with
single-seed trials.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from trainables import augment
from trainables import data as datasets
from trainables.engines import make_engine
from trainables.optim import make_optimizer, member_groups
from trainables.registry import AGGREGATES, get_spec, member_configs, resolve_config

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
    seeds draw through this too, so each replicate sees what its single-seed run sees."""
    perm = torch.randperm(n_train, generator=rng)
    shifts, flips = augment.draw(n_train, image_size, rng) if image_size else (None, None)
    return perm, shifts, flips


def global_rng_state(dev: torch.device) -> dict:
    """The global generators a checkpoint saves (dropout masks, on the CPU and on CUDA)."""
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None}


def restore_global_rng(state: dict, dev: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    if dev.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], dev)


AGGREGATED = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def aggregate(rows: list[dict], how: str) -> dict:
    """One value per metric across replicates (NaN propagates: a diverged loss is not hidden)."""
    out = {}
    for key in AGGREGATED:
        values = [row[key] for row in rows if key in row]
        if len(values) == len(rows):
            out[key] = float(AGGREGATES[how](np.asarray(values, dtype=float)))
    return out


@torch.inference_mode()
def evaluate(engine, splits: datasets.Splits, x: torch.Tensor, y: torch.Tensor, autocast) -> tuple[list, list]:
    """Each replicate's mean cross-entropy and accuracy over (x, y), in large batches."""
    k = len(engine.seeds)
    engine.eval()
    loss_sum = torch.zeros(k, device=x.device)
    correct = torch.zeros(k, device=x.device, dtype=torch.int64)
    batch = max(1, EVAL_BATCH_SIZE // k)  # K replicates' activations at once: keep memory as one model's
    for i in range(0, len(y), batch):
        xb, yb = splits.prepare(x[i : i + batch]), y[i : i + batch]
        with autocast():
            logits = engine.eval_logits(xb)
        yb = yb.repeat(k)  # as the logits: every replicate's predictions for the batch, one after another
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
                augment_size: int | None, autocast) -> tuple[list, list, list]:
    """One pass over the training data for every replicate, each in the order its own generator draws.

    Returns each replicate's mean training loss, accuracy and (config `grad_norms`) mean
    gradient norms of its first and last weight layer. A step does little beyond a bare
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
    grad_sums = torch.zeros(k, len(engine.watched), device=dev)
    for i in range(0, n_used, batch_size):
        j = min(i + batch_size, n_used)
        step = slice(k * i, k * j)  # every member's batch of this step: member 0's, then member 1's, ...
        xb = splits.train_x[order[step]]
        if augment_size:
            xb = augment.apply(xb, shifts[step], flips[step])
        yb = targets[step]
        with autocast():
            logits = engine.train_logits(splits.prepare(xb))
        if k == 1:  # one model: the fused mean loss (a per-replicate reduction slows a small MLP; benchmarks/README.md)
            loss = F.cross_entropy(logits.float(), yb)
            losses = loss.detach()
        else:
            per_member = F.cross_entropy(logits.float(), yb, reduction="none").view(k, -1).mean(1)
            loss = per_member.sum()  # d(sum)/d(loss_r) = 1: replicate r's slice gets exactly its own gradient
            losses = per_member.detach()
        engine.zero_grad()
        loss.backward()
        if engine.watched:
            grad_sums += engine.grad_norms()
        optimizer.step()
        step_losses.append(losses)
        step_predictions.append(logits.argmax(-1))
        step_sizes.append(j - i)
    sizes = torch.tensor(step_sizes, dtype=torch.float64, device=dev)
    loss_sum = (torch.stack(step_losses).view(len(step_sizes), k).double() * sizes[:, None]).sum(0)
    correct = by_member(torch.cat(step_predictions) == targets, k, batch_size, n_used).sum(1)
    return ((loss_sum / n_used).tolist(), (correct.double() / n_used).tolist(),
            (grad_sums / max(len(step_sizes), 1)).tolist())


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
) -> dict:
    """Train one configuration; call `report(metrics, state)` after every epoch.

    Returns the last metrics reported. `splits` lets a caller hand over data it
    already holds (Ray's object store); otherwise it is loaded (and cached per process).
    `tags` are added to every epoch's metrics (Ray's adapter adds the node id).
    The state carries every epoch's metrics so far ("history"): whoever holds the
    last checkpoint holds the trial's whole record, even where a lost node took
    reports with it.
    """
    cfg = resolve_config(config)
    dev = pick_device(device)
    splits = trial_splits(cfg, dev, data_root, download, splits)
    members = member_configs(cfg)
    # a resumed trial keeps the engine that saved its optimizer state (checkpoints before
    # member_engine hold no "engine": K > 1 members were stacked; one member ignores it)
    engine = make_engine(members, splits, dev, start.get("engine", "stacked") if start else None)
    seeds = engine.seeds
    k = len(seeds)
    fused = "members" in cfg  # rows name their member: fused members may share a seed
    optimizer = make_optimizer(cfg["optimizer"], member_groups(cfg["optimizer"], members, engine.member_parameters),
                               lr=cfg["lr"], weight_decay=cfg["weight_decay"], momentum=cfg["momentum"],
                               nesterov=cfg["nesterov"])
    data_rngs = [torch.Generator().manual_seed(seed) for seed in seeds]  # data order and augmentation, on the CPU
    first_epoch, train_time_s, history = 1, 0.0, []
    training = [True] * k  # False once a replicate has diverged
    latest: list[dict] = [{} for _ in range(k)]  # each replicate's latest row, for the aggregate
    if start is not None:
        engine.load_state(start)
        optimizer.load_state_dict(start["optimizer"])
        restore_global_rng(start, dev)
        for rng, rng_state in zip(data_rngs, start["data_rngs"]):
            rng.set_state(rng_state)
        first_epoch, train_time_s = start["epoch"] + 1, start["train_time_s"]
        training, latest = list(start["training"]), [dict(row) for row in start["latest"]]
        history = list(start["history"])

    autocast = autocast_for(cfg, dev)
    augment_size = augmented_image_size(cfg, splits)
    n_used = samples_used(len(splits.train_y), cfg["batch_size"])
    metrics: dict = {}

    for epoch in range(first_epoch, cfg["epochs"] + 1):
        t0 = time.perf_counter()
        train_losses, train_accs, grad_means = train_epoch(engine, optimizer, splits, cfg["batch_size"], data_rngs,
                                                           augment_size, autocast)
        train_time_s += time.perf_counter() - t0
        val_losses, val_accs = evaluate(engine, splits, splits.val_x, splits.val_y, autocast)
        epoch_s = time.perf_counter() - t0

        rows: dict[int, dict] = {}  # replicate index -> its row, for the replicates still training
        for r in range(k):
            if not training[r]:
                continue
            rows[r] = {"epoch": epoch, **({"seed": seeds[r]} if k > 1 else {}), **({"member": r} if fused else {}),
                       "train_loss": train_losses[r],
                       "train_acc": train_accs[r], "val_loss": val_losses[r], "val_acc": val_accs[r],
                       "epoch_time_s": epoch_s / k, "diverged": not np.isfinite(train_losses[r])}
            if engine.watched:
                rows[r].update(grad_norm_first=grad_means[r][0], grad_norm_last=grad_means[r][1])
        ending = [r for r, row in rows.items() if row["diverged"] or epoch == cfg["epochs"]]
        infer_share = 0.0
        if ending:
            t_test = time.perf_counter()
            test_losses, test_accs = evaluate(engine, splits, splits.test_x, splits.test_y, autocast)
            infer_share = (time.perf_counter() - t_test) / k
            for r in ending:
                rows[r].update(test_loss=test_losses[r], test_acc=test_accs[r], n_params=engine.n_params,
                               **cost_metrics(train_time_s / k, n_used * epoch, infer_share, splits.test_y, dev))
        for r, row in rows.items():
            row.update(tags or {})
            latest[r] = row
            training[r] = not row["diverged"]
        done = epoch == cfg["epochs"] or not any(training)

        if k == 1:
            metrics = rows[0]
        else:
            metrics = {"epoch": epoch, **aggregate(latest, cfg["aggregate"]), "epoch_time_s": epoch_s,
                       "diverged": not any(training), "replicates_diverged": training.count(False)}
            if done:  # every replicate has its test row now, so the aggregate above has test_loss / test_acc
                metrics.update(n_params=engine.n_params,
                               **cost_metrics(train_time_s, n_used * epoch * k, infer_share * k, splits.test_y, dev))
            metrics.update(tags or {})
            metrics["replicate_metrics"] = list(rows.values())
        history.append(metrics)
        state = {
            "epoch": epoch,
            "history": history,
            **engine.state(),
            "engine": engine.kind,
            "optimizer": optimizer.state_dict(),
            **global_rng_state(dev),
            "data_rngs": [rng.get_state() for rng in data_rngs],
            "training": list(training),
            "latest": [dict(row) for row in latest],
            "train_time_s": train_time_s,
        }
        report(metrics, state)
        if done:
            break
    return metrics
