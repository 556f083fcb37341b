"""The mnist-trajectory experiment end to end at the tiny size, through the real code.

The session fixture (conftest, one tiny ``rsd reproduce``) writes the files; the tests check
them against independent computations: the data reloaded, the theory solved with
scipy, R² and accuracies recomputed with numpy (a hand-written forward pass).
"""

import json
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from rsd import data, experiments, fitting
from rsd.experiments import _common, mnist_trajectory as mt

NAME = "mnist-trajectory"


@pytest.fixture(scope="module")
def out(reproduced_tiny):
    """This experiment's folder in the session's tiny ``rsd reproduce`` run (conftest)."""
    return reproduced_tiny / NAME


@pytest.fixture(scope="module")
def saved(out):
    with np.load(out / "result.npz") as f:
        arrays = {k.replace("__", "/"): f[k] for k in f.files}
    config = json.loads((out / "config.json").read_text())
    return arrays, json.loads((out / "metrics.json").read_text()), mt.Config(**config["config"])


@pytest.fixture(scope="module")
def split(saved):
    _, _, config = saved
    s = data.mnist_split(data.mnist_directory(config.mnist_dir), seed=config.split_seed)
    n = len(s.labels_train) if config.train_limit is None else config.train_limit
    return s, n


def _field(t, z, eta_h, eta_y, dx2, dy2):
    """DESIGN.md §1's 3-D system, written out here."""
    h, y, w = z
    return [-eta_h * dx2 * w,
            -w * (eta_y * h + eta_h * dx2 * y / h),
            -0.5 * eta_y * (3 * w - y + dy2) * h - 0.5 * eta_h * dx2 * (y + w) * w / h]


def test_files_metrics_and_summary(out, saved):
    arrays, m, config = saved
    assert config == mt.Config.for_size("tiny")
    for key in ("r2_h", "r2_y", "r2_w", "eta_h", "eta_y", "test_accuracy"):
        assert key in m and math.isfinite(m[key]), key
    assert m["seeds"] == config.seeds and m["diverged"] == 0 and m["fitted"] >= 1
    stored = json.loads((out / "config.json").read_text())
    for fig in stored["figures"]:
        assert (out / f"{fig}.png").stat().st_size > 1000
    assert len(stored["figures"]) >= 2
    text = (out / "summary.txt").read_text()
    assert "test accuracy" in text and "data: " in text
    assert m["uses_idx_files"] == int(data.mnist_directory(config.mnist_dir) is not None)


def test_pair_is_a_zero_and_a_one_of_the_training_set(saved, split):
    arrays, _, config = saved
    s, n = split
    i, j = (int(k) for k in arrays["pair"])
    assert 0 <= i < n and 0 <= j < n
    assert (s.labels_train[i], s.labels_train[j]) == (0, 1)
    np.testing.assert_array_equal(arrays["pair_pixels"], s.pixels_train[[i, j]])
    x = np.asarray(s.x_train, np.float64)
    np.testing.assert_allclose(arrays["dx2"], np.sum((x[j] - x[i]) ** 2), rtol=1e-5)
    assert arrays["dy2"] == 2.0  # one-hot targets of two different classes
    # A different pair seed draws another pair, still a 0 and a 1.
    other = mt.choose_pair(s.labels_train[:n], config.pair_seed + 1)
    assert tuple(s.labels_train[list(other)]) == (0, 1)
    with pytest.raises(ValueError, match="'1'"):
        mt.choose_pair(np.array([0, 2, 3, 0]), 0)


def test_records_once_per_epoch(saved, split):
    arrays, m, config = saved
    _, n = split
    per_epoch = math.ceil(n / 64)
    assert m["steps_per_epoch"] == per_epoch
    np.testing.assert_array_equal(arrays["record_steps"], per_epoch * np.arange(config.epochs))
    assert arrays["measured"].shape == (config.seeds, config.epochs, 3)
    assert arrays["loss"].shape == (config.seeds, config.epochs)
    h, y, w = np.moveaxis(arrays["measured"].astype(np.float64), -1, 0)
    assert np.all(h > 0) and np.all(y >= 0)
    # w = y − Δy*·Δŷ with |Δy*|² = 2: Cauchy–Schwarz bounds it by y ± sqrt(2·y).
    assert np.all(np.abs(w - y) <= np.sqrt(2 * y) * (1 + 1e-5) + 1e-6)


