"""The one single-trajectory solve behind theory.solve, theory.solve_linearized and the
fits: shared, and checked against scipy where it is new (the second explicit pass of
solve, solve_linearized batching itself, forward-mode solves)."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from rsd import theory
from rsd.fitting import _rates as fitting_rates
from rsd.fitting import fit_objective
from rsd.theory import LinearizedState, Status
from rsd.theory import _linearized as linearized_module
from rsd.theory import _solve as solve_module

from .helpers import three_d_field

TS = np.linspace(0.0, 3000.0, 31)


def _reference(z0, p, ts, rtol=1e-12, atol=1e-14):
    """The 3-D theory by scipy DOP853, written out independently (tests/helpers.py)."""
    sol = solve_ivp(three_d_field, (ts[0], ts[-1]), z0, method="DOP853", t_eval=ts, args=tuple(p),
                    rtol=rtol, atol=atol)
    assert sol.success
    return sol.y.T


def test_solve_fits_and_linearized_call_the_same_core():
    assert fitting_rates.solve_trajectory is theory.solve_trajectory
    assert linearized_module.solve_trajectory is theory.solve_trajectory
    assert solve_module.solve_trajectory is theory.solve_trajectory
    # The fits take their tolerances from the same defaults, 10x tighter in float64.
    assert theory.default_tolerances(jnp.float64) == (1e-6, 1e-9)
    assert theory.default_tolerances(jnp.float64, tighten=10.0) == pytest.approx((1e-7, 1e-10))
    assert theory.default_tolerances(jnp.float32, tighten=10.0) == (1e-5, 1e-8)
    explicit = theory.default_tolerances(jnp.float64, 1e-3, None, tighten=10.0)
    assert explicit == (1e-3, pytest.approx(1e-10))


def test_fit_objective_is_the_loss_of_solve(x64):
    """Same inputs and tolerances: the fit's objective is Σ (solve − data)², the theory
    solved by solve itself, to round-off (not to tolerance)."""
    z0 = np.array([0.3, 0.05, 0.05 - np.sqrt(0.05 * 0.5)])
    p = (2e-3, 3e-3, 1.2, 0.5)
    ts = np.linspace(0.0, 2000.0, 40)
    rng = np.random.default_rng(0)
    truth = _reference(z0, p, ts)
    data = truth * (1.0 + 1e-3 * rng.standard_normal(truth.shape))
    data[0] = z0  # the fit solves from the data's first point
    kw = dict(rtol=1e-8, atol=1e-11)
    sol = theory.solve(z0, ts, *p, solver=diffrax.Tsit5(), **kw)
    assert int(sol.status) == Status.OK
    expected = np.sum((np.asarray(sol.zs) - data) ** 2)
    got = fit_objective(np.log(p[:2]), data[:, 0], data[:, 1], data[:, 2], p[2], p[3], ts=ts, **kw)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    # ... and solve is exact against scipy at that tolerance.
    np.testing.assert_allclose(sol.zs, truth, rtol=1e-6, atol=1e-9)


def test_long_trajectories_take_the_second_explicit_pass(x64):
    """Trajectories that need more than the first pass's 128 steps are solved again with
    the full budget: OK (not stiff), exact against scipy, the steps of both passes counted."""
    z0 = np.array([[1e-3, 1e-4, 1e-4 - np.sqrt(0.5e-4)], [0.5, 0.05, 0.05 - np.sqrt(0.025)],
                   [2.0, 0.3, 0.3 - np.sqrt(0.15)]])
    p = (np.array([8e-3, 5e-3, 3e-3]), np.array([12e-3, 4e-3, 2e-3]), 1.0, 0.5)
    tight = dict(rtol=1e-10, atol=1e-13)
    sol = theory.solve(z0, TS, *p, **tight)
    steps = np.asarray(sol.num_steps)
    np.testing.assert_array_equal(sol.status, Status.OK)
    assert not np.any(np.asarray(sol.stiff))
    assert np.all(steps > solve_module.FIRST_BUDGET)
    for i in range(3):
        ref = _reference(z0[i], [np.broadcast_to(a, 3)[i] for a in p], TS)
        np.testing.assert_allclose(sol.zs[i], ref, rtol=1e-8, atol=1e-12)
    # The second pass is a whole solve with the full budget: one pass of the core
    # with max_steps gives the same trajectory and the steps beyond the first budget.
    one = jax.jit(jax.vmap(lambda z, a, b: theory.solve_trajectory(
        z, jnp.asarray(TS), (a, b, 1.0, 0.5), max_steps=4096, **tight)))(
        jnp.asarray(z0), jnp.asarray(p[0]), jnp.asarray(p[1]))
    np.testing.assert_allclose(sol.zs, one.zs, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(steps, np.asarray(one.num_steps) + solve_module.FIRST_BUDGET)


def test_forward_mode_solve_matches_finite_differences(x64):
    """adjoint=ForwardMode: jax.jacfwd through solve (what the fits do through the core)."""
    z0 = np.array([0.3, 0.05, 0.05 - np.sqrt(0.05 * 0.5)])
    ts = np.linspace(0.0, 1000.0, 11)
    kw = dict(rtol=1e-11, atol=1e-14, solver=diffrax.Tsit5(), adjoint=diffrax.ForwardMode())

    def final_h(log_rates):
        eta = jnp.exp(log_rates)
        return theory.solve(z0, ts, eta[0], eta[1], 1.2, 0.5, **kw).zs[-1, 0]

    x = jnp.log(jnp.array([2e-3, 3e-3]))
    jac = jax.jacfwd(final_h)(x)
    # Central differences on scipy's tight solve: independent of rsd.
    eps = 1e-5
    fd = [(_reference(z0, (*np.exp(x + eps * e), 1.2, 0.5), ts)[-1, 0]
           - _reference(z0, (*np.exp(x - eps * e), 1.2, 0.5), ts)[-1, 0]) / (2 * eps) for e in np.eye(2)]
    np.testing.assert_allclose(jac, fd, rtol=1e-5)
    with pytest.raises(ValueError, match="adjoint must be a diffrax adjoint"):
        theory.solve(z0, ts, 1e-3, 1e-3, 1.0, 0.5, adjoint="forward")


def _matrix_flow(t, v, hidden, n_in, n_out, eta_h, eta_y, eta_mean, dx, dy_target, mean_target):
    """The linearized pair's flow (DESIGN.md §1) in numpy, state flattened (Dh, Dy, ȳ)."""
    enc = v[:hidden * n_in].reshape(hidden, n_in)
    dec = v[hidden * n_in:hidden * n_in + n_out * hidden].reshape(n_out, hidden)
    mean = v[hidden * n_in + n_out * hidden:]
    dh = enc @ dx
    r = dec @ dh - dy_target
    return np.concatenate([(-0.5 * eta_h * np.outer(dec.T @ r, dx)).ravel(),
                           (-0.5 * eta_y * np.outer(r, dh)).ravel(), -eta_mean * (mean - mean_target)])


