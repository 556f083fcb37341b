"""The predicted-rates experiment end to end at the tiny size, through the real code.

The session fixture (conftest, one tiny ``rsd reproduce``) writes the files; the tests
recompute the metrics from the saved arrays with numpy, the theory at the predicted
rates (along training and fit-weighted) with scipy, and check the Adam row's
predictions against a hand-written Adam loop.
"""

import json

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import jax
import optax

from rsd import data, fitting, training
from rsd.experiments import predicted_rates as pr

NAME = "predicted-rates"


@pytest.fixture(scope="module")
def saved(reproduced_tiny):
    folder = reproduced_tiny / NAME
    with np.load(folder / "result.npz") as f:
        arrays = {k.replace("__", "/"): f[k] for k in f.files}
    return arrays, json.loads((folder / "metrics.json").read_text())


def _field(t, z, eta_h, eta_y, dx2, dy2):
    """DESIGN.md §1's 3-D system, written out independently of rsd."""
    h, y, w = z
    return [-eta_h * dx2 * w,
            -w * (eta_y * h + eta_h * dx2 * y / h),
            -0.5 * eta_y * (3 * w - y + dy2) * h - 0.5 * eta_h * dx2 * (y + w) * w / h]


def _finite_median(values):
    """The median of the finite values (a prediction whose solve failed is NaN and left out), NaN if none."""
    values = values[np.isfinite(values)]
    return np.median(values) if values.size else np.nan


def test_metric_names_are_the_promised_ones(saved):
    _, m = saved
    for row in pr.Config.for_size("tiny").rows:
        for key in ("eta_h_ratio", "eta_y_ratio", "r2_h_predicted", "r2_y_predicted", "r2_w_predicted"):
            assert f"{row}/{key}" in m
        for predictor in pr.PREDICTORS:
            suffix = "" if predictor == "predicted" else f"_{predictor}"
            for key in ("eta_h_ratio" + suffix, "eta_y_ratio" + suffix, f"r2_h_{predictor}", f"r2_w_{predictor}"):
                assert f"{row}/{key}" in m


def test_ratios_are_medians_of_predicted_over_fitted(saved):
    a, m = saved
    rows = pr.Config.for_size("tiny").rows
    assert any(a[f"{row}/kept"].any() for row in rows)
    for row in rows:
        kept = a[f"{row}/kept"]
        predicted = a[f"{row}/predicted"]  # [S, M + 1, 3]
        # "along training": the median over the interior checkpoints, recomputed
        interior = predicted[:, 1:-1]
        np.testing.assert_allclose(a[f"{row}/predicted_along"], np.nanmedian(interior, axis=1),
                                   rtol=1e-12)
        for i, name in enumerate(("eta_h", "eta_y")):
            fitted = a[f"{row}/{name}"]
            along = a[f"{row}/predicted_along"][:, i] / fitted
            step0 = predicted[:, 0, i] / fitted
            if kept.any():
                np.testing.assert_allclose(m[f"{row}/{name}_ratio"], np.median(along[kept]), rtol=1e-12)
                np.testing.assert_allclose(m[f"{row}/{name}_ratio_step0"], np.median(step0[kept]),
                                           rtol=1e-12)
            else:
                assert np.isnan(m[f"{row}/{name}_ratio"])
        # the secant predictor and the fit-weighted ones, the same way
        np.testing.assert_allclose(a[f"{row}/secant_along"], np.nanmedian(a[f"{row}/secant"][:, 1:-1], axis=1),
                                   rtol=1e-12)
        fitted = np.stack([a[f"{row}/eta_h"], a[f"{row}/eta_y"]], -1)
        for name, values in (("secant", a[f"{row}/secant_along"][:, :2]), ("weighted", a[f"{row}/weighted"]),
                             ("weighted_step", a[f"{row}/weighted_step"]),
                             ("weighted_late", a[f"{row}/weighted_late"]),
                             ("secant_step0", a[f"{row}/secant"][:, 0, :2])):
            for i, rate in enumerate(("eta_h", "eta_y")):
                key = f"{row}/{rate}_ratio_{name}"
                np.testing.assert_allclose(m[key], _finite_median((values / fitted)[kept, i]), rtol=1e-12)
        steps = a[f"{row}/checkpoint_steps"]
        assert steps[0] == 0 and steps[-1] == a[f"{row}/measured"].shape[1]
        assert np.all(np.diff(steps) > 0)


