"""Property-based fuzzing of the public fitting entry points (DESIGN.md §5).

The property, as in test_fuzz_theory: either a result whose per-element statuses are
never OK where the data were invalid (BAD_DATA there), or a ValueError naming an
argument that was made invalid; never another exception type.

Every fit uses one set of cheap options, a fixed number of steps and batch sizes in
one bucket, so that a single compiled program serves all examples; RSD_SLOW=1
selects the "slow" hypothesis profile.
"""

import numpy as np
import jax.numpy as jnp
from hypothesis import given
from hypothesis import strategies as st

from rsd.fitting import (
    FitStatus,
    LossRateFit,
    RateFit,
    fit_layers,
    fit_loss_rate,
    fit_objective,
    fit_rates,
    initial_rates,
    summarize_rates,
)

from .test_fuzz_theory import Case, examples, run

T = 6
FAST = dict(grid_points=2, num_fit_times=4, max_iterations=3, polish_iterations=1, max_steps=64,
            grid_max_steps=16)
BATCHES = [(), (1,), (2,)]


def _trajectories(case, batch, n_times=T):
    """(h, y, w) [*batch, T] near a theory-like trajectory, and the invalid mask [batch]."""
    size = int(np.prod(batch))
    h0 = 10.0 ** np.asarray(case.draw(st.lists(st.floats(-2, 0.5), min_size=size, max_size=size)))
    growth = np.asarray(case.draw(st.lists(st.floats(-0.5, 2), min_size=size, max_size=size)))
    s = np.linspace(0.0, 1.0, n_times)
    h = (h0[:, None] * (1.0 + growth[:, None] * s)).reshape(batch + (n_times,))
    y = (0.5 * s * s * np.ones((size, 1))).reshape(batch + (n_times,)) + 1e-3
    w = y - np.sqrt(0.5 * y)
    invalid = np.zeros(batch, bool)
    if case.chance(0.3) and size:
        k = case.draw(st.integers(0, size - 1))
        series = case.draw(st.sampled_from(["h", "y", "w"]))
        where = case.draw(st.sampled_from(["start", "later"]))
        value = case.draw(st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0]))
        a = {"h": h, "y": y, "w": w}[series].reshape(size, n_times)
        a[k, 0 if where == "start" else n_times - 2] = value
        bad = (not np.isfinite(value)) or (where == "start" and (
            (series == "h" and value <= 0) or (series == "y" and value < 0)))
        if bad:
            invalid.reshape(-1)[k] = True
    return h, y, w, invalid


def _distances(case, batch, invalid):
    out = []
    for name, zero_ok in (("dx2", False), ("dy2", True)):
        shape = case.draw(st.sampled_from([(), batch]))
        value, bad = case.positive(name, shape, lo=-1, hi=0.5, zero_ok=zero_ok, bad=0.1)
        invalid = invalid | np.broadcast_to(bad, batch)
        out.append(case.maybe_wrong_type(name, case.maybe_dtype(value)))
    return out, invalid


@examples(25)
@given(st.data())
def test_fit_rates(data):
    case = Case(data)
    batch = case.draw(st.sampled_from(BATCHES))
    h, y, w, invalid = _trajectories(case, batch)
    (dx2, dy2), invalid = _distances(case, batch, invalid)
    kwargs = dict(FAST)
    if case.chance(0.15):
        ts = np.arange(T, dtype=float)
        ts = ts[::-1] if case.chance(0.5) else np.where(ts == 3, np.nan, ts)
        kwargs["ts"] = ts
        case.suspects.add("ts")
    if case.chance(0.2):
        init = np.asarray(case.draw(st.lists(st.sampled_from([0.1, 1.0, np.nan, -1.0]), min_size=2,
                                             max_size=2)))
        if case.chance(0.2):
            init = init[:1]
            case.suspects.add("init")
        kwargs["init"] = case.maybe_wrong_type("init", init)
    if case.chance(0.15):
        name, value = case.draw(st.sampled_from([
            ("solver", "tsit5"), ("rtol", -1.0), ("atol", np.nan), ("grid_points", 0),
            ("num_fit_times", 1.5), ("max_iterations", 0), ("chunk_size", None),
            ("grid_decades", -1.0), ("vector_field", 3)]))
        kwargs[name] = value
        case.suspects.add(name)
    h = case.maybe_wrong_type("h", h)
    fit = run(lambda: fit_rates(h, y, w, dx2, dy2, **kwargs), case)
    if fit is None:
        return
    assert fit.status.shape == batch and fit.r2.shape == batch + (3,)
    status = np.asarray(fit.status)
    assert np.all(status[invalid] == FitStatus.BAD_DATA), (status, invalid)
    assert np.all(np.isin(status, [s for s in FitStatus if s >= 0]))
    # Only a fit that produced rates reports them.
    assert np.all(np.isfinite(np.asarray(fit.eta_h))[status <= FitStatus.NOT_CONVERGED])


@examples(10)
@given(st.data())
def test_fit_layers(data):
    case = Case(data)
    h, y, w, invalid = _trajectories(case, (2,))
    # Two layers of one run share y and w: use trajectory 0's.
    layers = np.moveaxis(h, 0, -1)
    bad_layers = ~np.all(np.isfinite(layers), axis=0) | (layers[0] <= 0)
    bad_run = not (np.all(np.isfinite(y[0])) and np.all(np.isfinite(w[0])) and y[0, 0] >= 0)
    fit = run(lambda: fit_layers(layers, y[0], w[0], 1.0, 0.5, **FAST), case)
    status = np.asarray(fit.status)
    assert status.shape == (2,)
    assert np.all(status[bad_layers | bad_run] == FitStatus.BAD_DATA)


