"""Property-based fuzzing of the public theory entry points (DESIGN.md §5).

The property, for every call: either a result whose per-element statuses never say OK
where the input was invalid, or a ValueError whose message names an argument that
was made invalid — never another exception type, never a ValueError for valid input.

Examples reuse a few shapes (batch buckets 2 and 4, one bucket of save times) so
that compiled programs are shared; the file runs in about a minute on two CPU
cores. RSD_SLOW=1 selects the "slow" hypothesis profile (many more examples).
"""

import os

import diffrax
import numpy as np
import jax
from hypothesis import given, settings
from hypothesis import strategies as st

from rsd import theory
from rsd.theory import Status

_SLOW = os.environ.get("RSD_SLOW") == "1"


def examples(n):
    """n examples by default; the shared "slow" profile under RSD_SLOW=1."""
    return settings(settings.get_profile("slow")) if _SLOW else settings(max_examples=n)


# --- value generators -------------------------------------------------------------------
# Valid values stay well inside float32's range, so validity does not depend on the
# working precision; invalid ones are explicit.

BAD_VALUES = [np.nan, np.inf, -np.inf, -1.0, 0.0]
WRONG_TYPES = ["abc", None, [1.0, [2.0, 3.0]], 1j, object(), True]


class Case:
    """Arguments of one call, and which of them were made invalid."""

    def __init__(self, data):
        self.data = data
        self.suspects = set()

    def draw(self, strategy):
        return self.data.draw(strategy)

    def chance(self, p):
        """True with probability about p; shrinks towards False (no corruption)."""
        return self.draw(st.integers(0, 999)) >= 1000 * (1 - p)

    def positive(self, name, shape, *, lo=-3.0, hi=1.0, zero_ok=False, bad=0.15, per_element=True):
        """Log-uniform values in [10^lo, 10^hi]; with probability ``bad`` some entries
        invalid (non-finite, negative, or zero when not allowed). Returns (value, invalid mask)."""
        a = 10.0 ** np.asarray(self.draw(st.lists(st.floats(lo, hi), min_size=int(np.prod(shape)),
                                                  max_size=int(np.prod(shape)))), float).reshape(shape)
        if self.chance(bad):
            k = self.draw(st.integers(0, max(a.size - 1, 0)))
            value = self.draw(st.sampled_from(BAD_VALUES if not zero_ok else BAD_VALUES[:4]))
            if a.size:
                a.reshape(-1)[k] = value
        invalid = ~np.isfinite(a) | ((a < 0) if zero_ok else (a <= 0))
        if invalid.any() and (a.ndim == 0 or not per_element):
            self.suspects.add(name)
        return a, invalid

    def maybe_wrong_type(self, name, value, p=0.05):
        if self.chance(p):
            self.suspects.add(name)
            return self.draw(st.sampled_from(WRONG_TYPES))
        return value

    def maybe_dtype(self, value):
        """float32, float64 or float16 (all valid)."""
        if not isinstance(value, np.ndarray):
            return value
        dtype = self.draw(st.sampled_from([np.float32, np.float64, np.float16]))
        return value.astype(dtype)


def check_value_error(err, case):
    msg = str(err)
    assert case.suspects, f"ValueError for valid input: {msg}"
    assert any(name in msg for name in case.suspects), (case.suspects, msg)


def run(call, case):
    """The property: a result, or a ValueError naming a suspect; nothing else."""
    try:
        return call()
    except ValueError as err:
        check_value_error(err, case)
        return None


# --- solve ------------------------------------------------------------------------------

BATCHES = [(), (1,), (2,), (3,), (2, 2)]


def _state(case, batch):
    h, bad_h = case.positive("z0", batch, lo=-3, hi=1)
    y, bad_y = case.positive("z0", batch, lo=-4, hi=0, zero_ok=True)
    w = np.asarray(case.draw(st.lists(st.floats(-1, 1), min_size=int(np.prod(batch)),
                                      max_size=int(np.prod(batch)))), float).reshape(batch)
    if case.chance(0.1):
        w = w + np.nan
    z0 = np.stack([h, y, w], -1)
    return z0, bad_h | bad_y | ~np.isfinite(w)


