"""Benchmark 4: cost per activation: training and inference microseconds per sample on the
Twitter POS window MLP and CIFAR-10 LeNet-5, every activation timed in turn (interleaved), with
its ratio to ReLU. The reference setups saw GELU and Mish cost up to 2x ReLU on CPU; the verdict
checks the dearest activation against that.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from benchmarks.common import interleaved, machine, verdict
from trainables import models
from trainables.activations import ACTIVATIONS

CASES = {
    # name: (model builder, input maker, batch size of the reference setup)
    "twitter_pos window MLP": (lambda a: models.window_mlp(20000, 25, activation=a, dropout=0.2),
                               lambda n, g: torch.randint(0, 20000, (n, 3), generator=g), 16),
    "cifar10 LeNet-5": (lambda a: models.lenet5(activation=a),
                        lambda n, g: torch.randn(n, 3, 32, 32, generator=g), 128),
}
TRAIN_STEPS = 30
INFER_BATCH = 2048


def train_steps(model, opt, xs, ys, batch):
    model.train()
    for i in range(TRAIN_STEPS):
        x, y = xs[i * batch:(i + 1) * batch], ys[i * batch:(i + 1) * batch]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def infer(model, xs):
    model.eval()
    with torch.inference_mode():
        model(xs[:INFER_BATCH]).argmax(1)


def run(repeats: int = 5) -> list[str]:
    lines = [f"## cost per activation  ({machine()})"]
    worst = []
    for case, (build, make_x, batch) in CASES.items():
        g = torch.Generator().manual_seed(0)
        xs = make_x(max(TRAIN_STEPS * batch, INFER_BATCH), g)
        ys = torch.randint(0, 10, (len(xs),), generator=g)
        setups = {}
        for name in ACTIVATIONS:
            torch.manual_seed(0)
            model = build(name)
            setups[name] = (model, torch.optim.SGD(model.parameters(), lr=0.01))
        train = interleaved({n: (lambda m=m, o=o: train_steps(m, o, xs, ys, batch)) for n, (m, o) in setups.items()},
                            repeats=repeats)
        inference = interleaved({n: (lambda m=m: infer(m, xs)) for n, (m, _) in setups.items()}, repeats=repeats)
        lines.append(f"{case} (train batch {batch}, inference batch {INFER_BATCH}):")
        lines.append(f"  {'activation':<11} {'train us/sample':>16} {'x relu':>7} {'infer us/sample':>16} {'x relu':>7}")
        for name in ACTIVATIONS:
            t = 1e6 * train[name] / (TRAIN_STEPS * batch)
            i = 1e6 * inference[name] / INFER_BATCH
            lines.append(f"  {name:<11} {t:>16.2f} {train[name] / train['relu']:>7.2f} {i:>16.3f} "
                         f"{inference[name] / inference['relu']:>7.2f}")
        dearest = max(ACTIVATIONS, key=lambda n: train[n])
        worst.append((case, dearest, train[dearest] / train["relu"]))
    for case, name, ratio in worst:
        lines.append(verdict(f"dearest activation on {case} ({name}) vs relu, training", ratio, 2.0,
                             higher_is_better=False))
    return lines


if __name__ == "__main__":
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
