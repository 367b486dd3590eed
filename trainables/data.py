"""Datasets as tensors: loaded once per process, kept on the trial's device.

Images stay uint8 (4x less memory, and a GPU holds all of CIFAR-10 in 150 MB);
`Splits.prepare` turns a batch into normalised floats on the device, so the hot
loop has no per-sample Python. Torchvision's own dataset classes parse the real
files (and verify their checksums); the parsed arrays are cached as a uint8
tensor file under `<data root>/hpstudy-cache/` so later processes start in
milliseconds.

The validation split is a fixed hold-out of the training set (10%, chosen by a
generator seeded with 0, the same for every trial); the test split stays the
test split. Twitter POS has its own dev file, used as validation.
"""

from __future__ import annotations

import functools
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from common.errors import DataError
from common.files import DEFAULT_DATA_ROOT, write_atomically

VAL_FRACTION = 0.1
SPLIT_SEED = 0
CACHE_DIR = "hpstudy-cache"
# Bump when the cache layout changes, so stale caches are rebuilt, not misread.
CACHE_VERSION = 1


@dataclass(frozen=True)
class Splits:
    """Train / validation / test tensors of one dataset, on one device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    # Per-channel mean / std for uint8 images (scaled to [0, 1] first); None: use x as is.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    vocab: tuple[str, ...] | None = field(default=None, repr=False)  # word ids of text data

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def _map(self, fn: Callable[[str, object], object]) -> Splits:
        """The same splits with fn(field name, value) applied to each tensor field."""
        return replace(self, **{k: fn(k, getattr(self, k)) for k in TENSOR_FIELDS})

    def to(self, device: torch.device | str) -> Splits:
        return self._map(lambda k, t: t.to(device, non_blocking=True))

    def head(self, max_train: int | None, max_eval: int | None) -> Splits:
        """First-n slices (the stored order is already a seeded shuffle), for smoke runs."""
        def cut(k, t):
            n = max_train if k.startswith("train") else max_eval
            return t if n is None else t[:n]

        return self._map(cut)

    def shareable(self) -> Splits:
        """The same splits with numpy arrays in place of CPU tensors, for Ray's object store.

        Ray stores numpy arrays out-of-band and hands every worker on a node a
        read-only view of the one copy in shared memory (torch tensors would be
        unpickled into a private copy per worker); `from_shared` wraps them back.
        """
        return self._map(lambda k, t: t.numpy())

    def from_shared(self) -> Splits:
        if isinstance(self.train_x, torch.Tensor):
            return self
        with warnings.catch_warnings():
            # read-only on purpose: training only ever reads them (indexing makes copies)
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return self._map(lambda k, a: torch.from_numpy(a))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of stored inputs -> what the model takes (normalised float images).

        (x / 255 - mean) / std is computed as x * scale - shift: two in-place ops
        on the fresh float copy, with scale and shift made once per device.
        """
        if self.mean is None:
            return x
        scale, shift = _affine(self.mean, self.std, x.dim(), x.device)
        return x.float().mul_(scale).sub_(shift)


@functools.cache
def _affine(mean: tuple, std: tuple, dims: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, -1) + (1,) * (dims - 2)
    mean_t = torch.tensor(mean, dtype=torch.float64)
    std_t = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * std_t)).to(torch.float32).view(shape).to(device)
    shift = (mean_t / std_t).to(torch.float32).view(shape).to(device)
    return scale, shift


TENSOR_FIELDS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")


