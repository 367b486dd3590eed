"""Benchmark 10: fused configurations. K configurations of one architecture that differ in lr
(and seed) as the members of one trial (`members`, `--fuse K`) vs K separate trials, K = 2, 4,
8, 16, per trainable.

Both sides are whole trials in this process on one thread (a 1-CPU Ray trial): model build,
training, validation, the test pass and each epoch's checkpoint serialised as Tune's adapter
does. Ray's per-trial cost (study_overhead) would add to the separate trials only, so leaving it
out favours them. Runs alternate and the median counts. The fused trial runs both ways
(config `member_engine`): stacked (one vmapped computation) and looped (K plain models one after
another): where stacking loses is the line trainables.engines.choose_engine draws for "auto".
Target: >= 2x for the small models on a CPU, and no slowdown with "auto".

`python -m benchmarks.fusion --gpu` runs the GPU variant on any CUDA machine: per-member
throughput at K = 1..64 and GPU memory per member for LeNet-5, conv6 at batch 64 and the MLPs.
"""

from __future__ import annotations

import io
import sys
import tempfile

import torch

from benchmarks.common import interleaved, machine, synthetic_images, verdict, write_mnist_idx
from benchmarks.loop_overhead import twitter_pos_splits
from trainables import data as datasets
from trainables.loop import fit
from trainables.registry import get_spec, resolve_config

LRS = (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005)
CASES = {
    # trainable: (extra config, epochs, the data: None for the real-format files under the data root)
    "mnist1d_mlp": ({"optimizer": "sgd", "momentum": 0.9}, 2, None),
    "mnist1d_cnn": ({"optimizer": "sgd", "momentum": 0.9}, 2, None),
    "mnist_mlp": ({"max_train_samples": 4000}, 1, None),
    "cifar10_lenet": ({}, 1, lambda: synthetic_images(4000, (3, 32, 32))),
    "twitter_pos_mlp": ({"max_train_samples": 3000, "max_eval_samples": 1000}, 2, twitter_pos_splits),
}
SMALL_MODELS = ("mnist1d_mlp", "mnist_mlp")  # the ones the 2x target is for
CPU_COUNTS = (2, 4, 8, 16)
GPU_COUNTS = (1, 2, 4, 8, 16, 32, 64)
GPU_CASES = {"cifar10_lenet": ((3, 32, 32), {}), "stl10_conv6": ((3, 96, 96), {"batch_size": 64}),
             "mnist_mlp": ((1, 28, 28), {}), "mnist1d_mlp": (None, {})}


def members(k: int) -> list[dict]:
    return [{"lr": LRS[i % len(LRS)], "seed": i // len(LRS)} for i in range(k)]


def checkpointing_report(metrics: dict, state: dict) -> None:
    torch.save(state, io.BytesIO())  # what tune_adapter.report_to_tune writes each epoch


def separate(config: dict, k: int, data_root: str, splits, device: str = "cpu"):
    def go():
        for member in members(k):
            fit({**config, **member}, checkpointing_report, data_root=data_root, splits=splits, device=device)
    return go


def fused(config: dict, k: int, data_root: str, splits, device: str = "cpu", engine: str = "auto"):
    return lambda: fit({**config, "members": members(k), "member_engine": engine}, checkpointing_report,
                       data_root=data_root, splits=splits, device=device)


def run(repeats: int = 3, counts=CPU_COUNTS, names: list[str] | None = None) -> list[str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    lines = [f"## fused configurations: K members (lr x seed) in one trial vs K separate trials  ({machine()})"]
    verdicts = []
    try:
        with tempfile.TemporaryDirectory() as data_root:
            write_mnist_idx(data_root)
            for trainable in names or CASES:
                extra, epochs, make_splits = CASES[trainable]
                config = {"trainable": trainable, "epochs": epochs, **extra}
                splits = make_splits() if make_splits else None
                if splits is None:
                    datasets.load(get_spec(trainable).dataset, data_root)  # loaded and cached before any timing
                batch = resolve_config(config)["batch_size"]
                lines.append(f"{trainable} ({epochs} epochs, batch {batch}):")
                for k in counts:
                    times = interleaved({"separate": separate(config, k, data_root, splits),
                                         "stacked": fused(config, k, data_root, splits, engine="stacked"),
                                         "looped": fused(config, k, data_root, splits, engine="looped")},
                                        repeats=repeats)
                    stacked, looped = times["separate"] / times["stacked"], times["separate"] / times["looped"]
                    lines.append(f"  K={k}: {k} separate trials {times['separate']:.2f} s; one fused trial stacked "
                                 f"{times['stacked']:.2f} s ({stacked:.2f}x the per-member throughput), looped "
                                 f"{times['looped']:.2f} s ({looped:.2f}x)")
                    if k == 8 and trainable in SMALL_MODELS:
                        verdicts.append(verdict(f"fusion K={k} on {trainable} (CPU)", max(stacked, looped), 2.0,
                                                higher_is_better=True))
    finally:
        torch.set_num_threads(threads)
    return lines + verdicts


def run_gpu(epochs: int = 2) -> list[str]:
    """Per-member throughput and GPU memory per member at K = 1..64 (synthetic data of each dataset's shape)."""
    import time

    dev = torch.device("cuda")
    lines = [f"## fused configurations on {torch.cuda.get_device_name(dev)}: per-member samples/s and memory"]
    for trainable, (shape, extra) in GPU_CASES.items():
        config = {"trainable": trainable, "epochs": epochs, **extra}
        with tempfile.TemporaryDirectory() as data_root:
            splits = synthetic_images(10000, shape) if shape else None
            if splits is None:
                datasets.load(get_spec(trainable).dataset, data_root)
            n = resolve_config(config).get("max_train_samples") or 10000
            lines.append(f"{trainable}:")
            for k in GPU_COUNTS:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(dev)
                start = time.perf_counter()
                go = fused(config, k, data_root, splits, device="cuda") if k > 1 else \
                    separate(config, 1, data_root, splits, device="cuda")
                go()
                torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                peak = torch.cuda.max_memory_allocated(dev) / 2**20
                lines.append(f"  K={k}: {k * n * epochs / seconds:,.0f} member-samples/s, "
                             f"{peak / k:.0f} MiB per member (peak {peak:.0f} MiB)")
    return lines


if __name__ == "__main__":
    # python -m benchmarks.fusion [--gpu] [TRAINABLE ...]
    names = [a for a in sys.argv[1:] if a != "--gpu"] or None
    if "--gpu" in sys.argv:
        print("\n".join(run_gpu()))
    else:
        print("\n".join(run(names=names)))
