"""Benchmark 6: seed-batched trials. K seeds of one configuration as the members of one trial
(`members=seed_members(0, K)`, trainables.engines) vs K separate single-seed trials, K = 1, 4, 10.

Both sides are whole trials run in this process on one thread (what a 1-CPU Ray trial
gets): model build, every epoch's training and validation, the test pass, and each
epoch's checkpoint serialised as Tune's adapter does. Ray's own per-trial cost (the
study_overhead benchmark) would add to the K separate trials only, so leaving it out
favours them. Runs alternate (separate, batched, separate, ...) and the median counts.
Target: at least 2x for K = 10 on the MNIST-1D and MNIST MLPs.

Then what a user sees: mnist1d_grid (16 configurations, 1-D CNN) with 10 seeds as 160
single-seed Ray trials vs `--fuse 10` (16 trials of one configuration's 10 seeds; the preset's
axes, activation and batchnorm, are not fusible), on a local 2-CPU Ray.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time

import torch

from benchmarks.common import interleaved, machine, verdict, write_mnist_idx
from trainables import data as datasets
from trainables.loop import fit
from trainables.registry import get_spec, resolve_config, seed_members

CASES = {
    # trainable: (extra config, epochs); MNIST: 10,000 real digits (9,000 train after the hold-out)
    "mnist1d_mlp": ({}, 3),
    "mnist_mlp": ({"max_train_samples": 9000}, 1),
    "mnist1d_cnn": ({}, 2),
}
TARGET_K = 10
REPLICATE_COUNTS = (1, 4, 10)


def checkpointing_report(metrics: dict, state: dict) -> None:
    torch.save(state, io.BytesIO())  # what tune_adapter.report_to_tune writes each epoch


def separate(config: dict, k: int, data_root: str):
    def go():
        for seed in range(k):
            fit({**config, "seed": seed}, checkpointing_report, data_root=data_root)
    return go


def batched(config: dict, k: int, data_root: str):
    return lambda: fit({**config, "members": seed_members(0, k)}, checkpointing_report, data_root=data_root)


def study_wall_time(argv: list[str], storage: str, data_root: str, name: str) -> float:
    from study.options import parse_args
    from study.run import run as run_study

    options = parse_args("mnist1d_grid", [*argv, "--storage", storage, "--data-root", data_root, "--name", name])
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_study(options) == 0
    return time.perf_counter() - start


def study_lines(epochs: int = 3, cpus: int = 2) -> list[str]:
    import ray

    with tempfile.TemporaryDirectory() as storage:
        data_root = f"{storage}/data"
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        try:
            common = ["--seeds", "10", "--epochs", str(epochs)]
            single = study_wall_time(common, storage, data_root, "single")
            batched_ = study_wall_time([*common, "--fuse", "10"], storage, data_root, "batched")
        finally:
            ray.shutdown()
    return [f"mnist1d_grid, 10 seeds x 16 configurations x {epochs} epochs on a {cpus}-CPU local Ray: "
            f"160 single-seed trials {single:.1f} s, 16 trials of 10 batched seeds {batched_:.1f} s "
            f"-> {single / batched_:.2f}x the throughput"]


def run(repeats: int = 5) -> list[str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    lines = [f"## seed batching: K seeds in one batched trial vs K separate trials  ({machine()})"]
    verdicts = []
    try:
        with tempfile.TemporaryDirectory() as data_root:
            write_mnist_idx(data_root)
            for trainable, (extra, epochs) in CASES.items():
                config = {"trainable": trainable, "epochs": epochs, **extra}
                datasets.load(get_spec(trainable).dataset, data_root)  # loaded and cached before any timing
                batch = resolve_config(config)["batch_size"]
                lines.append(f"{trainable} ({epochs} epochs, batch {batch}):")
                for k in REPLICATE_COUNTS:
                    candidates = {"separate": separate(config, k, data_root)}
                    if k > 1:
                        candidates["batched"] = batched(config, k, data_root)
                    times = interleaved(candidates, repeats=repeats)
                    if k == 1:
                        lines.append(f"  K=1: one trial {times['separate']:.2f} s (the unit of work)")
                        continue
                    ratio = times["separate"] / times["batched"]
                    lines.append(f"  K={k}: {k} separate trials {times['separate']:.2f} s, one batched trial "
                                 f"{times['batched']:.2f} s -> {ratio:.2f}x the throughput")
                    if k == TARGET_K and trainable.endswith("_mlp"):
                        verdicts.append(verdict(f"seed batching K={k} on {trainable} (CPU)", ratio, 2.0,
                                                higher_is_better=True))
    finally:
        torch.set_num_threads(threads)
    return lines + study_lines() + verdicts


if __name__ == "__main__":
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
