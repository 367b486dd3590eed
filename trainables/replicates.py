"""fit_replicates: K seed replicates of one configuration, trained as one batched computation.

Replicate k is the run `fit` makes with seed `seed + k`: its model is built and
initialised from that seed, its data order and augmentation come from its own
generator seeded the same way, and it has its own dropout masks, BatchNorm
running statistics and optimizer state. `torch.func.stack_module_state` stacks
the K models' parameters and buffers along a new leading dimension and `vmap`
runs the one model definition over them, so every model in the registry
(convolutions, BatchNorm, dropout, embeddings) is batched without a rewrite.
The optimizers here are elementwise, so one optimizer over the stacked tensors
is K independent optimizers; each replicate's loss reaches only its own slice.

A replicate whose training loss is not finite has diverged: its row for that
epoch says so (with its test metrics), it reports no further rows, and the
others go on. The trial ends when every replicate has finished or diverged.

Each report's `metrics` holds the aggregate over replicates (config `aggregate`:
mean, median or min of each metric, every replicate counted at its latest row),
which is what a search optimises, and `replicate_metrics`: this epoch's rows, one
per replicate still training, each with its own `seed`. study.export turns those
into ordinary per-seed rows. Time columns of a replicate's rows are its share of
the batched trial's time (the trial's time / K), so per-sample costs compare with
single-seed trials.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from trainables import augment
from trainables import data as datasets
from trainables.loop import (EVAL_BATCH_SIZE, Report, augmented_image_size, autocast_for, build_model, cost_metrics,
                             epoch_draws, global_rng_state, pick_device, restore_global_rng, samples_used,
                             trial_splits, weight_layer_names)
from trainables.optim import count_params, make_optimizer
from trainables.registry import AGGREGATES

AGGREGATED = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def has_image_convolutions(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


class StackedModel:
    """K copies of one architecture as stacked parameters and buffers, run with vmap.

    `chunk_size=1` makes vmap run the model one replicate at a time (still one call, one
    optimizer step). fit_replicates asks for it on a CPU for models with 2-D convolutions:
    unchunked, vmap turns K convolutions into one grouped convolution, and oneDNN's is
    slow for image convolutions (5 replicates vs 5 separate trials, one thread: LeNet-5
    0.63x grouped, 0.87x chunked; conv6 0.54x grouped, 0.93x chunked). The 1-D CNN's small
    convolutions and MLPs' matrix products batch well unchunked (1-D CNN 1.04x grouped,
    0.77x chunked; MNIST-1D MLP at K=10 2.07x unchunked, 0.92x chunked). On a GPU the
    grouped form is kept (cuDNN; not measured here). See benchmarks/README.md.
    """

    def __init__(self, models: list[torch.nn.Module], chunk_size: int | None = None):
        self.params, self.buffers = stack_module_state(models)
        # Linear weights kept in transposed (column-major) storage: under vmap the weight
        # gradient comes out as input^T @ grad, which a row-major parameter must copy into
        # its own layout every step (about a quarter of a batched MNIST MLP step on a CPU); in this
        # layout it is taken as it is, and the forward's W^T is contiguous.
        for name, module in models[0].named_modules():
            if isinstance(module, torch.nn.Linear):
                weight = self.params[f"{name}.weight"]
                self.params[f"{name}.weight"] = (
                    weight.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_())
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture only; weights live in the stacks

        def one(params, buffers, x):
            return functional_call(self.base, (params, buffers), (x,))

        # "different": each replicate draws its own dropout masks
        self._train = vmap(one, randomness="different", chunk_size=chunk_size)
        self._shared_input = vmap(one, in_dims=(0, 0, None), randomness="different", chunk_size=chunk_size)

    def train_step(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, batch, ...) -> logits (K, batch, classes), BatchNorm in training mode."""
        self.base.train()
        return self._train(self.params, self.buffers, x)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, ...), the same inputs for every replicate -> logits (K, batch, classes)."""
        self.base.eval()
        return self._shared_input(self.params, self.buffers, x)


@torch.inference_mode()
def evaluate(stacked: StackedModel, splits: datasets.Splits, x: torch.Tensor, y: torch.Tensor, autocast,
             k: int) -> tuple[list[float], list[float]]:
    """Per-replicate mean cross-entropy and accuracy over (x, y)."""
    loss_sum = torch.zeros(k, device=x.device)
    correct = torch.zeros(k, device=x.device, dtype=torch.int64)
    batch = max(1, EVAL_BATCH_SIZE // k)  # K replicates' activations at once: keep memory as unbatched
    for i in range(0, len(y), batch):
        xb, yb = splits.prepare(x[i : i + batch]), y[i : i + batch]
        with autocast():
            logits = stacked.evaluate(xb)
        loss_sum += F.cross_entropy(logits.float().flatten(0, 1), yb.repeat(k), reduction="none").view(k, -1).sum(1)
        correct += (logits.argmax(-1) == yb).sum(1)
    n = max(len(y), 1)
    return (loss_sum / n).tolist(), (correct.double() / n).tolist()


def aggregate(rows: list[dict], how: str) -> dict:
    """One value per metric across replicates (NaN propagates: a diverged loss is not hidden)."""
    out = {}
    for key in AGGREGATED:
        values = [row[key] for row in rows if key in row]
        if len(values) == len(rows):
            out[key] = float(AGGREGATES[how](np.asarray(values, dtype=float)))
    return out


def fit_replicates(cfg: dict, report: Report, *, data_root=None, download=False, device=None, start=None,
                   splits=None, tags=None) -> dict:
    """`fit` for a resolved config with replicates = K > 1 (see the module docstring)."""
    dev = pick_device(device)
    splits = trial_splits(cfg, dev, data_root, download, splits)
    k = cfg["replicates"]
    seeds = [cfg["seed"] + r for r in range(k)]
    models = [build_model(cfg, splits, seed, dev) for seed in seeds]
    n_params = count_params(models[0])
    watched = [f"{name}.weight" for name in weight_layer_names(models[0])]
    watched = [watched[0], watched[-1]] if cfg["grad_norms"] else []
    stacked = StackedModel(models, chunk_size=1 if dev.type == "cpu" and has_image_convolutions(models[0]) else None)
    del models
    params = stacked.params
    optimizer = make_optimizer(cfg["optimizer"], list(params.values()), lr=cfg["lr"],
                               weight_decay=cfg["weight_decay"], momentum=cfg["momentum"], nesterov=cfg["nesterov"])
    data_rngs = [torch.Generator().manual_seed(seed) for seed in seeds]  # as `fit` seeds its one generator
    first_epoch, train_time_s, history = 1, 0.0, []
    training = [True] * k  # False once a replicate has diverged
    latest: list[dict] = [{} for _ in range(k)]  # each replicate's latest row, for the aggregate
    if start is not None:
        with torch.no_grad():
            for name, value in start["params"].items():
                params[name].copy_(value)
            for name, value in start["buffers"].items():
                stacked.buffers[name].copy_(value)
        optimizer.load_state_dict(start["optimizer"])
        restore_global_rng(start, dev)
        for rng, rng_state in zip(data_rngs, start["data_rngs"]):
            rng.set_state(rng_state)
        first_epoch, train_time_s = start["epoch"] + 1, start["train_time_s"]
        training, latest = list(start["training"]), [dict(row) for row in start["latest"]]
        history = list(start["history"])

    autocast = autocast_for(cfg, dev)
    augment_size = augmented_image_size(cfg, splits)
    n_train = len(splits.train_y)
    batch_size = cfg["batch_size"]
    n_used = samples_used(n_train, batch_size)
    item_shape = splits.train_x.shape[1:]
    metrics: dict = {}

    for epoch in range(first_epoch, cfg["epochs"] + 1):
        t0 = time.perf_counter()
        draws = [epoch_draws(n_train, augment_size, rng) for rng in data_rngs]  # what each single-seed run draws
        perms = torch.stack([perm for perm, _, _ in draws]).to(dev)
        if augment_size:
            shifts = torch.stack([shift for _, shift, _ in draws]).to(dev)
            flips = torch.stack([flip for _, _, flip in draws]).to(dev)
        loss_sum = torch.zeros(k, device=dev)
        correct = torch.zeros(k, device=dev, dtype=torch.int64)
        grad_sums = torch.zeros(k, len(watched), device=dev)
        steps = 0
        for i in range(0, n_used, batch_size):
            j = min(i + batch_size, n_used)
            idx = perms[:, i:j]
            xb = splits.train_x[idx.flatten()]
            if augment_size:
                xb = augment.apply(xb, shifts[:, i:j].flatten(0, 1), flips[:, i:j].flatten())
            xb = splits.prepare(xb).view(k, j - i, *item_shape)
            yb = splits.train_y[idx]
            with autocast():
                logits = stacked.train_step(xb)
            losses = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none").view(k, -1).mean(1)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # d(sum)/d(loss_r) = 1: replicate r's slice gets exactly its own gradient
            if watched:
                grad_sums += torch.stack([params[name].grad.flatten(1).norm(dim=1) for name in watched], 1)
            optimizer.step()
            loss_sum += losses.detach() * (j - i)
            correct += (logits.detach().argmax(-1) == yb).sum(1)
            steps += 1
        train_losses = (loss_sum / n_used).tolist()
        train_accs = (correct.double() / n_used).tolist()
        train_time_s += time.perf_counter() - t0
        val_losses, val_accs = evaluate(stacked, splits, splits.val_x, splits.val_y, autocast, k)
        grad_means = (grad_sums / max(steps, 1)).tolist()
        epoch_s = time.perf_counter() - t0

        rows: dict[int, dict] = {}  # replicate index -> its row, for the replicates still training
        for r in range(k):
            if not training[r]:
                continue
            rows[r] = {"epoch": epoch, "seed": seeds[r], "train_loss": train_losses[r], "train_acc": train_accs[r],
                       "val_loss": val_losses[r], "val_acc": val_accs[r], "epoch_time_s": epoch_s / k,
                       "diverged": not np.isfinite(train_losses[r])}
            if watched:
                rows[r].update(grad_norm_first=grad_means[r][0], grad_norm_last=grad_means[r][1])
            rows[r].update(tags or {})
        ending = [r for r, row in rows.items() if row["diverged"] or epoch == cfg["epochs"]]
        infer_share = 0.0
        if ending:
            t_test = time.perf_counter()
            test_losses, test_accs = evaluate(stacked, splits, splits.test_x, splits.test_y, autocast, k)
            infer_share = (time.perf_counter() - t_test) / k
            for r in ending:
                rows[r].update(test_loss=test_losses[r], test_acc=test_accs[r], n_params=n_params,
                               **cost_metrics(train_time_s / k, n_used * epoch, infer_share, splits.test_y, dev))
        for r, row in rows.items():
            latest[r] = row
            training[r] = not row["diverged"]
        done = epoch == cfg["epochs"] or not any(training)

        metrics = {"epoch": epoch, **aggregate(latest, cfg["aggregate"]), "epoch_time_s": epoch_s,
                   "diverged": not any(training), "replicates_diverged": training.count(False)}
        if done:  # every replicate has its test row now, so the aggregate above has test_loss / test_acc
            metrics.update(n_params=n_params, **cost_metrics(train_time_s, n_used * epoch * k, infer_share * k,
                                                             splits.test_y, dev))
        metrics.update(tags or {})
        metrics["replicate_metrics"] = list(rows.values())
        history.append(metrics)
        state = {
            "epoch": epoch,
            "history": history,
            "params": {name: p.detach() for name, p in params.items()},
            "buffers": dict(stacked.buffers),
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
