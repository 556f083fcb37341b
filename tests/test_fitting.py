"""Fits of the effective rates: recovery of known rates, batching, gradients, bad input,
and the theory fitted to trained networks."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsd.fitting import (
    FitStatus,
    fit_layers,
    fit_loss_rate,
    fit_objective,
    fit_rates,
    summarize_rates,
)
from rsd.fitting._rates import _fit_batch
from rsd.theory import loss_curve, solve

from .helpers import Compiles, reference_loss, scipy_fit

DX2, DY2 = 1.0, 0.5
# Few time points, and fewer fitting samples than points, so that both stages run:
# Levenberg–Marquardt on the weighted subsample, then on every step (dense output).
N_TIMES, N_FIT = 80, 24


def start(h0, y0, dy2=DY2):
    """A consistent initial (h, y, w) for one-dimensional outputs: w = y − sqrt(dy2·y)."""
    return np.array([h0, y0, y0 - np.sqrt(dy2 * y0)])


# rich: tiny h0 and y0 (h grows to ~sqrt(η_h/η_y·dx2·dy2)); lazy: large h0 (h barely moves).
RICH = dict(z0=start(1e-3, 1e-4), rates=(8.0, 12.0))
LAZY = dict(z0=start(2.0, 0.3), rates=(0.3, 0.2))


def synthetic(cases, scale, rng, noise=1e-4):
    """Theory trajectories for the cases with rates × scale, on times spanning 5/scale,
    with relative noise; returns (h, y, w, ts, true rates [n, 2])."""
    # Always solve both regimes, so every call shares one compiled solve.
    keep = [0 if c is RICH else 1 for c in cases]
    cases = [RICH, LAZY]
    ts = np.linspace(0.0, 5.0 / scale, N_TIMES)
    z0 = np.stack([c["z0"] for c in cases])
    rates = np.array([c["rates"] for c in cases]) * scale
    sol = solve(z0, ts, rates[:, 0], rates[:, 1], DX2, DY2)
    assert np.all(np.asarray(sol.status) == 0)
    zs = np.asarray(sol.zs, np.float64)
    zs = zs * (1.0 + noise * rng.standard_normal(zs.shape))
    zs, rates = zs[keep].astype(np.float32), rates[keep]
    return zs[..., 0], zs[..., 1], zs[..., 2], ts, rates


@functools.lru_cache(maxsize=None)
def dataset(scale, seed):
    """synthetic([RICH, LAZY], scale, rng(seed)), computed once per session."""
    return synthetic([RICH, LAZY], scale, np.random.default_rng(seed))


@pytest.mark.parametrize("scale", [1e-3, 1e-2, 1e-1, 1.0])
def test_recovers_known_rates_rich_and_lazy(scale):
    """Rates three decades apart, rich and lazy regimes, recovered within 1%."""
    h, y, w, ts, rates = synthetic([RICH, LAZY], scale, np.random.default_rng(int(1e3 * scale)))
    fit = fit_rates(h, y, w, DX2, DY2, ts=ts, num_fit_times=N_FIT)
    np.testing.assert_array_equal(fit.status, FitStatus.OK)
    np.testing.assert_allclose(fit.eta_h, rates[:, 0], rtol=1e-2)
    np.testing.assert_allclose(fit.eta_y, rates[:, 1], rtol=1e-2)
    assert np.all(np.asarray(fit.r2) > 0.999)
    # loss is the objective over every step at the fitted rates.
    data = np.stack([h, y, w], -1)
    theory = solve(data[:, 0], ts, np.asarray(fit.eta_h), np.asarray(fit.eta_y), DX2, DY2)
    np.testing.assert_allclose(fit.loss, np.sum((np.asarray(theory.zs) - data) ** 2, axis=(1, 2)),
                               rtol=2e-2)


def test_batch_equals_one_at_a_time_and_no_recompilation():
    rng = np.random.default_rng(8)
    h, y, w, ts, _ = dataset(1e-2, 7)
    batch = fit_rates(h, y, w, DX2, DY2, ts=ts, num_fit_times=N_FIT)
    for i in range(2):
        one = fit_rates(h[i], y[i], w[i], DX2, DY2, ts=ts, num_fit_times=N_FIT)
        assert one.eta_h.shape == ()
        np.testing.assert_allclose(one.eta_h, batch.eta_h[i], rtol=1e-5)
        np.testing.assert_allclose(one.eta_y, batch.eta_y[i], rtol=1e-5)
        np.testing.assert_allclose(one.loss, batch.loss[i], rtol=1e-4)
        assert int(one.status) == int(batch.status[i])
    # Chunks of 1 (the batch padded to whole chunks) give the same fits.
    chunked = fit_rates(h, y, w, DX2, DY2, ts=ts, num_fit_times=N_FIT, chunk_size=1)
    np.testing.assert_allclose(chunked.eta_h, batch.eta_h, rtol=1e-5)
    np.testing.assert_allclose(chunked.eta_y, batch.eta_y, rtol=1e-5)
    # New data of the same shapes reuse the compiled program.
    h2, y2, w2, ts2, _ = synthetic([RICH, LAZY], 1e-1, rng)
    with Compiles() as c:
        fit_rates(h2, y2, w2, DX2, DY2, ts=ts2, num_fit_times=N_FIT).loss.block_until_ready()
    assert c.names == []


def test_objective_gradient_matches_finite_differences(x64):
    # Data shared with the batch test (made once, in float32).
    h, y, w, ts, rates = dataset(1e-2, 7)
    data = [np.asarray(a[0], np.float64) for a in (h, y, w)]
    kw = dict(ts=ts, rtol=1e-11, atol=1e-14, max_steps=100_000)
    f = lambda th: fit_objective(th, *data, DX2, DY2, **kw)
    theta = jnp.log(jnp.asarray(rates[0])) + jnp.array([0.3, -0.2])
    grad = jax.jacfwd(f)(theta)
    eps = 1e-4
    fd = [(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps) for e in jnp.eye(2)]
    np.testing.assert_allclose(grad, fd, rtol=1e-5)


def test_fit_loss_rate_recovers_eta_mean():
    rng = np.random.default_rng(5)
    h, y, w, ts, _ = dataset(1e-2, 7)
    zs = np.stack([h[0], y[0], w[0]], -1)
    eta = np.array([1e-3, 1e-2, 1e-1])  # three decades; ts span 500 steps
    e0 = 0.3
    loss = np.asarray(loss_curve(ts, zs, DY2, eta, e0))  # [3, T]
    loss = loss * (1.0 + 1e-4 * rng.standard_normal(loss.shape))
    e0 = np.array([e0, e0, e0, 0.0])
    loss = np.concatenate([loss, np.asarray(loss_curve(ts, zs, DY2, 1.0, 0.0))[None]])
    fit = fit_loss_rate(loss, zs, DY2, e0, ts=ts)
    np.testing.assert_array_equal(fit.status[:3], FitStatus.OK)
    np.testing.assert_allclose(fit.eta_mean[:3], eta, rtol=1e-2)
    assert np.all(np.asarray(fit.r2[:3]) > 0.999)
    # e0 = 0: the loss carries no information on η_ȳ, reported by the status.
    assert int(fit.status[3]) == FitStatus.NOT_CONVERGED
    # Recordings that start later: time counts from the first recorded step.
    later = fit_loss_rate(loss[:3], zs, DY2, e0[:3], ts=ts + 1000.0)
    np.testing.assert_allclose(later.eta_mean, fit.eta_mean[:3], rtol=1e-4)


def test_summarize_rates_masks_failed_fits():
    rates = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 600.0], [jnp.nan, 8.0]])  # [seeds, layers]
    ok = jnp.array([[True, True], [True, True], [True, False], [True, True]])
    s = summarize_rates(rates, ok, axis=0, num_resamples=500)
    np.testing.assert_allclose(s.mean, [3.0, 14.0 / 3.0], rtol=1e-6)
    np.testing.assert_allclose(s.std, [2.0, np.std([2.0, 4.0, 8.0], ddof=1)], rtol=1e-5)
    np.testing.assert_array_equal(s.n_ok, [3, 3])
    assert np.all(s.ci_low <= s.mean) and np.all(s.mean <= s.ci_high)
    assert np.all(s.ci_high - s.ci_low > 0)


def test_bad_input_raises():
    t = np.linspace(1.0, 2.0, 10)
    h, y, w = t, 0.5 * t, -0.1 * t
    with pytest.raises(ValueError, match="same number of steps"):
        fit_rates(h, y[:-1], w, DX2, DY2)
    with pytest.raises(ValueError, match="dx2"):
        fit_rates(h, y, w, 0.0, DY2)
    with pytest.raises(ValueError, match="dy2"):
        fit_rates(h, y, w, DX2, -0.5)
    with pytest.raises(ValueError, match="ts"):
        fit_rates(h, y, w, DX2, DY2, ts=t[:-1])
    with pytest.raises(ValueError, match="same number of steps"):
        fit_loss_rate(t[:-1], np.stack([h, y, w], -1), DY2, 0.1)
    with pytest.raises(ValueError, match="dy2"):
        fit_loss_rate(t, np.stack([h, y, w], -1), -1.0, 0.1)
    zs = np.stack([h, y, w], -1)
    for call, words in [
        (lambda: fit_rates("h", y, w, DX2, DY2), "h must be a real numeric array"),
        (lambda: fit_rates(h, y, w, "1.0", DY2), "dx2 must be a real numeric array"),
        (lambda: fit_rates(h, y, w, DX2, DY2, solver="tsit5"), "solver must be a diffrax solver"),
        (lambda: fit_rates(h, y, w, DX2, DY2, rtol=-1.0), "rtol must be None or a finite number >= 0"),
        (lambda: fit_rates(h, y, w, DX2, DY2, atol=np.nan), "atol must be None or a finite number >= 0"),
        (lambda: fit_rates(h, y, w, DX2, DY2, grid_decades="wide"), "grid_decades must be a finite number"),
        (lambda: fit_rates(h, y, w, DX2, DY2, init="fast"), "init must be a real numeric array"),
        (lambda: fit_layers(h, y, w, DX2, DY2), "h must have shape [..., T, layers]"),
        (lambda: fit_objective("a", h, y, w, DX2, DY2), "log_rates must be a real numeric array"),
        (lambda: fit_objective(np.zeros(2), np.where(t > 1.5, np.nan, h), y, w, DX2, DY2), "h must be finite"),
        (lambda: fit_loss_rate(t, zs, DY2, 0.1, max_iterations=0), "max_iterations must be an integer >= 1"),
        (lambda: fit_loss_rate(t, zs, DY2, 0.1, max_iterations=2.5), "max_iterations must be an integer >= 1"),
        (lambda: fit_loss_rate(t, zs, DY2, 0.1, grid_size=0), "grid_size must be an integer >= 1"),
        (lambda: fit_loss_rate(t, zs, DY2, 0.1, ts=t[::-1]), "ts must be strictly increasing"),
        (lambda: fit_loss_rate(t, zs[:, :2], DY2, 0.1), "zs must have shape [..., T, 3]"),
        (lambda: summarize_rates(np.zeros((0, 3))), "fit must hold at least one seed along axis 0"),
        (lambda: summarize_rates(np.zeros(3), axis=1), "axis must be an integer in [-1, 0]"),
        (lambda: summarize_rates(np.zeros(3), ok=np.ones(4, bool)), "ok (4,) must broadcast"),
        (lambda: summarize_rates(np.zeros(3), confidence=1.5), "confidence must be a finite number"),
    ]:
        with pytest.raises(ValueError, match=re.escape(words)):
            call()


def test_unfittable_trajectory_gives_status_not_exception():
    # A solver budget no rate pair can meet: every solve fails, so the fit reports it.
    t = np.linspace(1.0, 2.0, 5)
    fit = fit_rates(t, 0.5 * t, -0.1 * t, DX2, DY2, max_steps=1)
    assert int(fit.status) == FitStatus.SOLVER_FAILED
    assert np.isnan(fit.eta_h) and np.isinf(fit.loss)


def test_data_that_cannot_determine_the_rates_is_not_ok():
    # Resting at the fixed point (y = dy2, w = 0): every rate pair fits exactly.
    t = np.arange(50.0)
    fit = fit_rates(0.7 + 0 * t, DY2 + 0 * t, 0 * t, DX2, DY2)
    assert int(fit.status) == FitStatus.UNDETERMINED
    assert np.isnan(fit.eta_h) and np.isnan(fit.eta_y)


def test_constant_trajectory_is_never_ok_nor_batch_dependent():
    """Issue 12.1: h = 0.1 throughout, y = w = 0 (dy2 = 0.5). The theory leaves this
    state at any rates, so the best fit drifts to η_y → 0 and an arbitrary η_h."""
    _, _, _, ts, _ = dataset(1e-2, 7)
    h = np.full(N_TIMES, 0.1, np.float32)
    zero = np.zeros(N_TIMES, np.float32)
    fits = [fit_rates(np.tile(h, (n, 1)), np.tile(zero, (n, 1)), np.tile(zero, (n, 1)), DX2, DY2,
                      ts=ts, num_fit_times=N_FIT) for n in (1, 2, 3)]
    for fit in fits:
        np.testing.assert_array_equal(fit.status, FitStatus.UNDETERMINED)
        assert np.all(np.isnan(fit.eta_h)) and np.all(np.isnan(fit.eta_y))
        # 0.1 is not representable: its float32 mean is not exactly 0.1, yet the series
        # is constant, so R² is undefined for h as for y and w.
        assert np.all(np.isnan(np.asarray(fit.r2)))
        np.testing.assert_array_equal(np.asarray(fit.loss), np.asarray(fits[0].loss).reshape(1).repeat(
            fit.loss.shape[0]))


def test_loss_rate_r2_of_a_constant_curve_is_nan():
    t = np.arange(20.0, dtype=np.float32)
    fit = fit_loss_rate(np.full(20, 0.1, np.float32), np.zeros((20, 3), np.float32), 0.4, 0.0, ts=t)
    assert np.isnan(fit.r2)


def test_bad_trajectories_are_bad_data_and_spoil_nothing():
    """Issue 12.4: one non-finite trajectory (a diverged seed), h0 <= 0 or y0 < 0 gives
    that element BAD_DATA; the others are exactly their fits alone."""
    h, y, w, ts, _ = dataset(1e-2, 7)
    hb, yb, wb = (np.stack([a[0], a[0], a[1], a[1]]) for a in (h, y, w))
    hb[1, 40:] = np.nan
    hb[3, 0] = 0.0
    kw = dict(ts=ts, num_fit_times=N_FIT)
    fit = fit_rates(hb, yb, wb, DX2, DY2, **kw)
    np.testing.assert_array_equal(fit.status, [FitStatus.OK, FitStatus.BAD_DATA, FitStatus.OK,
                                               FitStatus.BAD_DATA])
    assert np.all(np.isnan(np.asarray(fit.eta_h)[[1, 3]])) and np.all(np.isinf(np.asarray(fit.loss)[[1, 3]]))
    for i, j in ((0, 0), (2, 1)):
        alone = fit_rates(h[j], y[j], w[j], DX2, DY2, **kw)
        for name in ("eta_h", "eta_y", "loss", "r2", "status", "iterations"):
            np.testing.assert_array_equal(np.asarray(getattr(fit, name))[i], np.asarray(getattr(alone, name)),
                                          err_msg=name)
    # y0 < 0, and an array of dx2 with one bad entry: per element too.
    yn = y.copy()
    yn[1, 0] = -1e-3
    fit = fit_rates(h, yn, w, DX2, DY2, **kw)
    np.testing.assert_array_equal(fit.status, [FitStatus.OK, FitStatus.BAD_DATA])
    fit = fit_rates(h, y, w, np.array([DX2, -1.0]), DY2, **kw)
    np.testing.assert_array_equal(fit.status, [FitStatus.OK, FitStatus.BAD_DATA])
    # fit_layers: one layer of a run diverged.
    layers = np.stack([h[0], np.where(np.arange(N_TIMES) > 10, np.inf, h[0])], -1)
    fit = fit_layers(layers, y[0], w[0], DX2, DY2, **kw)
    np.testing.assert_array_equal(fit.status, [FitStatus.OK, FitStatus.BAD_DATA])
    alone = fit_rates(h[0], y[0], w[0], DX2, DY2, **kw)
    np.testing.assert_array_equal(np.asarray(fit.eta_h)[0], np.asarray(alone.eta_h))


def test_bad_loss_curves_are_bad_data_and_spoil_nothing():
    h, y, w, ts, _ = dataset(1e-2, 7)
    zs = np.stack([h[0], y[0], w[0]], -1)
    eta = np.array([[1e-3], [1e-2], [1e-1]])
    loss = 0.25 * (2 * np.exp(-2 * eta * (ts - ts[0])) * 0.3 + zs[:, 2] + 0.5 * (DY2 - zs[:, 1]))
    bad = loss.copy()
    bad[1, 5] = np.nan
    fit = fit_loss_rate(bad, zs, DY2, np.array([0.3, 0.3, -1.0]), ts=ts)
    np.testing.assert_array_equal(fit.status, [FitStatus.OK, FitStatus.BAD_DATA, FitStatus.BAD_DATA])
    alone = fit_loss_rate(loss[0], zs, DY2, 0.3, ts=ts)
    np.testing.assert_array_equal(np.asarray(fit.eta_mean)[0], np.asarray(alone.eta_mean))
    np.testing.assert_allclose(alone.eta_mean, 1e-3, rtol=1e-3)


def test_empty_batches_give_empty_results():
    _, _, _, ts, _ = dataset(1e-2, 7)
    empty = np.zeros((0, N_TIMES), np.float32)
    fit = fit_rates(empty, empty, empty, DX2, DY2, ts=ts)
    assert fit.eta_h.shape == (0,) and fit.r2.shape == (0, 3)
    rate = fit_loss_rate(empty, np.zeros((0, N_TIMES, 3)), DY2, 0.1, ts=ts)
    assert rate.eta_mean.shape == (0,)


def _fit_programs():
    """The fit's compiled programs (eqx.filter_jit keeps its jax.jit in ``_cached``); eager
    operations around the fit compile for new shapes too, so a compile count would not do."""
    return _fit_batch._cached._cache_size()


def test_batch_sizes_in_one_bucket_share_a_program_and_fits_are_deterministic():
    """Issue 12.7 and 12.2: batches of 3 and 4 share one compiled program; the same call
    is bitwise repeatable, and a fit does not depend on its batch, position or chunking
    (promised to round-off; bitwise on CPU)."""
    h, y, w, ts, _ = dataset(1e-2, 7)
    kw = dict(ts=ts, num_fit_times=N_FIT)
    three = fit_rates(h[[0, 1, 0]], y[[0, 1, 0]], w[[0, 1, 0]], DX2, DY2, **kw)
    size = _fit_programs()
    four = fit_rates(h[[1, 0, 1, 0]], y[[1, 0, 1, 0]], w[[1, 0, 1, 0]], DX2, DY2, **kw)
    assert _fit_programs() == size
    again = fit_rates(h[[1, 0, 1, 0]], y[[1, 0, 1, 0]], w[[1, 0, 1, 0]], DX2, DY2, **kw)
    chunked = fit_rates(h[[1, 0, 1, 0]], y[[1, 0, 1, 0]], w[[1, 0, 1, 0]], DX2, DY2, chunk_size=1, **kw)
    alone = [fit_rates(h[i], y[i], w[i], DX2, DY2, **kw) for i in range(2)]
    # Positions of trajectory 0 and 1 in each batch.
    where = {"three": ([0, 2], [1]), "four": ([1, 3], [0, 2]), "again": ([1, 3], [0, 2]),
             "chunked": ([1, 3], [0, 2])}
    batches = {"three": three, "four": four, "again": again, "chunked": chunked}
    for name in ("eta_h", "eta_y", "loss", "status"):
        for i in range(2):
            expected = np.asarray(getattr(alone[i], name))
            for label, fit in batches.items():
                for k in where[label][i]:
                    np.testing.assert_array_equal(np.asarray(getattr(fit, name))[k], expected,
                                                  err_msg=f"{name} of trajectory {i} in {label}[{k}]")


def _train_two_points(setting, seeds):
    training = pytest.importorskip("rsd.training")
    data = pytest.importorskip("rsd.data")
    x, y = data.two_points(setting.dx2, setting.dy2)
    run = training.train(setting, x, y, seeds=np.asarray(seeds))
    assert np.all(np.asarray(run.status) == 0)
    return run


def test_theory_fits_small_trained_network():
    """CI-size network (width 128, depth 4, leaky_relu, gain 1, SGD lr 0.005, 1,500 steps).

    Measured with this procedure (seeds 0-3, last hidden layer): R² h 0.993, 0.992,
    0.988, 0.977; y 0.997, 0.996, 0.991, 0.993; w 0.88, 0.90, 0.96, 0.77 (small
    networks follow the theory less closely than the paper's width-500 ones,
    mostly in w). Thresholds sit below the worst seed with margin.
    """
    from rsd.training import Setting

    setting = Setting.from_paper("2_points", "default").replace(
        width=128, depth=4, steps=1500, lr=0.005, layers=(2, 3))
    run = _train_two_points(setting, range(4))
    fit = fit_layers(run.h, run.y, run.w, run.dx2, run.dy2)
    assert fit.eta_h.shape == (4, 2)
    print("R² h, y, w of the last hidden layer per seed:\n", np.asarray(fit.r2[:, -1]))
    np.testing.assert_array_equal(fit.status, FitStatus.OK)
    r2 = np.asarray(fit.r2[:, -1])
    assert np.all(r2[:, 0] >= 0.95) and np.all(r2[:, 1] >= 0.97) and np.all(r2[:, 2] >= 0.6)
    zs = np.stack([run.h[..., -1], run.y, run.w], -1)
    loss_fit = fit_loss_rate(run.loss, zs, run.dy2, run.e0)
    np.testing.assert_array_equal(loss_fit.status, FitStatus.OK)
    assert np.all(np.asarray(loss_fit.r2) >= 0.99)
    summary = summarize_rates(fit)
    assert np.all(np.asarray(summary["eta_h"].n_ok) == 4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "narrow"])
def test_theory_fits_paper_networks_as_well_as_the_paper_procedure(name):
    """Paper settings (width 500 or 50, depth 20, leaky_relu, lr 0.005, 6,000 steps,
    hidden layer 10), 4 seeds: on every trajectory rsd's rates are a minimum of the
    paper's objective and reach the optimum of the paper's own procedure (100-point
    grid + BFGS, scipy). The paper's procedure, on its seeds: R² h 0.991–0.993,
    y 0.995–0.998, w 0.93–0.98 (default); the narrow network visibly worse (w as low
    as 0.68), which is the network's, so R² is asserted for the default only.

    Measured here for the default (float32 training on CPU, seeds 0–3): R² h 0.9922,
    0.9894, 0.9927, 0.9926; y 0.9982, 0.9990, 0.9986, 0.9968; w 0.982, 0.993, 0.986,
    0.953. Seed 1's h sits below the paper's range; on that trajectory (retrained in
    float64, h 0.9903) scipy's procedure reaches the same loss, 0.479418, as rsd: the
    shortfall is the trajectory's, not the fit's — hence the comparisons below.
    """
    pytest.importorskip("scipy")
    from rsd.fitting import initial_rates
    from rsd.training import Setting

    setting = Setting.from_paper("2_points", name)
    assert setting.steps == 6000 and setting.depth == 20 and setting.layers == (10,)
    run = _train_two_points(setting, range(4))
    h, y, w = (np.asarray(a, np.float64) for a in (run.h[..., 0], run.y, run.w))
    dx2, dy2 = float(run.dx2), float(run.dy2)
    fit = fit_rates(h, y, w, dx2, dy2)
    r2 = np.asarray(fit.r2)
    print(f"{name}: R² h, y, w per seed:\n", r2)
    np.testing.assert_array_equal(fit.status, FitStatus.OK)

    ts = np.arange(h.shape[1], dtype=np.float64)
    centers = np.asarray(initial_rates(h, y, w, dx2, dy2))
    # Eight directions in log(η_h, η_y), 1% steps. What a fit must achieve is a minimum
    # of the objective; the paper procedure's optimum alone would not show it (a fitter
    # that stops early can still beat a BFGS that does), and a poor R² says nothing of
    # the fit. A correct fit sees the objective rise in every direction; a fitter that
    # stopped on a slope sees it fall in some. Measured (narrow, seeds 0–3): rsd
    # and the paper procedure agree to 6 digits; 1% away the loss rises by 0.1–0.6%,
    # far above the reference evaluator's error (rtol 1e-10).
    angles = np.arange(8) * np.pi / 4
    steps = 1e-2 * np.stack([np.cos(angles), np.sin(angles)], -1)
    for s in range(4):
        z = np.stack([h[s], y[s], w[s]], -1)
        ours = np.array([fit.eta_h[s], fit.eta_y[s]], np.float64)
        loss = reference_loss(ours, z, ts, dx2, dy2)
        around = np.array([reference_loss(ours * np.exp(d), z, ts, dx2, dy2) for d in steps])
        rates, _ = scipy_fit(z, ts, dx2, dy2, centers[s], 1.5, "LSODA")
        theirs = reference_loss(rates, z, ts, dx2, dy2)
        print(f"seed {s}: loss rsd {loss:.6g}, paper procedure {theirs:.6g}, "
              f"lowest at 1% away {around.min():.6g}")
        assert np.all(around > loss), f"seed {s}: the objective falls 1% away from rsd's rates"
        assert loss <= theirs * (1 + 1e-4)
    if name == "default":
        assert np.all(r2[:, 0] >= 0.985) and np.all(r2[:, 1] >= 0.99) and np.all(r2[:, 2] >= 0.9)
