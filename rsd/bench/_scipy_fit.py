"""scipy baselines of the rate fits, independent of rsd's JAX code.

Two procedures fit (η_h, η_y) of the 3-D theory (``rsd.theory.vector_field``) to one trajectory
z(t) = (h, y, w) at the times ``ts`` (training steps), both minimising the paper's
objective L = Σ_t ||z(t) − ẑ(t)||² over every recorded step:

* :func:`paper_fit` — the paper's procedure: a 10 × 10 log-grid of the rates on all
  steps (``solve_ivp``), then BFGS with finite-difference gradients. The baseline of
  the *algorithmic and implementation* gain together.
* :func:`scipy_same_algorithm_fit` — the algorithm of :func:`rsd.fitting.fit_rates`
  (the integrated-field estimate as the grid's center, its 7 × 7 grid spanning ±1.5
  decades on a 256-step subsample with a 256-step solver budget, weighted
  Levenberg–Marquardt in log-rates from the best grid point, then a few
  Levenberg–Marquardt iterations on every step), written with scipy's explicit
  Dormand–Prince 5(4) (``RK45``, the analogue of rsd's Tsit5) at rsd's float64 fit
  tolerances and MINPACK's Levenberg–Marquardt (``least_squares(method="lm")``). The
  baseline of the *implementation* gain alone.

:func:`reference_loss` evaluates L tightly (LSODA at rtol 1e-10) so that losses reached
by different fitters compare without their own solver error.

scipy is imported where used (it is in the "test" and "bench" extras, not a dependency
of rsd). Nothing here calls rsd's JAX code, so a timer around these functions times
scipy alone.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "three_d_field",
    "numpy_floor",
    "scipy_objective",
    "paper_fit",
    "reference_loss",
    "scipy_same_algorithm_fit",
    "SAME_ALGORITHM",
]

SAME_ALGORITHM = dict(grid_points=7, grid_decades=1.5, grid_max_steps=256, num_fit_times=256,
                      max_iterations=50, polish_iterations=8, max_steps=4096, rtol=1e-7,
                      atol=1e-10, xtol=1e-6, ftol=1e-10, h_floor=1e-6)
"""The options of :func:`rsd.fitting.fit_rates` (its defaults, float64) that
:func:`scipy_same_algorithm_fit` copies."""


def three_d_field(t, z, eta_h, eta_y, dx2, dy2):
    """d(h, y, w)/dt of the 3-D theory (``rsd.theory.vector_field``), written out in Python floats:
    dh/dt = −η_h·dx2·w, dy/dt = −w·(η_y·h + η_h·dx2·y/h),
    dw/dt = −½·η_y·(3w − y + dy2)·h − ½·η_h·dx2·(y + w)·w/h."""
    h, y, w = z
    a = eta_h * dx2
    return np.array([-a * w, -w * (eta_y * h + a * y / h),
                     -0.5 * eta_y * (3 * w - y + dy2) * h - 0.5 * a * (y + w) * w / h])


def numpy_floor(z0, p, h_floor: float = 1e-6) -> float:
    """rsd's stop rule in numpy: stop where h < h_floor·min(h0, h∞) (h0 when h∞ = 0);
    ``p`` = (η_h, η_y, dx2, dy2)."""
    eta_h, eta_y, dx2, dy2 = p
    h0, y0 = z0[0], z0[1]
    k = eta_h * dx2 / eta_y
    c = h0 - k * y0 / h0
    root = np.sqrt(0.25 * c * c + k * dy2)
    h_inf = 0.5 * c + root if c >= 0 else k * dy2 / (root - 0.5 * c)
    return h_floor * (min(h0, h_inf) if h_inf > 0 else h0)


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


def paper_fit(data, ts, dx2, dy2, center, decades, method="LSODA"):
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


# ---------------------------------------------------------------------------
# rsd's algorithm in scipy.

def _field_parts(z, dx2, dy2, *, jacobians=True):
    """A(z), B(z) with dz/dt = η_h·A + η_y·B, and (with ``jacobians``) ∂A/∂z, ∂B/∂z [3, 3]."""
    h, y, w = z
    a = np.array([-dx2 * w, -dx2 * w * y / h, -0.5 * dx2 * (y + w) * w / h])
    b = np.array([0.0, -w * h, -0.5 * (3 * w - y + dy2) * h])
    if not jacobians:
        return a, b
    ja = np.array([[0.0, 0.0, -dx2],
                   [dx2 * w * y / h**2, -dx2 * w / h, -dx2 * y / h],
                   [0.5 * dx2 * (y + w) * w / h**2, -0.5 * dx2 * w / h, -0.5 * dx2 * (y + 2 * w) / h]])
    jb = np.array([[0.0, 0.0, 0.0],
                   [-w, 0.0, -h],
                   [-0.5 * (3 * w - y + dy2), 0.5 * h, -1.5 * h]])
    return a, b, ja, jb


def _solve(rates, z0, ts, dx2, dy2, *, rtol, atol, max_steps, h_floor, sensitivities):
    """ẑ(ts) from z0 by RK45 with at most ``max_steps`` steps, stopping (as a failure)
    where h < h_floor·min(h0, h∞) or the state is not finite; None on failure.

    With ``sensitivities`` also ∂ẑ/∂(log η_h, log η_y) [T, 3, 2] from the forward
    sensitivity equations, integrated alongside with an infinite absolute tolerance
    so that, as in forward-mode differentiation of rsd's solve, only the state
    controls the step size. Returns (zs [T, 3], sens or None)."""
    from scipy.integrate import RK45

    eta_h, eta_y = rates
    floor = numpy_floor(z0, (eta_h, eta_y, dx2, dy2), h_floor)

    if sensitivities:
        def fun(t, u):
            a, b, ja, jb = _field_parts(u[:3], dx2, dy2)
            s = u[3:].reshape(3, 2)
            ds = (eta_h * ja + eta_y * jb) @ s + np.stack([eta_h * a, eta_y * b], -1)
            return np.concatenate([eta_h * a + eta_y * b, ds.ravel()])

        u0 = np.concatenate([z0, np.zeros(6)])
        tol = np.concatenate([np.full(3, atol), np.full(6, np.inf)])
    else:
        def fun(t, u):
            a, b = _field_parts(u, dx2, dy2, jacobians=False)
            return eta_h * a + eta_y * b

        u0, tol = np.asarray(z0, float), atol
    out = np.empty((len(ts), len(u0)))
    out[0] = u0
    solver = RK45(fun, ts[0], u0, ts[-1], rtol=rtol, atol=tol)
    i, steps = 1, 0
    while i < len(ts):
        if steps == max_steps:
            return None
        solver.step()
        steps += 1
        if solver.status == "failed" or not np.all(np.isfinite(solver.y[:3])) or solver.y[0] < floor:
            return None
        j = i + int(np.searchsorted(ts[i:], solver.t, side="right"))
        if j > i:
            out[i:j] = solver.dense_output()(ts[i:j]).T
            i = j
    zs = out[:, :3]
    return zs, (out[:, 3:].reshape(-1, 3, 2) if sensitivities else None)


def _initial_rates(data, ts, dx2, dy2):
    """rsd's grid center: least squares of z(t) − z(0) = η_h·∫A + η_y·∫B (trapezoid),
    falling back to one-series magnitudes, then to 1/(time span)."""
    h, y, w = data.T
    a = np.stack([-dx2 * w, -dx2 * w * y / h, -0.5 * dx2 * (y + w) * w / h], -1)
    b = np.stack([np.zeros_like(h), -w * h, -0.5 * (3 * w - y + dy2) * h], -1)
    dt = np.diff(ts)[:, None]
    ia = np.concatenate([np.zeros((1, 3)), np.cumsum(0.5 * dt * (a[1:] + a[:-1]), 0)])
    ib = np.concatenate([np.zeros((1, 3)), np.cumsum(0.5 * dt * (b[1:] + b[:-1]), 0)])
    dz = data - data[0]
    m = np.array([[np.sum(ia * ia), np.sum(ia * ib)], [np.sum(ia * ib), np.sum(ib * ib)]])
    rhs = np.array([np.sum(ia * dz), np.sum(ib * dz)])
    det = m[0, 0] * m[1, 1] - m[0, 1] ** 2
    with np.errstate(all="ignore"):
        joint = (np.array([m[1, 1] * rhs[0] - m[0, 1] * rhs[1], m[0, 0] * rhs[1] - m[0, 1] * rhs[0]])
                 / det if det > 0 else np.full(2, np.nan))
        fallback = np.array([abs(dz[-1, 0]) / abs(ia[-1, 0]),
                             np.max(np.abs(dz[:, 1])) / np.max(np.abs(ib[:, 1]))])
    good = lambda v: np.isfinite(v) & (v > 0)  # noqa: E731
    return np.where(good(joint), joint, np.where(good(fallback), fallback, 1.0 / (ts[-1] - ts[0])))


def _fit_times(n_times, n_fit):
    """rsd's subsample: half linearly, half geometrically spaced steps (both ends), each
    weighted by the number of steps nearest to it."""
    if n_times <= n_fit:
        return np.arange(n_times), np.ones(n_times)
    half = max(n_fit // 2, 2)
    idx = np.unique(np.concatenate([[0], np.round(np.linspace(0, n_times - 1, half)),
                                    np.round(np.geomspace(1, n_times - 1, n_fit - half))]).astype(int))
    edges = np.concatenate([[-0.5], 0.5 * (idx[1:] + idx[:-1]), [n_times - 0.5]])
    return idx, np.diff(edges)


class _Residuals:
    """θ = log-rates ↦ √weight·(ẑ − z) and its Jacobian, from one sensitivity solve per
    θ (cached: MINPACK asks for the Jacobian at the point it just evaluated)."""

    def __init__(self, data, ts, weights, dx2, dy2, opts):
        self.data, self.ts, self.dx2, self.dy2, self.opts = data, ts, dx2, dy2, opts
        self.sw = np.sqrt(weights)[:, None]
        self._key, self._value = None, None

    def _eval(self, theta):
        key = np.asarray(theta, float).tobytes()
        if key != self._key:
            with np.errstate(all="ignore"):
                sol = _solve(np.exp(theta), self.data[0], self.ts, self.dx2, self.dy2,
                             rtol=self.opts["rtol"], atol=self.opts["atol"],
                             max_steps=self.opts["max_steps"], h_floor=self.opts["h_floor"],
                             sensitivities=True)
            if sol is None or not np.all(np.isfinite(sol[1])):
                # MINPACK has no notion of a failed evaluation: a huge residual makes
                # it reject the trial point, as rsd's fit rejects a failed solve.
                r = np.full(self.data.size, 1e150 / np.sqrt(self.data.size))
                jac = np.zeros((self.data.size, 2))
            else:
                r = (self.sw * (sol[0] - self.data)).ravel()
                jac = (self.sw[:, :, None] * sol[1]).reshape(-1, 2)
            self._key, self._value = key, (r, jac)
        return self._value

    def residual(self, theta):
        return self._eval(theta)[0]

    def jacobian(self, theta):
        return self._eval(theta)[1]


def scipy_same_algorithm_fit(data, ts, dx2, dy2, *, init=None, **options):
    """Fit (η_h, η_y) to ONE trajectory with the algorithm of :func:`rsd.fitting.fit_rates`,
    in scipy (float64).

    ``data`` [T, 3] of (h, y, w) at the times ``ts`` [T]. Steps, mirroring rsd:

    1. center: ``init`` if given, else the integrated-field least-squares estimate;
    2. a ``grid_points``² log-grid spanning ±``grid_decades`` about it, each point
       solved on the ``num_fit_times`` subsample by RK45 (explicit Dormand–Prince
       5(4), rsd's default being Tsit5, another explicit 5(4) pair) at rtol 1e-7,
       atol 1e-10 (rsd's float64 fit tolerances) with at most ``grid_max_steps``
       steps (more, or h under the floor: +inf), as rsd does;
    3. MINPACK Levenberg–Marquardt (``least_squares(method="lm")``, exact Jacobians
       from the forward sensitivity equations, where rsd differentiates its solve in
       forward mode) in log-rates on the subsample, each residual weighted by the
       steps it stands for, from the best grid point (the center if none solved);
       at most ``max_iterations`` evaluations, xtol 1e-6, ftol 1e-10;
    4. ``polish_iterations`` more on every step with weight 1 (skipped when the
       subsample is every step).

    ``options`` override :data:`SAME_ALGORITHM`. Returns (rates [2], loss) with loss
    = Σ_t ||ẑ(t) − z(t)||² over every step at the returned rates, the quantity rsd
    reports as ``RateFit.loss`` (inf when nothing could be solved).
    """
    from scipy.optimize import least_squares

    unknown = set(options) - set(SAME_ALGORITHM)
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}; allowed: {sorted(SAME_ALGORITHM)}.")
    opts = {**SAME_ALGORITHM, **options}
    data = np.asarray(data, float)
    ts = np.asarray(ts, float)
    if data.ndim != 2 or data.shape[1] != 3 or data.shape[0] < 3:
        raise ValueError(f"data must have shape [T, 3] with T >= 3; got {data.shape}.")
    if ts.shape != (data.shape[0],) or not np.all(np.diff(ts) > 0):
        raise ValueError(f"ts must be strictly increasing with shape ({data.shape[0]},).")
    if not np.all(np.isfinite(data)) or data[0, 0] <= 0:
        raise ValueError("data must be finite with h > 0 at the first step.")

    center = _initial_rates(data, ts, dx2, dy2) if init is None else np.asarray(init, float)
    idx, weights = _fit_times(len(ts), opts["num_fit_times"])
    sub_data, sub_ts = data[idx], ts[idx]

    n = opts["grid_points"]
    g = np.linspace(-opts["grid_decades"], opts["grid_decades"], n) * np.log(10.0) if n > 1 else np.zeros(1)
    grid = np.log(center) + np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    sw = np.sqrt(weights)[:, None]
    losses = []
    with np.errstate(all="ignore"):
        for theta in grid:
            sol = _solve(np.exp(theta), sub_data[0], sub_ts, dx2, dy2, rtol=opts["rtol"],
                         atol=opts["atol"], max_steps=min(opts["grid_max_steps"], opts["max_steps"]),
                         h_floor=opts["h_floor"], sensitivities=False)
            losses.append(np.inf if sol is None else float(np.sum((sw * (sol[0] - sub_data)) ** 2)))
    best = int(np.argmin(losses))
    theta0 = grid[best] if np.isfinite(losses[best]) else np.log(center)

    # MINPACK's xtol bounds the step relative to |θ| (rsd's: |δ|∞ in log-rates): rescale.
    # rsd has no gradient test; MINPACK's needs gtol > eps, so it is set just above.
    lm = dict(method="lm", xtol=opts["xtol"] / max(float(np.linalg.norm(theta0)), 1.0),
              ftol=opts["ftol"], gtol=4 * np.finfo(float).eps)
    sub = _Residuals(sub_data, sub_ts, weights, dx2, dy2, opts)
    theta = least_squares(sub.residual, theta0, jac=sub.jacobian, max_nfev=opts["max_iterations"],
                          **lm).x
    full = _Residuals(data, ts, np.ones(len(ts)), dx2, dy2, opts)
    if len(idx) < len(ts):
        theta = least_squares(full.residual, theta, jac=full.jacobian,
                              max_nfev=opts["polish_iterations"], **lm).x
    r = full.residual(theta)
    loss = float(np.sum(r * r))
    return np.exp(theta), (loss if loss < 1e299 else np.inf)
