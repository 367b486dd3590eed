"""Benchmark 12: the cost of config `diagnostics` (target <= 1.03x an epoch on a CPU).

A trial with diagnostics on records each step's gradient norms of the first and last weight
layer and, after each epoch, runs one forward pass over a fixed batch of 256 validation samples
with hooks on the hidden activations (trainables.diagnostics). Each case's trial is timed with
diagnostics off and on, interleaved, as Ray's adapter runs it (benchmarks.loop_overhead.trainable_run:
validation, the final test pass and the checkpoint included), 10 epochs at the trainable's
default batch size and optimizer (the presets train 10 to 30: a trial's once-only work is spread
over them as in a real one). The cases are the loop-overhead benchmark's data and the mnist_depth
preset's deepest network (ten sigmoid layers of 48).
"""

from __future__ import annotations

import sys
import tempfile

from benchmarks.common import interleaved, machine, verdict
from benchmarks.loop_overhead import CASES as DATA
from benchmarks.loop_overhead import trainable_run

CASES = {  # name: (the trial's config, the loop-overhead case whose data it trains on)
    "mnist_mlp": ({"trainable": "mnist_mlp"}, "mnist_mlp"),
    "mnist_depth 10 x 48 sigmoid": ({"trainable": "mnist_mlp", "depth": 10, "width": 48, "activation": "sigmoid",
                                     "optimizer": "sgd", "momentum": 0.9}, "mnist_mlp"),
    "mnist1d_mlp": ({"trainable": "mnist1d_mlp"}, "mnist1d_mlp"),
    "mnist1d_cnn": ({"trainable": "mnist1d_cnn"}, "mnist1d_cnn"),
    "twitter_pos_mlp": ({"trainable": "twitter_pos_mlp"}, "twitter_pos_mlp"),
    "cifar10_lenet": ({"trainable": "cifar10_lenet"}, "cifar10_lenet"),
}
TARGET = 1.03
EPOCHS = 10


def run(repeats: int = 7, names: list[str] | None = None) -> list[str]:
    lines = [f"## diagnostics cost  ({machine()})"]
    with tempfile.TemporaryDirectory() as folder:
        for name in names or CASES:
            config, data = CASES[name]
            what, make_splits = DATA[data]
            splits = make_splits()
            config = {**config, "epochs": EPOCHS}
            times = interleaved({
                "off": lambda: trainable_run(config, splits, folder),
                "on": lambda: trainable_run({**config, "diagnostics": True}, splits, folder),
            }, repeats=repeats)
            ratio = times["on"] / times["off"]
            lines.append(f"{name} ({what}, {len(splits.train_y)} train): off {times['off'] / EPOCHS * 1e3:.0f} ms/epoch, "
                         f"on {times['on'] / EPOCHS * 1e3:.0f} ms/epoch, ratio {ratio:.3f}")
            lines.append(verdict(f"diagnostics cost {name}", ratio, TARGET, higher_is_better=False))
    return lines


if __name__ == "__main__":
    # python -m benchmarks.diagnostics_cost [REPEATS [CASE ...]]
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 7, sys.argv[2:] or None)))
