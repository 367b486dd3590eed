"""Benchmark 3: a study of 32 short MNIST-1D trials on 2 CPUs, wall time vs the trials' own time
divided by the concurrency (target <= 1.25x; Ray start-up reported separately).

The grid is mnist1d_grid with 2 seeds (8 activations x batchnorm x 2 seeds = 32
trials) and few epochs. The same study runs as hpstudy runs it (reuse_actors, a
checkpoint every 30 s and at the end), with a checkpoint every epoch, and with
reuse_actors off.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import ray

from benchmarks.common import machine, verdict
from study.options import parse_args
from study.run import run as run_study

CPUS = 2


# name -> (reuse_actors, extra flags)
ARMS = {
    "hpstudy's settings (reuse_actors, --checkpoint-every-s 30)": (True, []),
    "a checkpoint every epoch (--checkpoint-every-s 0)": (True, ["--checkpoint-every-s", "0"]),
    "reuse_actors=False (Ray's default)": (False, []),
}


def one_study(storage: str, data_root: str, epochs: int, name: str, reuse_actors: bool,
              flags: list[str]) -> tuple[float, pd.DataFrame, pd.DataFrame]:
    options = parse_args("mnist1d_grid", ["--seeds", "2", "--epochs", str(epochs), "--storage", storage,
                                          "--data-root", data_root, "--name", name, *flags])
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_study(options, reuse_actors=reuse_actors) == 0
    wall = time.perf_counter() - start
    folder = Path(storage) / name
    return wall, pd.read_parquet(folder / "trials.parquet"), pd.read_parquet(folder / "epochs.parquet")


def run(epochs: int = 20) -> list[str]:
    lines = [f"## study overhead  ({machine()})"]
    with tempfile.TemporaryDirectory() as storage:
        data_root = str(Path(storage) / "data")
        start = time.perf_counter()
        ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - start
        try:
            for i, (arm, (reuse, flags)) in enumerate(ARMS.items()):
                wall, trials, epochs_frame = one_study(storage, data_root, epochs, f"arm{i}", reuse, flags)
                trial_time = epochs_frame["epoch_time_s"].sum() / CPUS
                train_only = trials["train_time_s"].sum() / CPUS
                lines.append(f"{arm}: {len(trials)} trials x {epochs} epochs, wall {wall:.1f} s; "
                             f"trials' epoch time (train + validation) / {CPUS} = {trial_time:.1f} s "
                             f"(training steps only: {train_only:.1f} s)")
                lines.append(verdict(f"study overhead, {arm}", wall / trial_time, 1.25, higher_is_better=False))
        finally:
            ray.shutdown()
    lines.append(f"Ray start-up (ray.init, {CPUS} CPUs): {startup:.1f} s, not included above")
    return lines


if __name__ == "__main__":
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20)))