def holdout(x: torch.Tensor, y: torch.Tensor, fraction: float = VAL_FRACTION):
    """Split (x, y) into train and validation with a fixed seeded permutation."""
    n = len(y)
    n_val = max(1, int(round(n * fraction)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    val, train = perm[:n_val], perm[n_val:]
    return x[train], y[train], x[val], y[val]


# --- disk cache ---------------------------------------------------------------

def _cache_path(root: Path, name: str) -> Path:
    return root / CACHE_DIR / f"{name}-v{CACHE_VERSION}.pt"


def _read_cache(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:
        return None  # a damaged cache is rebuilt from the source files, never trusted


def _write_cache(path: Path, arrays: dict) -> None:
    """A crash never leaves half a cache."""
    write_atomically(path, lambda tmp: torch.save(arrays, tmp))


def _cached(root: Path, name: str, build: Callable[[], dict]) -> dict:
    path = _cache_path(root, name)
    arrays = _read_cache(path)
    if arrays is None:
        arrays = build()
        _write_cache(path, arrays)
    return arrays


# --- torchvision image datasets ---------------------------------------------

def _checksum_problem(folder: Path, files: list[tuple[str, str]]) -> str | None:
    """The first missing or corrupt file of a torchvision dataset folder, if any."""
    from torchvision.datasets.utils import check_integrity

    for filename, md5 in files:
        path = folder / filename
        if not path.exists():
            return f"{path} is missing"
        if not check_integrity(str(path), md5):
            return f"{path} is corrupt (its MD5 checksum does not match)"
    return None


def _open_train_and_test(name: str, folder: Path, open_split: Callable[[bool], object],
                         find_problem: Callable[[], str | None], download: bool):
    """open_split(train) twice with torchvision; when that fails, say which file is at fault."""
    try:
        return open_split(True), open_split(False)
    except Exception as exc:  # torchvision says "not found or corrupted"; say which file
        problem = find_problem() or f"{folder} could not be parsed ({type(exc).__name__}: {exc})"
        raise _torchvision_error(name, folder, problem, download) from None


def _torchvision_error(name: str, folder: Path, problem: str, download: bool) -> DataError:
    if download and not folder.exists():
        return DataError(f"{name}: download to {folder} failed ({problem}); check the network, "
                         "or copy the dataset there by hand and run without --download")
    if not folder.exists():
        return DataError(
            f"{name}: no dataset found at {folder}; pass --download to fetch it, "
            f"or --data-root DIR pointing at the folder that holds {folder.name}/"
        )
    fix = "delete the folder and rerun with --download" if not download else "delete the folder and download again"
    return DataError(f"{name}: {problem}; {fix}")


def _load_cifar10(root: Path, download: bool) -> dict:
    from torchvision.datasets import CIFAR10

    folder = root / CIFAR10.base_folder
    files = CIFAR10.train_list + CIFAR10.test_list + [[CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    train, test = _open_train_and_test("cifar10", folder, lambda train: CIFAR10(str(root), train=train, download=download),
                                       lambda: _checksum_problem(folder, files), download)
    to_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
    return {
        "train_x": to_nchw(train.data), "train_y": torch.tensor(train.targets, dtype=torch.int64),
        "test_x": to_nchw(test.data), "test_y": torch.tensor(test.targets, dtype=torch.int64),
    }


def _load_stl10(root: Path, download: bool) -> dict:
    from torchvision.datasets import STL10

    folder = root / STL10.base_folder
    train, test = _open_train_and_test(
        "stl10", folder, lambda train: STL10(str(root), split="train" if train else "test", download=download),
        lambda: _checksum_problem(folder, STL10.train_list + STL10.test_list), download)
    return {
        "train_x": torch.from_numpy(np.ascontiguousarray(train.data)),
        "train_y": torch.from_numpy(train.labels.astype(np.int64)),
        "test_x": torch.from_numpy(np.ascontiguousarray(test.data)),
        "test_y": torch.from_numpy(test.labels.astype(np.int64)),
    }


def _load_idx(cls_name: str, name: str) -> Callable[[Path, bool], dict]:
    """MNIST and Fashion-MNIST: IDX files parsed by torchvision's reader."""

    def load(root: Path, download: bool) -> dict:
        import torchvision.datasets as tvd
        from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

        cls = getattr(tvd, cls_name)
        folder = root / cls_name / "raw"

        def find_problem() -> str | None:  # IDX files have no checksum: parse each one
            for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                         "t10k-labels-idx1-ubyte"):
                path = folder / stem
                if not path.exists():
                    return f"{path} is missing"
                try:
                    read_sn3_pascalvincent_tensor(str(path))
                except Exception:
                    return f"{path} is truncated or not an IDX file (header and size disagree)"
            return None

        train, test = _open_train_and_test(name, folder, lambda train: cls(str(root), train=train, download=download),
                                           find_problem, download)
        if len(train.data) != len(train.targets) or len(test.data) != len(test.targets):
            raise DataError(f"{name}: image and label files in {folder} hold different numbers of samples; "
                            "delete the folder and rerun with --download")
        return {
            "train_x": train.data.unsqueeze(1).contiguous(), "train_y": train.targets.to(torch.int64),
            "test_x": test.data.unsqueeze(1).contiguous(), "test_y": test.targets.to(torch.int64),
        }

    return load


# --- MNIST-1D (generated locally, no network) --------------------------------

def _load_mnist1d(root: Path, download: bool) -> dict:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds numpy's and random's global generators; restore them
    # so generating data never changes what else in this process draws.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())  # 4000 train / 1000 test, length 40
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "train_x": torch.from_numpy(data["x"]).float(), "train_y": torch.from_numpy(data["y"]).long(),
        "test_x": torch.from_numpy(data["x_test"]).float(), "test_y": torch.from_numpy(data["y_test"]).long(),
    }


# --- Twitter POS (ARK format) ------------------------------------------------

# The 25 tags of the ARK Twitter part-of-speech tagset (Gimpel et al., 2011).
TWITTER_TAGS = tuple("N O ^ S Z V A R ! D P & T X Y # @ ~ U E $ , G L M".split())
TWITTER_FILES = {"train": "tweets-train.txt", "val": "tweets-dev.txt", "test": "tweets-devtest.txt"}
PAD = "<pad>"


def read_ark_pos(path: Path) -> list[list[tuple[str, str]]]:
    """Parse `token<TAB>tag` lines, tweets separated by blank lines; errors name file:line."""
    tag_set = set(TWITTER_TAGS)
    tweets: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"twitter_pos: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if current:
                tweets.append(current)
                current = []
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0]:
            raise DataError(f"twitter_pos: {path}:{number}: expected 'token<TAB>tag', got {line[:60]!r}")
        token, tag = fields
        if tag not in tag_set:
            raise DataError(f"twitter_pos: {path}:{number}: unknown tag {tag!r}; the ARK tagset is {' '.join(TWITTER_TAGS)}")
        current.append((token, tag))
    if current:
        tweets.append(current)
    if not tweets:
        raise DataError(f"twitter_pos: {path} holds no tagged tokens")
    return tweets


def _windows(tweets, word_ids: dict[str, int], window: int = 3):
    """One example per token: the ids of the `window` words centred on it (padded at tweet ends)."""
    half = window // 2
    tag_ids = {t: i for i, t in enumerate(TWITTER_TAGS)}
    xs, ys = [], []
    for tweet in tweets:
        ids = [word_ids[PAD]] * half + [word_ids[w.lower()] for w, _ in tweet] + [word_ids[PAD]] * half
        for i, (_, tag) in enumerate(tweet):
            xs.append(ids[i : i + window])
            ys.append(tag_ids[tag])
    return torch.tensor(xs, dtype=torch.int64), torch.tensor(ys, dtype=torch.int64)


def _load_twitter_pos(root: Path) -> tuple[dict, tuple[str, ...]]:
    folder = root / "twitter_pos"
    paths = {split: folder / filename for split, filename in TWITTER_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise DataError(
            f"twitter_pos: missing {', '.join(missing)}; put the ARK Twitter POS files "
            f"({', '.join(TWITTER_FILES.values())}) in {folder} or pass --data-root DIR holding twitter_pos/"
        )
    parsed = {split: read_ark_pos(p) for split, p in paths.items()}
    # The vocabulary spans all three files (lower-cased). Words seen only in dev/test
    # carry no label information; they keep their (random or pretrained) embedding
    # instead of collapsing into one shared unknown-word vector.
    words = sorted({w.lower() for tweets in parsed.values() for tweet in tweets for w, _ in tweet})
    vocab = (PAD, *words)
    word_ids = {w: i for i, w in enumerate(vocab)}
    arrays = {}
    for split, tweets in parsed.items():
        arrays[f"{split}_x"], arrays[f"{split}_y"] = _windows(tweets, word_ids)
    return arrays, vocab


def load_word_vectors(path: str | Path, vocab: tuple[str, ...], dim: int) -> torch.Tensor:
    """Embedding matrix for `vocab` from a text file of `word v1 ... v<dim>` lines.

    Words absent from the file keep a N(0, 1) row, as nn.Embedding would give them.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"embeddings file {path} does not exist; give an absolute path to a 'word v1 ... v{dim}' text file")
    index = {w: i for i, w in enumerate(vocab)}
    weights = torch.randn(len(vocab), dim)
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split(" ")
            if not line.strip():
                continue
            if len(parts) != dim + 1:
                raise DataError(f"embeddings: {path}:{number}: expected a word and {dim} numbers, got {len(parts) - 1} numbers")
            try:
                vector = [float(v) for v in parts[1:]]
            except ValueError:
                raise DataError(f"embeddings: {path}:{number}: a value is not a number") from None
            i = index.get(parts[0].lower())
            if i is not None:
                weights[i] = torch.tensor(vector)
    return weights


# --- registry ------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetSpec:
    load: Callable[[Path, bool], Splits]
    downloadable: bool
    num_classes: int = 10


def _cached_dataset(name: str, raw_loader, mean=None, std=None, num_classes=10):
    """Parse once into the uint8 / float cache, then split off the fixed validation hold-out."""
    def load(root: Path, download: bool) -> Splits:
        arrays = _cached(root, name, lambda: raw_loader(root, download))
        train_x, train_y, val_x, val_y = holdout(arrays["train_x"], arrays["train_y"])
        return Splits(train_x, train_y, val_x, val_y, arrays["test_x"], arrays["test_y"], num_classes, mean, std)

    return load


def _twitter_pos(root: Path, download: bool) -> Splits:
    if download:
        raise DataError("twitter_pos cannot be downloaded by hpstudy; put the ARK Twitter POS files in "
                        f"{root / 'twitter_pos'} and run without --download")
    arrays, vocab = _load_twitter_pos(root)  # parsing 25k lines takes ~0.1 s: no disk cache needed
    return Splits(arrays["train_x"], arrays["train_y"], arrays["val_x"], arrays["val_y"],
                  arrays["test_x"], arrays["test_y"], num_classes=len(TWITTER_TAGS), vocab=vocab)


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(_cached_dataset("cifar10", _load_cifar10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)), True),
    "stl10": DatasetSpec(_cached_dataset("stl10", _load_stl10, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)), True),
    "mnist": DatasetSpec(_cached_dataset("mnist", _load_idx("MNIST", "mnist"), (0.1307,), (0.3081,)), True),
    "fashion_mnist": DatasetSpec(_cached_dataset("fashion_mnist", _load_idx("FashionMNIST", "fashion_mnist"),
                                                 (0.2860,), (0.3530,)), True),
    "twitter_pos": DatasetSpec(_twitter_pos, False, num_classes=len(TWITTER_TAGS)),
    "mnist1d": DatasetSpec(_cached_dataset("mnist1d", _load_mnist1d), False),
}

# One copy per process (and per device): every trial a reused Ray actor runs
# after the first finds its data here instead of reading files again.
_LOADED: dict[tuple[str, str, str], Splits] = {}


def load(name: str, root: str | Path | None = None, *, download: bool = False, device: str | torch.device = "cpu") -> Splits:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    root = Path(root if root is not None else DEFAULT_DATA_ROOT).expanduser().resolve()
    device = torch.device(device)
    key = (name, str(root), str(device))
    if key not in _LOADED:
        cpu_key = (name, str(root), "cpu")
        if cpu_key not in _LOADED:
            _LOADED[cpu_key] = DATASETS[name].load(root, download)
        if device.type != "cpu":
            _LOADED[key] = _LOADED[cpu_key].to(device)
    return _LOADED[key]
