"""Benchmark: one copy of the dataset per node. N trial workers receive a CIFAR-10-sized dataset
(50 000 + 10 000 uint8 images, 184 MB) through Ray's object store, as `tune.with_parameters`
does; we measure each worker's private memory (USS) above an idle worker's, for N = 1 and 2,
shipping torch tensors (each worker unpickles its own copy) vs numpy arrays (`Splits.shareable`:
every worker maps the one shared copy).
"""

from __future__ import annotations

import importlib.util
import time

import ray

from benchmarks.common import machine, synthetic_images, verdict
from trainables.data import TENSOR_FIELDS

MB = 2**20


@ray.remote(num_cpus=1)
class Worker:
    def hold(self, boxed: list):
        import psutil  # the [bench] extra

        self.splits = ray.get(boxed[0]).from_shared()  # what a trial does with its `splits` argument
        for name in ("train_x", "val_x", "test_x"):
            getattr(self.splits, name).sum()  # read every byte once, as an epoch does
        return psutil.Process().memory_full_info().uss / MB


def measure(payload, workers: int) -> list[float]:
    ref = ray.put(payload)
    actors = [Worker.remote() for _ in range(workers)]
    uss = ray.get([a.hold.remote([ref]) for a in actors])
    for a in actors:
        ray.kill(a)
    del ref
    time.sleep(1)
    return uss


def run() -> list[str]:
    lines = [f"## one dataset copy per node  ({machine()})"]
    if importlib.util.find_spec("psutil") is None:
        return lines + ['skipped: needs psutil (pip install -e ".[bench]")']
    splits = synthetic_images(50000, (3, 32, 32))
    size = sum(getattr(splits, k).numel() * getattr(splits, k).element_size() for k in TENSOR_FIELDS) / MB
    tiny = synthetic_images(10, (3, 32, 32))  # a worker with (almost) no data: the baseline
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=1024 * MB)
    try:
        baseline = min(measure(tiny, 2))
        lines.append(f"dataset {size:.0f} MB; an idle trial worker (torch + Ray loaded, no data) {baseline:.0f} MB private (USS)")
        copies = {}
        for mode, payload in (("torch tensors", splits), ("shared numpy arrays (hpstudy)", splits.shareable())):
            for n in (1, 2):
                extra = [u - baseline for u in measure(payload, n)]
                copies[mode] = max(extra)
                lines.append(f"{mode}, {n} concurrent worker(s): private memory per worker above idle "
                             f"{', '.join(f'{e:.0f}' for e in extra)} MB")
    finally:
        ray.shutdown()
    shared = max(copies["shared numpy arrays (hpstudy)"], 0)
    lines.append(f"host memory for N trials on a node: torch tensors ~ N x {copies['torch tensors']:.0f} MB; "
                 f"shared arrays ~ 1 x {size:.0f} MB in the object store + N x {shared:.0f} MB")
    lines.append(verdict("private data copy per worker, shared arrays, as a fraction of the dataset",
                         max(copies["shared numpy arrays (hpstudy)"], 0) / size, 0.1, higher_is_better=False, unit=""))
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