def test_r2_at_the_predicted_rates_against_scipy(saved):
    a, m = saved
    checked = 0
    for row in pr.Config.for_size("tiny").rows:
        measured = a[f"{row}/measured"].astype(np.float64)
        kept = a[f"{row}/kept"]
        dx2, dy2 = float(a[f"{row}/dx2"]), float(a[f"{row}/dy2"])
        ts = np.arange(measured.shape[1], dtype=float)
        c1 = int(a[f"{row}/checkpoint_steps"][1])
        for s in np.flatnonzero(kept):
            # the along-training step prediction, the fit-weighted secant one, and that for
            # the run from c_1 on (the theory started at step c_1)
            for rates, r2_key, start in ((a[f"{row}/predicted_along"][s, :2], "r2_predicted", 0),
                                         (a[f"{row}/weighted"][s], "r2_weighted", 0),
                                         (a[f"{row}/weighted_late"][s], "r2_weighted_late", c1)):
                eta_h, eta_y = rates
                if not (eta_h > 0 and eta_y > 0):
                    continue
                sol = solve_ivp(_field, (start, ts[-1]), measured[s, start], t_eval=ts[start:],
                                method="Radau", rtol=1e-10, atol=1e-12, args=(eta_h, eta_y, dx2, dy2))
                if not sol.success:  # ran into h = 0: rsd reports NaN there too
                    continue
                z = measured[s, start:]
                res = np.sum((z - sol.y.T) ** 2, axis=0)
                tot = np.sum((z - z.mean(axis=0)) ** 2, axis=0)
                np.testing.assert_allclose(a[f"{row}/{r2_key}"][s], 1 - res / tot, atol=2e-3)
                checked += 1
        for k, name in enumerate("hyw"):
            if kept.any():
                np.testing.assert_allclose(m[f"{row}/r2_{name}_predicted"],
                                           np.median(a[f"{row}/r2_predicted"][kept, k]), rtol=1e-12)
                np.testing.assert_allclose(m[f"{row}/r2_{name}_fitted"],
                                           np.median(a[f"{row}/r2"][kept, k]), rtol=1e-12)
                np.testing.assert_allclose(m[f"{row}/r2_{name}_weighted"],
                                           _finite_median(a[f"{row}/r2_weighted"][kept, k]), rtol=1e-12)
    assert checked > 0


def test_adam_predictions_use_the_step_adam_took_in_one_run():
    """The adam row, one training run: at checkpoints 20 and 40 the prediction is read off
    the step Adam took there, against optax Adam written out step by step."""
    config = pr.Config(rows=("adam",), seeds=2, width=16, depth=4, steps=60, checkpoints=3, weighted=False)
    setting = config.setting("adam")
    assert setting.optimizer == "adam"
    x, y = data.two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim, out_dim=setting.out_dim)
    row = pr.run_row(config, "adam")
    assert list(row.checkpoint_steps) == [0, 20, 40, 60]
    network = setting.network(setting.in_dim, setting.out_dim)

    def loss(p):
        out, _ = network.apply(p, x)
        return 0.5 * jax.numpy.mean((out - y) ** 2)

    opt = optax.adam(setting.lr)
    step = jax.jit(lambda p, s: opt.update(jax.grad(loss)(p), s, p))
    for s in range(2):
        params = network.init(jax.random.split(jax.random.fold_in(jax.random.key(0), s), 3)[0])
        state = opt.init(params)
        kept = {}
        for t in range(42):
            if t in (20, 21, 40, 41):
                kept[t] = params
            updates, state = step(params, state)
            params = optax.apply_updates(params, updates)
        for k, c in ((1, 20), (2, 40)):
            update = jax.tree.map(lambda a, b: a - b, kept[c + 1], kept[c])
            want = fitting.predicted_rates(network, kept[c], x, y, layer=setting.layers[0], update=update,
                                           loss=setting.loss)
            np.testing.assert_allclose(row.predicted[s, k], [float(want.eta_h), float(want.eta_y),
                                                             float(want.eta_mean)], rtol=2e-3)


def test_config_checks_and_rows():
    assert "adam" in pr.ROWS and "default" in pr.ROWS
    with pytest.raises(ValueError, match="rows"):
        pr.Config(rows=("nope",))
    with pytest.raises(ValueError, match="checkpoints"):
        pr.Config(checkpoints=1)
    with pytest.raises(ValueError, match="steps"):
        pr.Config(steps=5, checkpoints=8)
    with pytest.raises(ValueError, match="secant_steps"):
        pr.Config(secant_steps=0)
    sizes = {size: pr.Config.for_size(size) for size in ("tiny", "quick", "paper")}
    assert sizes["paper"].seeds == 50 and sizes["paper"].width is None
    assert sizes["tiny"].seeds < sizes["quick"].seeds <= sizes["paper"].seeds