def test_solve_linearized_batches_itself(x64):
    """A [2, 3] batch of pairs (shared dx, per-pair states and rates) in one call: every
    pair equals scipy on the same matrix ODE, and a pair solved alone."""
    rng = np.random.default_rng(3)
    n_in, hidden, n_out = 3, 4, 2
    ts = np.linspace(0.0, 200.0, 21)
    enc = 0.3 * rng.normal(size=(2, 3, hidden, n_in))
    dec = 0.3 * rng.normal(size=(2, 3, n_out, hidden))
    mean = rng.normal(size=(2, 3, n_out))
    dx, dy_target, mean_target = rng.normal(size=n_in), rng.normal(size=n_out), rng.normal(size=n_out)
    eta_h = np.array([[0.05], [0.02]])  # broadcasts over the second axis
    eta_y, eta_mean = 0.1, 0.03
    tol = dict(rtol=1e-10, atol=1e-13)
    sol = theory.solve_linearized(LinearizedState(enc, dec, mean), ts, dx, dy_target, mean_target,
                                  eta_h, eta_y, eta_mean, **tol)
    assert sol.states.enc.shape == (2, 3, len(ts), hidden, n_in)
    assert sol.states.mean.shape == (2, 3, len(ts), n_out)
    np.testing.assert_array_equal(sol.status, Status.OK)
    for i in range(2):
        for j in range(3):
            v0 = np.concatenate([enc[i, j].ravel(), dec[i, j].ravel(), mean[i, j]])
            ref = solve_ivp(_matrix_flow, (ts[0], ts[-1]), v0, method="DOP853", t_eval=ts, rtol=1e-12,
                            atol=1e-14, args=(hidden, n_in, n_out, eta_h[i, 0], eta_y, eta_mean, dx,
                                              dy_target, mean_target)).y.T
            got = np.concatenate([np.asarray(sol.states.enc[i, j]).reshape(len(ts), -1),
                                  np.asarray(sol.states.dec[i, j]).reshape(len(ts), -1),
                                  np.asarray(sol.states.mean[i, j])], -1)
            np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-10)
    alone = theory.solve_linearized(LinearizedState(enc[1, 2], dec[1, 2], mean[1, 2]), ts, dx, dy_target,
                                    mean_target, eta_h[1, 0], eta_y, eta_mean, **tol)
    np.testing.assert_allclose(alone.states.enc, sol.states.enc[1, 2], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="arguments do not broadcast"):
        theory.solve_linearized(LinearizedState(enc, dec, mean), ts, dx, dy_target, mean_target,
                                np.ones(4), eta_y, eta_mean)
