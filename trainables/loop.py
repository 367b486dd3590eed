"""fit(config, report): one trial's epoch loop.

The loop knows nothing of Ray. After every epoch it calls
`report(metrics, state)`: `metrics` is a flat dict of numbers, `state` the
checkpoint (model, optimizer, RNG states, epoch) a caller may save; a later
`fit(..., start=state)` continues from that epoch exactly where it stopped,
bitwise on CPU. Ray's adapter (trainables.tune_adapter) saves the state as a
Tune checkpoint; tests pass a function that appends to a list.

A non-finite training loss ends the trial early with `diverged=True`: a
diverging learning rate is a result of the study, not an error.

A config with `replicates` K > 1 goes to trainables.replicates, which trains
seeds seed..seed+K-1 as one batched computation with the helpers defined here.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from trainables import data as datasets
from trainables import augment
from trainables.optim import count_params, init_weights, make_optimizer
from trainables.registry import get_spec, resolve_config

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


def build_model(cfg: dict, splits: datasets.Splits, seed: int, dev: torch.device) -> nn.Module:
    """The model as seed `seed` initialises it: the same draws whether or not seeds are batched."""
    torch.manual_seed(seed)
    model = get_spec(cfg["trainable"]).build(cfg, splits)
    init_weights(model, cfg["init"], cfg["activation"])
    model.to(dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    return model


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


def weight_layer_names(model: nn.Module) -> list[str]:
    """The linear and conv layers, first to last (gradient norms watch the first and the last)."""
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


@torch.inference_mode()
def evaluate(model: nn.Module, splits: datasets.Splits, x: torch.Tensor, y: torch.Tensor, autocast) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over (x, y), in large batches."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, len(y), EVAL_BATCH_SIZE):
        xb, yb = splits.prepare(x[i : i + EVAL_BATCH_SIZE]), y[i : i + EVAL_BATCH_SIZE]
        with autocast():
            logits = model(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    n = max(len(y), 1)
    return loss_sum.item() / n, correct.item() / n


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
    if cfg["replicates"] > 1:
        from trainables.replicates import fit_replicates  # imports this module's helpers

        return fit_replicates(cfg, report, data_root=data_root, download=download, device=device, start=start,
                              splits=splits, tags=tags)
    dev = pick_device(device)
    splits = trial_splits(cfg, dev, data_root, download, splits)
    model = build_model(cfg, splits, cfg["seed"], dev)
    image_batches = splits.train_x.dim() == 4
    if cfg["channels_last"] and image_batches:
        model.to(memory_format=torch.channels_last)
    # `net` runs the batches; `model` (same parameters) is what checkpoints save, so a
    # compiled trial's state loads into an uncompiled one and back.
    net = torch.compile(model) if cfg["compile"] else model
    optimizer = make_optimizer(cfg["optimizer"], model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                               momentum=cfg["momentum"], nesterov=cfg["nesterov"])
    data_rng = torch.Generator().manual_seed(cfg["seed"])  # data order and augmentation, on the CPU
    first_epoch, train_time_s, samples_trained, history = 1, 0.0, 0, []
    if start is not None:
        model.load_state_dict(start["model"])
        optimizer.load_state_dict(start["optimizer"])
        restore_global_rng(start, dev)
        data_rng.set_state(start["data_rng"])
        first_epoch = start["epoch"] + 1
        train_time_s, samples_trained = start["train_time_s"], start["samples_trained"]
        history = list(start.get("history", []))

    autocast = autocast_for(cfg, dev)
    layers = weight_layer_names(model)
    watched = [model.get_submodule(name).weight for name in (layers[0], layers[-1])] if cfg["grad_norms"] else []
    n_train = len(splits.train_y)
    batch_size = cfg["batch_size"]
    n_used = samples_used(n_train, batch_size)
    augment_size = augmented_image_size(cfg, splits)
    metrics: dict = {}

    for epoch in range(first_epoch, cfg["epochs"] + 1):
        t0 = time.perf_counter()
        net.train()
        perm, shifts, flips = epoch_draws(n_train, augment_size, data_rng)
        perm = perm.to(dev)
        if augment_size:
            shifts, flips = shifts.to(dev), flips.to(dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.int64)
        grad_sums = torch.zeros(len(watched), device=dev)
        steps = 0
        for i in range(0, n_used, batch_size):
            idx = perm[i : min(i + batch_size, n_used)]
            xb = splits.train_x[idx]
            if augment_size:
                xb = augment.apply(xb, shifts[i : i + len(idx)], flips[i : i + len(idx)])
            xb, yb = splits.prepare(xb), splits.train_y[idx]
            if cfg["channels_last"] and image_batches:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast():
                logits = net(xb)
            loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if watched:
                grad_sums += torch.stack([w.grad.norm() for w in watched])
            optimizer.step()
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
            steps += 1
        train_loss = loss_sum.item() / n_used
        train_acc = correct.item() / n_used
        train_time_s += time.perf_counter() - t0
        samples_trained += n_used
        diverged = not math.isfinite(train_loss)
        val_loss, val_acc = evaluate(net, splits, splits.val_x, splits.val_y, autocast)
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "epoch_time_s": time.perf_counter() - t0,
            "diverged": diverged,
        }
        if watched:
            first, last = (grad_sums / max(steps, 1)).tolist()
            metrics.update(grad_norm_first=first, grad_norm_last=last)
        if diverged or epoch == cfg["epochs"]:
            t_test = time.perf_counter()
            test_loss, test_acc = evaluate(net, splits, splits.test_x, splits.test_y, autocast)
            infer_seconds = time.perf_counter() - t_test
            metrics.update(test_loss=test_loss, test_acc=test_acc,
                           **cost_metrics(train_time_s, samples_trained, infer_seconds, splits.test_y, dev),
                           n_params=count_params(model))
        metrics.update(tags or {})
        history.append(metrics)
        state = {
            "epoch": epoch,
            "history": history,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            **global_rng_state(dev),
            "data_rng": data_rng.get_state(),
            "train_time_s": train_time_s,
            "samples_trained": samples_trained,
        }
        report(metrics, state)
        if diverged:
            break
    return metrics
