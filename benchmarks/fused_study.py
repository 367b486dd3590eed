"""Benchmark 11: whole fused studies. The same grid study run as separate trials and with
`--fuse K`, on a Ray of 2 CPUs, as a user runs it (study.run: scheduling, reports, checkpoints,
the Parquet export); the wall time of each and their ratio. Both give the same runs in their
Parquet files (tests/test_fused_study.py checks the numbers); here only the time is compared.

- `lr_sensitivity`, its whole 7 x 6 grid of lr x weight decay (42 points, every one fusible) on
  the MNIST MLP, 2 epochs of 4 000 samples: short trials, where Ray's per-trial cost weighs most.
- `twitter_pos_grid`, its whole 6 activations x 4 lr x 3 seeds (72 runs; the activation is not
  fusible, so 6 groups of 12), 10 epochs of 3 000 windows: longer trials, batch 16.

The arms of a study alternate (A B A B ...) and each is summarised by its median.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import ray

from benchmarks.common import SHARED_DATA, copy_twitter_pos, machine, write_mnist_idx
from study.options import parse_args
from study.run import run as run_study

CPUS = 2

# study -> (flags of both arms, {arm: its extra flags})
STUDIES = {
    "lr_sensitivity": (["--epochs", "2", "--set", "max_train_samples=4000", "--set", "max_eval_samples=1000"],
                       {"separate trials": [], "--fuse 8": ["--fuse", "8"], "--fuse 21": ["--fuse", "21"]}),
    "twitter_pos_grid": (["--epochs", "10", "--set", "max_train_samples=3000", "--set", "max_eval_samples=1000"],
                         {"separate trials": [], "--fuse 6": ["--fuse", "6"], "--fuse 12": ["--fuse", "12"]}),
}


def one_study(preset: str, storage: str, data_root: str, name: str, flags: list[str]) -> tuple[float, int, int]:
    """Wall seconds, Ray trials and result rows (runs) of one whole study."""
    options = parse_args(preset, [*flags, "--storage", storage, "--data-root", data_root, "--name", name])
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_study(options) == 0
    wall = time.perf_counter() - start
    runs = pd.read_parquet(Path(storage) / name / "trials.parquet")
    trials = runs["trial_id"].str.replace(r"-m\d+$", "", regex=True).nunique()
    return wall, trials, len(runs)


def data_for(preset: str, data_root: Path) -> bool:
    if preset == "lr_sensitivity":
        write_mnist_idx(data_root)
        return True
    return copy_twitter_pos(data_root)


def run(repeats: int = 2, presets: list[str] | None = None) -> list[str]:
    lines = [f"## fused studies: a whole grid study as separate trials and fused ({machine()}, Ray {CPUS} CPUs)"]
    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
    try:
        for preset in presets or STUDIES:
            common, arms = STUDIES[preset]
            with tempfile.TemporaryDirectory() as storage:
                data_root = Path(storage) / "data"
                if not data_for(preset, data_root):
                    lines.append(f"{preset}: skipped (no ARK Twitter POS files under {SHARED_DATA})")
                    continue
                walls: dict[str, list[float]] = {arm: [] for arm in arms}
                shape: dict[str, tuple[int, int]] = {}
                for r in range(repeats):
                    for i, (arm, flags) in enumerate(arms.items()):
                        wall, trials, runs = one_study(preset, storage, str(data_root), f"{preset}-{i}-{r}",
                                                       [*common, *flags])
                        walls[arm].append(wall)
                        shape[arm] = (trials, runs)
                base = statistics.median(walls["separate trials"])
                lines.append(f"{preset} ({' '.join(common)}):")
                for arm in arms:
                    wall = statistics.median(walls[arm])
                    trials, runs = shape[arm]
                    lines.append(f"  {arm}: {runs} runs in {trials} trials, wall {wall:.1f} s "
                                 f"({base / wall:.2f}x the separate trials' speed)")
    finally:
        ray.shutdown()
    return lines


if __name__ == "__main__":
    # python -m benchmarks.fused_study [REPEATS [PRESET ...]]
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 2, sys.argv[2:] or None)))
