"""Benchmark 12: the cost of config `diagnostics` (target: at most 3% of an epoch on a CPU).

A trial with diagnostics on runs, after each epoch, one forward and backward pass over a fixed
batch of 128 validation samples per member with hooks on the hidden activations
(trainables.diagnostics); its steps do nothing extra. Two figures per case, the trainable's
default batch size and optimizer, 10 epochs (the presets train 10 to 30):
- share: the diagnostics pass's time over the epoch's (training and validation), both timed
  inside the same trials (the pass wrapped with a timer), median over epochs 3 to 10 and the
  repeats. This is the verdict: it resolves a 1% cost, which whole-trial timings cannot here.
- ratio: whole trials with diagnostics on over off, interleaved, as Ray's adapter runs them
  (benchmarks.loop_overhead.trainable_run: validation, the final test pass and the checkpoint
  included), median of the repeats; a cross-check that nothing else got slower, within this
  machine's noise (a few %).
The cases are the loop-overhead benchmark's data and the mnist_depth preset's deepest network
(ten sigmoid layers of 48).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

from benchmarks.common import interleaved, machine, verdict
from benchmarks.loop_overhead import CASES as DATA
from benchmarks.loop_overhead import trainable_run
from trainables import loop

CASES = {  # name: (the trial's config, the loop-overhead case whose data it trains on)
    "mnist_mlp": ({"trainable": "mnist_mlp"}, "mnist_mlp"),
    "mnist_depth 10 x 48 sigmoid": ({"trainable": "mnist_mlp", "depth": 10, "width": 48, "activation": "sigmoid",
                                     "optimizer": "sgd", "momentum": 0.9}, "mnist_mlp"),
    "mnist1d_mlp": ({"trainable": "mnist1d_mlp"}, "mnist1d_mlp"),
    "mnist1d_cnn": ({"trainable": "mnist1d_cnn"}, "mnist1d_cnn"),
    "twitter_pos_mlp": ({"trainable": "twitter_pos_mlp"}, "twitter_pos_mlp"),
    "cifar10_lenet": ({"trainable": "cifar10_lenet"}, "cifar10_lenet"),
}
TARGET = 0.03
EPOCHS = 10


def diagnostics_share(config: dict, splits, repeats: int) -> float:
    """Median over epochs 3.. and repeats of the diagnostics pass's time / the epoch's."""
    passes, epochs = [], []
    measured = loop.member_diagnostics

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = measured(*args, **kwargs)
        passes.append(time.perf_counter() - start)
        return out

    loop.member_diagnostics = timed
    try:
        for _ in range(repeats):
            rows = []
            loop.fit({**config, "diagnostics": True}, lambda metrics, state: rows.append(metrics), splits=splits)
            epochs += [row["epoch_time_s"] for row in rows]
    finally:
        loop.member_diagnostics = measured
    # epochs 3.. of each trial: the first two carry the once-only work (allocations, the first hooks)
    shares = [spent / epoch for i, (spent, epoch) in enumerate(zip(passes, epochs)) if i % EPOCHS >= 2]
    return statistics.median(shares)


def run(repeats: int = 5, names: list[str] | None = None) -> list[str]:
    lines = [f"## diagnostics cost  ({machine()})"]
    with tempfile.TemporaryDirectory() as folder:
        for name in names or CASES:
            config, data = CASES[name]
            what, make_splits = DATA[data]
            splits = make_splits()
            config = {**config, "epochs": EPOCHS}
            share = diagnostics_share(config, splits, repeats)
            times = interleaved({
                "off": lambda: trainable_run(config, splits, folder),
                "on": lambda: trainable_run({**config, "diagnostics": True}, splits, folder),
            }, repeats=repeats)
            lines.append(f"{name} ({what}, {len(splits.train_y)} train): epoch {times['off'] / EPOCHS * 1e3:.0f} ms, "
                         f"diagnostics {100 * share:.1f}% of it; whole trials on / off {times['on'] / times['off']:.3f}")
            lines.append(verdict(f"diagnostics cost {name}", 100 * share, 100 * TARGET, higher_is_better=False,
                                 unit="%"))
    return lines


if __name__ == "__main__":
    # python -m benchmarks.diagnostics_cost [REPEATS [CASE ...]]
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5, sys.argv[2:] or None)))
