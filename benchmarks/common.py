"""Shared helpers: interleaved timing, synthetic data of the real shapes, verdict lines."""

from __future__ import annotations

import platform
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from trainables.data import Splits


def interleaved(candidates: dict[str, Callable[[], None]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time of each candidate, run in turn (A B C A B C ...) so drift hits all alike."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def synthetic_images(n_train: int, shape: tuple[int, ...], num_classes: int = 10, seed: int = 0,
                     mean=(0.5,), std=(0.25,)) -> Splits:
    """Random uint8 images of a real dataset's shape (what the trainables hold), and labels."""
    g = torch.Generator().manual_seed(seed)
    n_val = max(1, n_train // 10)
    make_x = lambda n: torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)  # noqa: E731
    make_y = lambda n: torch.randint(0, num_classes, (n,), generator=g)  # noqa: E731
    channels = shape[0]
    return Splits(make_x(n_train), make_y(n_train), make_x(n_val), make_y(n_val), make_x(n_val), make_y(n_val),
                  num_classes, tuple(mean) * channels if len(mean) == 1 else mean,
                  tuple(std) * channels if len(std) == 1 else std)


def verdict(name: str, value: float, target: float, higher_is_better: bool, unit: str = "x") -> str:
    ok = value >= target if higher_is_better else value <= target
    relation = ">=" if higher_is_better else "<="
    return f"VERDICT {name}: {value:.2f}{unit} (target {relation} {target:g}{unit}) -> {'MEETS' if ok else 'MISSES'} target"


def machine() -> str:
    device = "cuda " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return (f"{platform.node()} | {platform.processor() or platform.machine()} | torch {torch.__version__} "
            f"| {torch.get_num_threads()} threads | {device}")


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # real data where this machine has it


def copy_twitter_pos(root) -> bool:
    """The real ARK Twitter POS files copied to root/twitter_pos, where loading them caches its
    parse (not in ../shared/data); False where this machine has none."""
    source = SHARED_DATA / "twitter_pos"
    if not (source / "tweets-train.txt").exists():
        return False
    shutil.copytree(source, Path(root) / "twitter_pos")
    return True


def write_mnist_idx(root, n_train: int = 10000, n_test: int = 2000, seed: int = 0) -> None:
    """MNIST in its real IDX format under root/MNIST/raw: the real test digits when
    ../shared/data/mnist_t10k holds them (repeated as needed), random pixels otherwise."""
    import gzip
    import struct

    import numpy as np

    real = SHARED_DATA / "mnist_t10k"

    def read(path):
        raw = gzip.decompress(path.read_bytes())
        dims = struct.unpack(f">{raw[3]}I", raw[4 : 4 + 4 * raw[3]])
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * raw[3]).reshape(dims)

    rng = np.random.default_rng(seed)
    total = n_train + n_test
    if (real / "t10k-images-idx3-ubyte.gz").exists():
        images, labels = read(real / "t10k-images-idx3-ubyte.gz"), read(real / "t10k-labels-idx1-ubyte.gz")
        idx = np.arange(total) % len(labels)
        images, labels = images[idx], labels[idx]
    else:
        images = rng.integers(0, 256, (total, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, total, dtype=np.uint8)
    folder = Path(root) / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in [("train-images-idx3-ubyte", images[:n_train]), ("train-labels-idx1-ubyte", labels[:n_train]),
                        ("t10k-images-idx3-ubyte", images[n_train:]), ("t10k-labels-idx1-ubyte", labels[n_train:])]:
        header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
        (folder / name).write_bytes(header + array.tobytes())
