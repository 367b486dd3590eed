"""Small datasets written in the real on-disk formats, parsed by the real loaders.

CIFAR-10 (pickled batches), STL-10 (binary), MNIST / Fashion-MNIST (IDX) and
ARK Twitter POS (token<TAB>tag) files are written here with few samples;
torchvision's own classes parse them. Torchvision verifies CIFAR-10 and STL-10
against the published MD5 sums, so `register_fixture_checksums` swaps in the
fixture files' sums (the documented way to test those parsers offline).

The suite runs on two pytest-xdist workers, one test file each at a time (`-n 2 --dist loadfile`
in pyproject.toml). Most files start their own local Ray instances, which coexist on random ports.
A file marked `machine_wide` touches what every Ray on the machine shares (`ray start --head`
writes /tmp/ray/ray_current_cluster, which a plain `ray.init()` connects to; `ray stop --force`
kills every Ray process; SLURM's daemons): `machine_lock` runs it alone. A file marked `no_ray`
starts no Ray at all (the statistics, the models, the loop called directly) and runs beside anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import pickle
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
N_TRAIN, N_TEST = 120, 40
# STL-10's 96x96 images cost 9x CIFAR-10's per sample; a smaller fixture keeps the STL studies
# (ten batched seeds of conv6 among them) quick
STL_TRAIN, STL_TEST = 60, 20


# Two files for a readers-writer lock between the xdist workers (and any other run of this suite on
# the machine): a file holds the main lock shared, a machine-wide file holds it alone. A writer
# takes the gate first, so readers arriving after it wait for it instead of starving it.
MACHINE_LOCK = Path(tempfile.gettempdir()) / "hpstudy-tests-machine.lock"
MACHINE_GATE = Path(tempfile.gettempdir()) / "hpstudy-tests-machine.gate"


@contextlib.contextmanager
def _flock(path: Path, mode: int):
    with open(path, "a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module", autouse=True)
def machine_lock(request):
    """Held for a whole test file, before its module fixtures start Ray: alone for a file marked
    `machine_wide`, not at all for one marked `no_ray`, shared otherwise."""
    if request.node.get_closest_marker("no_ray") is not None:
        yield
        ray = sys.modules.get("ray")
        assert ray is None or not ray.is_initialized(), f"{request.node.name} is marked no_ray but started Ray"
        return
    alone = request.node.get_closest_marker("machine_wide") is not None
    with open(MACHINE_LOCK, "a") as lock:
        with _flock(MACHINE_GATE, fcntl.LOCK_EX):
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def call_main(main, *args) -> int:
    """A command's main called in this process, ending as it would in a shell: argparse's own
    refusals raise SystemExit, the command's refusals return 2."""
    try:
        return main(*args)
    except SystemExit as exit_:
        return exit_.code


def study_summary(output: str, name: str) -> tuple[str, list[str]]:
    """A study's summary line (`NAME: N trials: ...`, `NAME: N seed runs ...` or `NAME: N runs (fused
    ...`) and the lines after it: the study's answer and the report command, or the seeds-on-demand
    summary first."""
    lines = output.strip().splitlines()
    index = max(i for i, line in enumerate(lines)
                if line.startswith(f"{name}: ") and any(s in line for s in (" trials: ", " runs (fused")))
    return lines[index], lines[index + 1:]


