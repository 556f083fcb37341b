"""Assertions shared by the tests."""

import chex
import numpy as np


def assert_close(actual, expected, *, rtol=1e-7, atol=0.0, err_msg=""):
    """Elementwise closeness of arrays or pytrees (chex underneath)."""
    chex.assert_trees_all_close(actual, expected, rtol=rtol, atol=atol, custom_message=err_msg)


def relative_error(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    return np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-300))


# ---------------------------------------------------------------------------
# The paper's fitting procedure in scipy, independent of rsd: a reference for the tests
# and the baseline of benchmarks/fit_throughput.py. scipy is imported where used (it is
# in the "test" and "bench" extras, not a dependency of rsd).

def three_d_field(t, z, eta_h, eta_y, dx2, dy2):
    """d(h, y, w)/dt of the 3-D theory (DESIGN.md §1), written out in Python floats:
    dh/dt = −η_h·dx2·w, dy/dt = −w·(η_y·h + η_h·dx2·y/h),
    dw/dt = −½·η_y·(3w − y + dy2)·h − ½·η_h·dx2·(y + w)·w/h."""
    h, y, w = z
    a = eta_h * dx2
    return [-a * w, -w * (eta_y * h + a * y / h),
            -0.5 * eta_y * (3 * w - y + dy2) * h - 0.5 * a * (y + w) * w / h]


def scipy_objective(log_rates, data, ts, dx2, dy2, method="LSODA", rtol=1e-6, atol=1e-9):
    """The paper's objective: Σ over every step of the squared residuals of (h, y, w),
    the theory started from the data's first point and solved by ``solve_ivp``; inf
    where the solve fails. ``data`` [T, 3], ``log_rates`` = log(η_h, η_y)."""
    from scipy.integrate import solve_ivp

    eta_h, eta_y = np.exp(log_rates)
    try:
        sol = solve_ivp(three_d_field, (ts[0], ts[-1]), data[0], method=method, t_eval=ts,
                        args=(eta_h, eta_y, dx2, dy2), rtol=rtol, atol=atol)
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return np.inf
    if not sol.success or sol.y.shape[1] != len(ts) or not np.all(np.isfinite(sol.y)):
        return np.inf
    return float(np.sum((sol.y.T - data) ** 2))


def scipy_fit(data, ts, dx2, dy2, center, decades, method="LSODA"):
    """The paper-style fit of one trajectory: a 10×10 log-grid of (η_h, η_y) spanning
    ±``decades`` about ``center``, then BFGS (finite-difference gradients) in log-rates
    from the best grid point. Returns (rates [2], objective)."""
    from scipy.optimize import minimize

    g = np.linspace(-decades, decades, 10) * np.log(10.0)
    grid = np.log(center) + np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    with np.errstate(all="ignore"):
        losses = [scipy_objective(p, data, ts, dx2, dy2, method) for p in grid]
        start = grid[int(np.argmin(losses))]
        res = minimize(scipy_objective, start, args=(data, ts, dx2, dy2, method), method="BFGS")
    return np.exp(res.x), res.fun


def reference_loss(rates, data, ts, dx2, dy2):
    """The objective at ``rates`` = (η_h, η_y), evaluated tightly (LSODA, rtol 1e-10), so
    that losses reached by different fitters compare without their own solver error."""
    with np.errstate(all="ignore"):
        return scipy_objective(np.log(rates), data, ts, dx2, dy2, "LSODA", 1e-10, 1e-12)