def test_theory_curves_and_r2_against_scipy(saved):
    arrays, m, _ = saved
    measured = arrays["measured"].astype(np.float64)
    ts = arrays["record_steps"].astype(np.float64)
    dx2, dy2 = float(arrays["dx2"]), float(arrays["dy2"])
    ok = arrays["fit_status"] == fitting.FitStatus.OK
    assert ok.any()
    r2_numpy = np.full((ok.size, 3), np.nan)
    for s in np.flatnonzero(ok):
        eta_h, eta_y = arrays["eta_h"][s], arrays["eta_y"][s]
        sol = solve_ivp(_field, (ts[0], ts[-1]), measured[s, 0], t_eval=ts, method="Radau",
                        rtol=1e-10, atol=1e-12, args=(eta_h, eta_y, dx2, dy2))
        assert sol.success
        theory = sol.y.T
        scale = np.max(np.abs(theory), axis=0)
        np.testing.assert_allclose(arrays["theory"][s], theory, rtol=0, atol=1e-4 * scale.max())
        res = np.sum((measured[s] - theory) ** 2, axis=0)
        tot = np.sum((measured[s] - measured[s].mean(axis=0)) ** 2, axis=0)
        r2_numpy[s] = 1 - res / tot
        np.testing.assert_allclose(arrays["r2"][s], r2_numpy[s], atol=1e-4)
        # The fit's loss is the sum of squared residuals over every record.
        np.testing.assert_allclose(arrays["fit_loss"][s], res.sum(), rtol=1e-3)
    for k, name in enumerate("hyw"):
        np.testing.assert_allclose(m[f"r2_{name}"], np.median(arrays["r2"][ok, k]), rtol=1e-12)
        np.testing.assert_allclose(m[f"r2_{name}"], np.median(r2_numpy[ok, k]), atol=1e-4)
    np.testing.assert_allclose(m["eta_h"], np.median(arrays["eta_h"][ok]), rtol=1e-12)
    np.testing.assert_allclose(m["eta_y"], np.median(arrays["eta_y"][ok]), rtol=1e-12)


def _forward(arrays, seed, x):
    """The trained MLP by hand: leaky_relu (slope 0.01) after every hidden layer."""
    layers = sum(1 for k in arrays if k.startswith("params/kernel_"))
    a = x
    for k in range(layers):
        a = a @ arrays[f"params/kernel_{k}"][seed].astype(np.float64) + arrays[f"params/bias_{k}"][seed]
        if k < layers - 1:
            a = np.where(a > 0, a, 0.01 * a)
    return a


def test_accuracy_by_a_hand_forward_pass(saved, split):
    arrays, m, config = saved
    s, n = split
    x_test = np.asarray(s.x_test, np.float64)
    np.testing.assert_array_equal(arrays["labels_test"], s.labels_test)
    x_check = np.asarray(s.x_train, np.float64)[: min(n, 10_000)]
    accuracies = []
    for seed in range(config.seeds):
        for x, labels, saved_accuracy, saved_pred in (
                (x_test, s.labels_test, arrays["test_accuracy"][seed], arrays["test_predictions"][seed]),
                (x_check, s.labels_train[: len(x_check)], arrays["train_accuracy"][seed], None)):
            out = _forward(arrays, seed, x)
            pred = np.argmax(out, axis=1)
            top2 = np.sort(out, axis=1)[:, -2:]
            clear = top2[:, 1] - top2[:, 0] > 1e-4  # float32 round-off cannot flip these
            assert clear.mean() > 0.95
            if saved_pred is not None:
                np.testing.assert_array_equal(saved_pred[clear], pred[clear])
            accuracy = np.mean(pred == labels)
            assert abs(saved_accuracy - accuracy) <= np.sum(~clear) / len(pred) + 1e-12
        accuracies.append(arrays["test_accuracy"][seed])
        assert m[f"seed{seed}/test_accuracy"] == arrays["test_accuracy"][seed]
    np.testing.assert_allclose(m["test_accuracy"], np.median(arrays["test_accuracy"]), rtol=1e-12)
    # Trained a few epochs, the networks beat chance (0.1) by far.
    assert min(accuracies) > 0.3


def test_config_checks_and_reference():
    for field, value in (("seeds", 0), ("epochs", 1), ("width", 0), ("train_limit", 1),
                         ("pair_seed", -1), ("split_seed", 1.5), ("lr", 0.0), ("lr", float("nan"))):
        with pytest.raises(ValueError, match=field):
            mt.Config(**{field: value})
    with pytest.raises(ValueError, match="mnist_dir"):
        mt.Config(mnist_dir=3)
    cfg = _common.apply_overrides(mt.Config(), ["mnist_dir=/data/mnist", "epochs=none"])
    assert cfg.mnist_dir == "/data/mnist" and cfg.epochs is None
    # Only the reference's protocol on the real files is comparable with its 0.874.
    assert mt.reference_metrics(cfg) == {"train_accuracy": 0.874}
    assert mt.reference_metrics(mt.Config(mnist_dir="/data/mnist", epochs=30)) == {}
    s = mt.Config(epochs=3).setting(4000)
    assert (s.batch_size, s.steps, s.lr, s.width, s.depth, s.layers, s.gain) == \
        (64, 3 * 63, 0.003, 200, 4, (2,), 0.5)
    assert mt.Config(epochs=None).setting(60_000).steps == 200 * 938


def test_describe_names_the_data_and_the_reference(saved):
    _, _, config = saved
    text = mt.describe(config)
    source = data.mnist_split(data.mnist_directory(config.mnist_dir), seed=config.split_seed).source
    assert source in text and "0.874" in text and "first 10,000 training images" in text
