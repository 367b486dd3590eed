"""The dataset loaders on files in the real formats: shapes, splits, cache, and every kind of bad file."""

import shutil

import pytest
import torch

from common.errors import DataError
from trainables import data

from conftest import N_TEST, N_TRAIN, SHARED_DATA, STL_TEST, STL_TRAIN, write_idx

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files


@pytest.fixture(autouse=True)
def fresh_process_cache():
    data._LOADED.clear()
    yield
    data._LOADED.clear()


@pytest.mark.parametrize("name, shape, n_train, n_test", [
    ("cifar10", (3, 32, 32), N_TRAIN, N_TEST),
    ("stl10", (3, 96, 96), STL_TRAIN, STL_TEST),
    ("mnist", (1, 28, 28), N_TRAIN, N_TEST),
    ("fashion_mnist", (1, 28, 28), N_TRAIN, N_TEST),
])
def test_torchvision_formats_load_as_uint8_tensors(name, shape, n_train, n_test, data_root):
    splits = data.load(name, data_root)
    n_val = round(n_train * data.VAL_FRACTION)
    assert splits.train_x.dtype == torch.uint8 and splits.train_x.shape[1:] == shape
    assert len(splits.train_x) == n_train - n_val and len(splits.val_x) == n_val
    assert len(splits.test_x) == len(splits.test_y) == n_test
    assert splits.train_y.dtype == torch.int64 and 0 <= splits.train_y.min() and splits.train_y.max() <= 9
    batch = splits.prepare(splits.train_x[:8])
    assert batch.dtype == torch.float32 and batch.shape == (8, *shape)
    assert (data_root / data.CACHE_DIR / f"{name}-v{data.CACHE_VERSION}.pt").exists()


def test_real_mnist_digits_survive_the_round_trip(data_root):
    real = SHARED_DATA / "mnist_t10k" / "t10k-labels-idx1-ubyte.gz"
    if not real.exists():
        pytest.skip("real MNIST test set not present")
    from conftest import read_idx_gz

    labels = torch.from_numpy(read_idx_gz(real)[:N_TRAIN].astype("int64"))
    splits = data.load("mnist", data_root)
    all_train = torch.cat([splits.train_y, splits.val_y]).sort().values
    assert torch.equal(all_train, labels.sort().values)


def test_holdout_is_fixed_disjoint_and_complete():
    x = torch.arange(100)
    a = data.holdout(x, x)
    b = data.holdout(x, x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    train, val = a[0], a[2]
    assert len(val) == 10 and set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(100))


def test_cache_is_written_once_and_used_without_the_source(tmp_path, fixture_sums, register_fixture_checksums):
    root = tmp_path / "root"
    shutil.copytree(fixture_sums[0] / "MNIST", root / "MNIST")
    first = data.load("mnist", root)
    cache = root / data.CACHE_DIR / f"mnist-v{data.CACHE_VERSION}.pt"
    assert cache.exists()
    shutil.rmtree(root / "MNIST")  # the cache alone now serves the data
    data._LOADED.clear()
    second = data.load("mnist", root)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)


def test_missing_dataset_says_where_it_looked_and_which_flag_downloads(tmp_path):
    with pytest.raises(DataError) as err:
        data.load("cifar10", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "--download" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_corrupt_cifar_batch_is_named(tmp_path, fixture_sums, register_fixture_checksums):
    shutil.copytree(fixture_sums[0] / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"data_batch_3 is corrupt \(its MD5 checksum does not match\)"):
        data.load("cifar10", tmp_path)
    assert not (tmp_path / data.CACHE_DIR).exists()


def test_truncated_stl10_file_is_named(tmp_path, fixture_sums, register_fixture_checksums):
    shutil.copytree(fixture_sums[0] / "stl10_binary", tmp_path / "stl10_binary")
    path = tmp_path / "stl10_binary" / "test_X.bin"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="test_X.bin is corrupt"):
        data.load("stl10", tmp_path)


