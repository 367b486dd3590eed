"""Benchmark 2: the trainable vs the usual pipeline (target >= 2x faster on CPU, >= 20x on a GPU).

The usual pipeline: torchvision's MNIST dataset with a per-sample
ToTensor + Normalize transform, a shuffling DataLoader, and the same model,
optimizer, batch size and validation pass. hpstudy: the same files parsed once
into uint8 tensors, an epoch as randperm + slicing, normalisation per batch.
Both read the same IDX files (the real MNIST test digits where available).
"""

from __future__ import annotations

import sys
import tempfile

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from benchmarks.common import interleaved, machine, verdict, write_mnist_idx
from trainables import data, fit
from trainables.optim import make_optimizer
from trainables.registry import get_spec, resolve_config


def usual_epoch(config: dict, root: str, splits) -> None:
    cfg = resolve_config(config)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    full = datasets.MNIST(root, train=True, transform=tf)
    # the same train / validation hold-out as the trainable
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(data.SPLIT_SEED))
    n_val = round(len(full) * data.VAL_FRACTION)
    train = DataLoader(Subset(full, perm[n_val:].tolist()), batch_size=cfg["batch_size"], shuffle=True)
    val = DataLoader(Subset(full, perm[:n_val].tolist()), batch_size=1024)
    torch.manual_seed(0)
    model = get_spec(cfg["trainable"]).build(cfg, splits)
    opt = make_optimizer(cfg["optimizer"], model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    model.train()
    for x, y in train:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.inference_mode():
        for x, _ in val:
            model(x).argmax(1)


def run(repeats: int = 5) -> list[str]:
    lines = [f"## versus the usual DataLoader pipeline  ({machine()})"]
    with tempfile.TemporaryDirectory() as root:
        write_mnist_idx(root)
        splits = data.load("mnist", root)
        for batch_size in (64, 128):
            config = {"trainable": "mnist_mlp", "epochs": 1, "batch_size": batch_size}
            times = interleaved({
                "dataloader": lambda: usual_epoch(config, root, splits),
                "hpstudy": lambda: fit(config, lambda m, s: None, data_root=root),
            }, repeats=repeats)
            lines.append(f"mnist_mlp batch {batch_size}: DataLoader {times['dataloader'] * 1e3:.0f} ms/epoch, "
                         f"hpstudy {times['hpstudy'] * 1e3:.0f} ms/epoch (9000 train + 1000 val samples)")
            lines.append(verdict(f"speed-up vs DataLoader, batch {batch_size} (CPU)",
                                 times["dataloader"] / times["hpstudy"], 2.0, higher_is_better=True))
    return lines


if __name__ == "__main__":
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
