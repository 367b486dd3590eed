"""Benchmark 1: the trainable's epoch vs a bare minimal PyTorch loop (target <= 1.10x).

Same model, data (synthetic, the real shapes), batch size, optimizer and number
of epochs (3; a trial's once-only work is amortised as in a real trial). The
bare loop holds pre-normalised float tensors and does only randperm, slice,
forward, loss, backward, step, plus one validation pass. The trainable does
what a trial does: uint8 data normalised per batch, running loss/accuracy,
validation, the per-epoch report and a checkpoint written to disk.
"""

from __future__ import annotations

import sys
import tempfile

import torch
import torch.nn.functional as F

from benchmarks.common import interleaved, machine, synthetic_images, verdict
from trainables import fit
from trainables.optim import make_optimizer
from trainables.registry import get_spec, resolve_config

EPOCHS = 3
CASES = {
    "mnist_mlp": ((1, 28, 28), 20000, {"mean": (0.1307,), "std": (0.3081,)}),
    "cifar10_lenet": ((3, 32, 32), 10000, {"mean": (0.49, 0.48, 0.45), "std": (0.25, 0.24, 0.26)}),
}


def bare_loop(config: dict, splits, x_train: torch.Tensor, x_val: torch.Tensor) -> None:
    cfg = resolve_config(config)
    torch.manual_seed(0)
    model = get_spec(cfg["trainable"]).build(cfg, splits)
    opt = make_optimizer(cfg["optimizer"], model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    for _ in range(cfg["epochs"]):
        model.train()
        perm = torch.randperm(len(x_train))
        for i in range(0, len(x_train), cfg["batch_size"]):
            idx = perm[i : i + cfg["batch_size"]]
            loss = F.cross_entropy(model(x_train[idx]), splits.train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            for i in range(0, len(x_val), 2048):
                model(x_val[i : i + 2048]).argmax(1)


def trainable_run(config: dict, splits, folder: str) -> None:
    def report(metrics, state):  # what Ray's adapter does: write the checkpoint file
        torch.save(state, f"{folder}/state.pt")

    fit(config, report, splits=splits)


def run(repeats: int = 7) -> list[str]:
    lines = [f"## loop overhead  ({machine()})"]
    with tempfile.TemporaryDirectory() as folder:
        for trainable, (shape, n, norm) in CASES.items():
            splits = synthetic_images(n, shape, **norm)
            x_train, x_val = splits.prepare(splits.train_x), splits.prepare(splits.val_x)
            config = {"trainable": trainable, "epochs": EPOCHS}
            times = interleaved({
                "bare": lambda: bare_loop(config, splits, x_train, x_val),
                "trainable": lambda: trainable_run(config, splits, folder),
            }, repeats=repeats)
            ratio = times["trainable"] / times["bare"]
            lines.append(f"{trainable}: bare loop {times['bare'] / EPOCHS * 1e3:.0f} ms/epoch, trainable "
                         f"{times['trainable'] / EPOCHS * 1e3:.0f} ms/epoch ({n} samples, batch "
                         f"{resolve_config(config)['batch_size']}, {EPOCHS}-epoch runs: the trainable's per-trial "
                         f"work, the final test evaluation included, is spread over them as in a real trial)")
            lines.append(verdict(f"loop overhead {trainable}", ratio, 1.10, higher_is_better=False))
    return lines


if __name__ == "__main__":
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 7)))