@examples(30)
@given(st.data())
def test_solve(data):
    case = Case(data)
    batch = case.draw(st.sampled_from(BATCHES))
    n_times = case.draw(st.sampled_from([5, 7]))
    z0, invalid = _state(case, batch)
    ts = np.cumsum(10.0 ** np.asarray(case.draw(st.lists(st.floats(0, 2), min_size=n_times,
                                                           max_size=n_times)))) - 1.0
    if case.chance(0.1):
        ts = ts[::-1] if case.chance(0.5) else np.where(np.arange(n_times) == 2, np.nan, ts)
        case.suspects.add("ts")
    rates = {}
    for name, zero_ok in (("eta_h", False), ("eta_y", False), ("dx2", False), ("dy2", True)):
        shape = case.draw(st.sampled_from([(), batch]))
        lo, hi = (-4, -1) if name.startswith("eta") else (-1, 0.5)
        value, bad = case.positive(name, shape, lo=lo, hi=hi, zero_ok=zero_ok)
        invalid = invalid | np.broadcast_to(bad, invalid.shape)
        rates[name] = case.maybe_wrong_type(name, case.maybe_dtype(value))
    if batch not in [(), (1,)] and case.chance(0.05):  # a shape that does not broadcast
        rates["eta_y"] = np.full((5,), 1e-3)
        case.suspects.add("eta_y")
    if case.chance(0.05):
        z0 = z0[..., :2]
        case.suspects.add("z0")
    options = {}
    if case.chance(0.15):
        name, value = case.draw(st.sampled_from([
            ("solver", "tsit5"), ("stiff_solver", diffrax.Kvaerno5), ("rtol", -1e-6), ("rtol", np.nan),
            ("atol", "small"), ("max_steps", 0), ("max_steps", 2.5), ("chunk_size", 0),
            ("stiff_chunk_size", None), ("h_floor", 1.5), ("h_floor", "tiny"),
            ("vector_field", "paper"), ("stiff_max_steps", -1)]))
        options[name] = value
        case.suspects.add(name)
    z0 = case.maybe_wrong_type("z0", case.maybe_dtype(z0))
    ts = case.maybe_wrong_type("ts", ts)
    sol = run(lambda: theory.solve(z0, ts, rates["eta_h"], rates["eta_y"], rates["dx2"], rates["dy2"],
                                   **options), case)
    if sol is None:
        return
    assert sol.zs.shape == batch + (n_times, 3)
    status = np.asarray(sol.status)
    assert np.all(status[invalid] == Status.BAD_INPUT), (status, invalid)
    assert np.all(np.isin(status, list(Status)))


@examples(15)
@given(st.data())
def test_solve_under_jit(data):
    """Under jit nothing can be checked on the host: invalid values become BAD_INPUT."""
    case = Case(data)
    z0, invalid = _state(case, (2,))
    eta_h, bad_h = case.positive("eta_h", (2,), lo=-4, hi=-1, bad=0.4)
    eta_y, bad_y = case.positive("eta_y", (), lo=-4, hi=-1, bad=0.3)
    ts = np.linspace(0.0, 100.0, 5)
    bad_ts = case.chance(0.2)
    if bad_ts:
        ts[3] = case.draw(st.sampled_from([np.nan, -5.0]))
    status = np.asarray(_jit_solve(z0.astype(np.float32), ts.astype(np.float32), eta_h.astype(np.float32),
                                   np.float32(eta_y)))
    invalid = invalid | bad_h | bad_y | bad_ts
    assert np.all(status[invalid] == Status.BAD_INPUT), (status, invalid)


_jit_solve = jax.jit(lambda z0, ts, eh, ey: theory.solve(z0, ts, eh, ey, 1.0, 0.5).status)


# --- closed forms -----------------------------------------------------------------------

@examples(40)
@given(st.data())
def test_closed_forms(data):
    case = Case(data)
    batch = case.draw(st.sampled_from([(), (3,), (2, 3)]))
    which = case.draw(st.sampled_from(["final_distance", "rich_limit", "invariant", "loss_curve"]))

    shapes = {}

    def rate(name, zero_ok=False):
        shape = case.draw(st.sampled_from([(), batch, (4,)]))
        shapes[name] = shape
        value = case.positive(name, shape, zero_ok=zero_ok, per_element=False)[0]
        return case.maybe_wrong_type(name, value)

    def check_broadcast(*other):
        try:
            np.broadcast_shapes(*shapes.values(), *other)
        except ValueError:
            case.suspects.update(name for name, shape in shapes.items() if shape == (4,))

    if which == "final_distance":
        h0 = case.maybe_wrong_type("h0", case.positive("h0", batch, per_element=False)[0])
        y0 = case.positive("y0", batch, zero_ok=True, per_element=False)[0]
        args = (h0, y0, rate("eta_h"), rate("eta_y"), rate("dx2"), rate("dy2", zero_ok=True))
        check_broadcast(batch)
        out = run(lambda: theory.final_distance(*args), case)
    elif which == "rich_limit":
        args = (rate("eta_h"), rate("eta_y"), rate("dx2"), rate("dy2", zero_ok=True))
        check_broadcast()
        out = run(lambda: theory.rich_limit(*args), case)
    elif which == "invariant":
        z, invalid = _state(case, batch)
        if invalid.any():
            case.suspects.add("z")
        if case.chance(0.1):
            z = z[..., :2]
            case.suspects.add("z")
        args = (rate("eta_h"), rate("eta_y"), rate("dx2"))
        check_broadcast(batch)
        out = run(lambda: theory.invariant(z, *args), case)
    else:
        n_times = 4
        ts = np.cumsum(case.draw(st.lists(st.floats(0.1, 10), min_size=n_times, max_size=n_times)))
        z = np.asarray(case.draw(st.lists(st.floats(0, 1), min_size=3 * n_times,
                                          max_size=3 * n_times))).reshape(n_times, 3)
        z = np.broadcast_to(z, batch + (n_times, 3))
        if case.chance(0.1):
            z = z[..., :2]
            case.suspects.add("z")
        if case.chance(0.1):
            z = z + np.nan
            case.suspects.add("z")
        if case.chance(0.1):
            ts = ts[::-1] if case.chance(0.5) else ts + np.nan
            case.suspects.add("ts")
        args = (rate("dy2", zero_ok=True), rate("eta_mean"), rate("e0", zero_ok=True))
        check_broadcast(batch)
        out = run(lambda: theory.loss_curve(ts, z, *args), case)
    if out is not None:
        assert not case.suspects, f"accepted invalid {case.suspects}"
        assert isinstance(out, jax.Array)