def test_truncated_idx_file_is_named(tmp_path, fixture_sums):
    shutil.copytree(fixture_sums[0] / "FashionMNIST", tmp_path / "FashionMNIST")
    path = tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-28])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte is truncated or not an IDX file"):
        data.load("fashion_mnist", tmp_path)
    assert not (tmp_path / data.CACHE_DIR).exists()


def test_idx_image_and_label_counts_must_agree(tmp_path, fixture_sums):
    shutil.copytree(fixture_sums[0] / "MNIST", tmp_path / "MNIST")
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", torch.zeros(7, dtype=torch.uint8).numpy())
    with pytest.raises(DataError, match="different numbers of samples"):
        data.load("mnist", tmp_path)


def test_mnist1d_is_generated_offline_with_the_paper_defaults(tmp_path):
    import numpy as np

    before = np.random.get_state()[1].copy()
    splits = data.load("mnist1d", tmp_path)
    assert splits.train_x.shape == (3600, 40) and splits.val_x.shape == (400, 40) and splits.test_x.shape == (1000, 40)
    assert splits.train_x.dtype == torch.float32 and splits.num_classes == 10
    assert np.array_equal(np.random.get_state()[1], before)  # the generator left numpy's global RNG alone


# --- Twitter POS -----------------------------------------------------------------

def test_twitter_pos_fixture_windows(data_root):
    splits = data.load("twitter_pos", data_root)
    assert splits.train_x.shape[1] == 3 and splits.num_classes == 25
    assert splits.vocab[0] == data.PAD
    tweets = data.read_ark_pos(data_root / "twitter_pos" / "tweets-train.txt")
    assert len(splits.train_y) == sum(len(t) for t in tweets)
    first = tweets[0]
    ids = {w: i for i, w in enumerate(splits.vocab)}
    assert splits.train_x[0].tolist() == [0, ids[first[0][0].lower()], ids[first[1][0].lower()]]
    assert splits.train_y[0].item() == data.TWITTER_TAGS.index(first[0][1])


def test_twitter_pos_real_ark_files():
    root = SHARED_DATA
    if not (root / "twitter_pos" / "tweets-train.txt").exists():
        pytest.skip("ARK Twitter POS files not present")
    splits = data.load("twitter_pos", root)
    # token counts of the ARK train / dev / devtest files (non-blank lines)
    counts = [sum(1 for line in (root / "twitter_pos" / f).read_text().splitlines() if line.strip())
              for f in data.TWITTER_FILES.values()]
    assert [len(splits.train_y), len(splits.val_y), len(splits.test_y)] == counts
    assert counts[0] > 14000
    assert set(splits.train_y.unique().tolist()) == set(range(25))


@pytest.mark.parametrize("bad_line, message", [
    ("hello", "expected 'token<TAB>tag'"),
    ("hello\tV\textra", "expected 'token<TAB>tag'"),
    ("hello\tQQ", "unknown tag 'QQ'"),
])
def test_malformed_twitter_line_names_file_and_line(tmp_path, bad_line, message):
    folder = tmp_path / "twitter_pos"
    folder.mkdir()
    for f in data.TWITTER_FILES.values():
        (folder / f).write_text("a\tD\ncat\tN\n\nok\t!\n")
    (folder / "tweets-dev.txt").write_text(f"a\tD\n\n{bad_line}\n")
    with pytest.raises(DataError, match=rf"tweets-dev.txt:3: {message}"):
        data.load("twitter_pos", tmp_path)


def test_missing_twitter_files_are_listed(tmp_path):
    with pytest.raises(DataError, match="tweets-train.txt.*--data-root"):
        data.load("twitter_pos", tmp_path)


def test_word_vectors_file(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("cat 1 2 3\nDOG 4 5 6\n")
    weights = data.load_word_vectors(path, ("<pad>", "cat", "dog", "emu"), dim=3)
    assert weights[1].tolist() == [1, 2, 3] and weights[2].tolist() == [4, 5, 6]
    path.write_text("cat 1 2 3\ndog 4 5\n")
    with pytest.raises(DataError, match=r"vectors.txt:2: expected a word and 3 numbers"):
        data.load_word_vectors(path, ("cat",), dim=3)