def histogram_records(path: Path) -> list[tuple[int, str, float]]:
    """(step, tag, sum of the values) of each histogram in a TensorBoard event file (TFRecord: length,
    its CRC, the event, its CRC)."""
    from tensorboardX.proto import event_pb2

    data, at, records = path.read_bytes(), 0, []
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
        records += [(event.step, value.tag, value.histo.sum) for value in event.summary.value if value.HasField("histo")]
        at += 12 + length + 4
    return records


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: magic (0, 0, type 0x08 = ubyte, ndim), big-endian int32 dims, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def read_idx_gz(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_mnist_like(root: Path, folder: str, rng: np.random.Generator) -> None:
    raw = root / folder / "raw"
    real = SHARED_DATA / "mnist_t10k"
    if folder == "MNIST" and (real / "t10k-images-idx3-ubyte.gz").exists():
        images = read_idx_gz(real / "t10k-images-idx3-ubyte.gz")[: N_TRAIN + N_TEST]
        labels = read_idx_gz(real / "t10k-labels-idx1-ubyte.gz")[: N_TRAIN + N_TEST]
    else:
        images = rng.integers(0, 256, (N_TRAIN + N_TEST, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, N_TRAIN + N_TEST, dtype=np.uint8)
    write_idx(raw / "train-images-idx3-ubyte", images[:N_TRAIN])
    write_idx(raw / "train-labels-idx1-ubyte", labels[:N_TRAIN])
    write_idx(raw / "t10k-images-idx3-ubyte", images[N_TRAIN:])
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[N_TRAIN:])


def write_cifar10(root: Path, rng: np.random.Generator) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    sums = {}
    per_batch = N_TRAIN // 5
    for name, n in [*[(f"data_batch_{i}", per_batch) for i in range(1, 6)], ("test_batch", N_TEST)]:
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        sums[name] = md5(folder / name)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}, protocol=2))
    sums["batches.meta"] = md5(folder / "batches.meta")
    return sums


def write_stl10(root: Path, rng: np.random.Generator) -> dict:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    files = {
        "train_X.bin": rng.integers(0, 256, (STL_TRAIN, 3, 96, 96), dtype=np.uint8),
        "train_y.bin": rng.integers(1, 11, STL_TRAIN, dtype=np.uint8),  # STL-10 labels are 1..10
        "test_X.bin": rng.integers(0, 256, (STL_TEST, 3, 96, 96), dtype=np.uint8),
        "test_y.bin": rng.integers(1, 11, STL_TEST, dtype=np.uint8),
        "unlabeled_X.bin": np.zeros((0, 3, 96, 96), dtype=np.uint8),
    }
    for name, array in files.items():
        array.tofile(folder / name)
    (folder / "class_names.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    return {name: md5(folder / name) for name in files}


TAGS = "N O ^ S Z V A R ! D P & T X Y # @ ~ U E $ , G L M".split()


def write_twitter(root: Path, rng: np.random.Generator) -> None:
    folder = root / "twitter_pos"
    folder.mkdir(parents=True)
    words = [f"w{i}" for i in range(60)]
    for filename, n_tweets in [("tweets-train.txt", 30), ("tweets-dev.txt", 8), ("tweets-devtest.txt", 8)]:
        lines = []
        for _ in range(n_tweets):
            for _ in range(rng.integers(3, 12)):
                lines.append(f"{rng.choice(words)}\t{rng.choice(TAGS)}")
            lines.append("")
        (folder / filename).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def fixture_sums(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    sums = {"cifar10": write_cifar10(root, rng), "stl10": write_stl10(root, rng)}
    write_mnist_like(root, "MNIST", rng)
    write_mnist_like(root, "FashionMNIST", rng)
    write_twitter(root, rng)
    return root, sums


@pytest.fixture(scope="session")
def register_fixture_checksums(fixture_sums):
    from torchvision.datasets import CIFAR10, STL10

    _, sums = fixture_sums
    c, s = sums["cifar10"], sums["stl10"]
    patch = pytest.MonkeyPatch()
    patch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", c[f"data_batch_{i}"]] for i in range(1, 6)])
    patch.setattr(CIFAR10, "test_list", [["test_batch", c["test_batch"]]])
    patch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": c["batches.meta"]})
    patch.setattr(STL10, "train_list", [[n, s[n]] for n in ("train_X.bin", "train_y.bin", "unlabeled_X.bin")])
    patch.setattr(STL10, "test_list", [[n, s[n]] for n in ("test_X.bin", "test_y.bin")])
    yield
    patch.undo()


@pytest.fixture(scope="session")
def data_root(fixture_sums, register_fixture_checksums) -> Path:
    """A data root holding every dataset in its real format (MNIST-1D is generated into it)."""
    return fixture_sums[0]