@examples(25)
@given(st.data())
def test_fit_loss_rate(data):
    case = Case(data)
    batch = case.draw(st.sampled_from([(), (2,), (3,)]))
    size = int(np.prod(batch))
    eta = 10.0 ** np.asarray(case.draw(st.lists(st.floats(-2, 0), min_size=size, max_size=size)))
    t = np.arange(T, dtype=float)
    zs = np.broadcast_to(np.array([1.0, 0.2, -0.1]), batch + (T, 3)).copy()
    loss = (0.25 * (0.6 * np.exp(-2 * eta[:, None] * t) + 0.1)).reshape(batch + (T,))
    invalid = np.zeros(batch, bool)
    if case.chance(0.3) and size:
        k = case.draw(st.integers(0, size - 1))
        value = case.draw(st.sampled_from([np.nan, np.inf]))
        if case.chance(0.5):
            loss.reshape(size, T)[k, 2] = value
        else:
            zs.reshape(size, T, 3)[k, 1, 0] = value
        invalid.reshape(-1)[k] = True
    values = {}
    for name in ("dy2", "e0"):
        shape = case.draw(st.sampled_from([(), batch]))
        value, bad = case.positive(name, shape, lo=-2, hi=0, zero_ok=True, bad=0.15)
        invalid = invalid | np.broadcast_to(bad, batch)
        values[name] = case.maybe_wrong_type(name, value)
    kwargs = {}
    if case.chance(0.15):
        name, value = case.draw(st.sampled_from([
            ("grid_size", 0), ("max_iterations", 0), ("max_iterations", 2.5), ("ts", np.arange(T)[::-1]),
            ("ts", np.arange(T + 1))]))
        kwargs[name] = value
        case.suspects.add(name)
    if case.chance(0.05):
        zs = zs[..., :2]
        case.suspects.add("zs")
    loss = case.maybe_wrong_type("loss", loss)
    fit = run(lambda: fit_loss_rate(loss, zs, values["dy2"], values["e0"], **kwargs), case)
    if fit is None:
        return
    status = np.asarray(fit.status)
    assert status.shape == batch
    assert np.all(status[invalid] == FitStatus.BAD_DATA), (status, invalid)


@examples(25)
@given(st.data())
def test_summarize_rates(data):
    case = Case(data)
    shape = case.draw(st.sampled_from([(3,), (4, 2), (0,), (), (2, 0)]))
    values = np.asarray(case.draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, np.nan, np.inf, -1.0]),
                                           min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))),
                        float).reshape(shape)
    axis = case.draw(st.sampled_from([0, -1, 1, 2]))
    kind = case.draw(st.sampled_from(["array", "RateFit", "LossRateFit"]))
    if len(shape) == 0:
        case.suspects.update(["fit"])
    elif not -len(shape) <= axis < len(shape):
        case.suspects.add("axis")
    elif shape[axis] == 0:
        case.suspects.add("fit")
    status = np.where(np.isfinite(values), FitStatus.OK, FitStatus.BAD_DATA).astype(np.int32)
    if kind == "RateFit":
        fit = RateFit(eta_h=jnp.asarray(values), eta_y=jnp.asarray(values), loss=jnp.asarray(values),
                      r2=jnp.asarray(values)[..., None], status=jnp.asarray(status),
                      iterations=jnp.asarray(status))
        ok = None
    elif kind == "LossRateFit":
        fit = LossRateFit(eta_mean=jnp.asarray(values), loss=jnp.asarray(values), r2=jnp.asarray(values),
                          status=jnp.asarray(status))
        ok = None
    else:
        fit = case.maybe_wrong_type("fit", values)
        ok = None
        if case.chance(0.3):
            ok = np.isfinite(values)
            if case.chance(0.2):
                ok = np.ones((7,), bool)
                case.suspects.add("ok")
    kwargs = {"num_resamples": 20}
    if case.chance(0.15):
        name, value = case.draw(st.sampled_from([("confidence", 1.5), ("confidence", "high"),
                                                 ("num_resamples", 0)]))
        kwargs[name] = value
        case.suspects.add(name)
    out = run(lambda: summarize_rates(fit, ok, axis=axis, **kwargs), case)
    if out is not None:
        assert not case.suspects, f"accepted invalid {case.suspects}"


@examples(10)
@given(st.data())
def test_fit_objective_and_initial_rates(data):
    """One trajectory, no status to carry: invalid data raise, naming the argument."""
    case = Case(data)
    h, y, w, invalid = _trajectories(case, ())
    if invalid:
        case.suspects.update(["h", "y", "w"])
    elif not (np.all(np.isfinite(h)) and np.all(np.isfinite(y)) and np.all(np.isfinite(w))):
        case.suspects.update(["h", "y", "w"])
    theta = np.log([0.3, 0.5])
    if case.chance(0.1):
        theta = theta[:1]
        case.suspects.add("log_rates")
    value = run(lambda: fit_objective(theta, h, y, w, 1.0, 0.5, max_steps=64), case)
    if value is not None:
        assert not case.suspects, case.suspects
    rates = run(lambda: initial_rates(h, y, w, 1.0, 0.5), case)
    if rates is not None:
        assert rates.shape == (2,)