# --- pairwise predictions ---------------------------------------------------------------

@examples(25)
@given(st.data())
def test_predicted_distance_matrix(data):
    case = Case(data)
    n = case.draw(st.sampled_from([2, 3]))
    mats = {}
    for name in ("dx2", "dy2", "h0", "y0"):
        a = case.positive(name, (n, n), lo=-2, hi=1, zero_ok=True, bad=0.1)[0]
        a = np.triu(a) + np.triu(a, 1).T
        np.fill_diagonal(a, np.where(np.isfinite(np.diag(a)), 0.0, np.diag(a)))
        if not np.all(np.isfinite(a) & (a >= 0)):
            case.suspects.add(name)
        if case.chance(0.05):
            a[0, 1] += 1.0
            case.suspects.add(name)
        if case.chance(0.05):
            a = a[:, :1]
            case.suspects.add(name)
        mats[name] = case.maybe_wrong_type(name, a)
    rates = [case.maybe_wrong_type(name, case.positive(name, case.draw(st.sampled_from([(), (2,)])),
                                                       per_element=False)[0])
             for name in ("eta_h", "eta_y")]
    for name, r in zip(("eta_h", "eta_y"), rates):
        if isinstance(r, np.ndarray) and r.ndim == 1:
            case.suspects.add(name)
    out = run(lambda: theory.predicted_distance_matrix(*mats.values(), *rates), case)
    if out is not None:
        assert not case.suspects, f"accepted invalid {case.suspects}"
        assert out.shape == (n, n) and np.all(np.isfinite(np.asarray(out)))


# --- the linearized system --------------------------------------------------------------

@examples(15)
@given(st.data())
def test_solve_linearized(data):
    case = Case(data)
    rng = np.random.default_rng(case.draw(st.integers(0, 2**31)))
    state = {"enc": rng.normal(size=(2, 1)), "dec": rng.normal(size=(1, 2)), "mean": rng.normal(size=(1,))}
    if case.chance(0.1):
        key = case.draw(st.sampled_from(sorted(state)))
        state[key] = state[key] + np.nan
        case.suspects.add(f"state0.{key}")
    if case.chance(0.05):
        state["dec"] = state["dec"][:, :1]
        case.suspects.add("state0.dec")
    state0 = theory.LinearizedState(**state)
    if case.chance(0.05):
        state0 = (state["enc"], state["dec"], state["mean"])
        case.suspects.add("state0")
    args = {"dx": np.array([1.0]), "dy_target": np.array([0.7]), "mean_target": np.array([0.3])}
    if case.chance(0.1):
        key = case.draw(st.sampled_from(sorted(args)))
        args[key] = case.draw(st.sampled_from([np.array([np.nan]), np.array([1.0, 2.0]), "x"]))
        case.suspects.add(key)
    rates = [case.maybe_wrong_type(name, case.positive(name, (), lo=-2, hi=0)[0])
             for name in ("eta_h", "eta_y", "eta_mean")]
    ts = np.linspace(0.0, 10.0, 4)
    options = {}
    if case.chance(0.15):
        name, value = case.draw(st.sampled_from([("rtol", -1.0), ("atol", np.inf), ("solver", "tsit5"),
                                                 ("max_steps", 0)]))
        options[name] = value
        case.suspects.add(name)
    sol = run(lambda: theory.solve_linearized(state0, ts, *args.values(), *rates, **options), case)
    if sol is not None:
        assert not case.suspects, f"accepted invalid {case.suspects}"
        assert np.all(np.isin(np.asarray(sol.status), list(Status)))
