"""The 3-D effective theory: closed forms, invariants, solver behaviour, bad input."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from rsd import quantities, theory
from rsd.theory import Status

from .helpers import assert_close

TS = np.linspace(0.0, 4000.0, 41)
N = 16  # one batch size for most tests, so that they share compiled programs
# Tight settings shared by the tests that need them (and their compiled program).
TIGHT = dict(rtol=1e-11, atol=1e-14, solver=diffrax.Tsit5(), max_steps=8192)


def _params(n=N, seed=0, regime="mixed"):
    """Random well-posed parameter sets with aligned initial outputs."""
    rng = np.random.default_rng(seed)
    eta_h = 10 ** rng.uniform(-3.5, -2, n)
    eta_y = 10 ** rng.uniform(-3.5, -2, n)
    dx2 = 10 ** rng.uniform(-0.5, 0.5, n)
    dy2 = 10 ** rng.uniform(-0.5, 0.5, n)
    lo, hi = {"rich": (-4, -2), "lazy": (1, 2), "mixed": (-4, 1)}[regime]
    h0 = 10 ** rng.uniform(lo, hi, n)
    y0 = h0 * 10 ** rng.uniform(-2, 0, n) if regime != "lazy" else 10 ** rng.uniform(-3, -1, n)
    w0 = y0 - rng.uniform(0, 1, n) * np.sqrt(y0 * dy2)
    return np.stack([h0, y0, w0], -1), eta_h, eta_y, dx2, dy2


def _numpy_field(t, z, eta_h, eta_y, dx2, dy2):
    """DESIGN.md §1, written out again independently of rsd for the reference."""
    h, y, w = z
    return np.array([
        -eta_h * dx2 * w,
        -w * (eta_y * h + eta_h * dx2 * y / h),
        -0.5 * eta_y * (3 * w - y + dy2) * h - 0.5 * eta_h * dx2 * (y + w) * w / h,
    ])


def _scipy_reference(z0, p, ts):
    f = lambda t, z: _numpy_field(t, z, *p)
    sol = solve_ivp(f, (ts[0], ts[-1]), z0, method="DOP853", t_eval=ts, rtol=1e-12, atol=1e-14)
    return sol.y.T


def test_invariant_is_conserved_by_the_vector_field(x64):
    # dC/dt = ∇C · f vanishes identically, at any state.
    z, eta_h, eta_y, dx2, dy2 = _params(200, seed=1)
    z = jnp.asarray(z)

    def dcdt(z, a, b, c, d):
        f = theory.vector_field(0.0, z, (a, b, c, d))
        return jax.jvp(lambda z: theory.invariant(z, a, b, c), (z,), (f,))[1]

    rate = jax.vmap(dcdt)(z, eta_h, eta_y, dx2, dy2)
    scale = jnp.abs(jax.vmap(lambda z, a, b, c, d: theory.vector_field(0.0, z, (a, b, c, d)))(
        z, eta_h, eta_y, dx2, dy2)).max(-1) * (1 + jnp.abs(theory.invariant(z, eta_h, eta_y, dx2)))
    assert np.max(np.abs(rate) / scale) < 1e-12


def test_invariant_constant_along_solutions(x64):
    z0, *p = _params(seed=2)
    sol = theory.solve(z0, TS, *p, **TIGHT)
    assert np.all(np.asarray(sol.status) == Status.OK)
    c = np.asarray(theory.invariant(sol.zs, *(np.asarray(a)[:, None] for a in p[:3])))
    drift = np.max(np.abs(c - c[:, :1]), axis=1) / np.abs(c[:, 0])
    assert drift.max() < 1e-8, drift.max()


def test_solve_matches_tight_scipy_reference(x64):
    z0, *p = _params(seed=3)
    sol = theory.solve(z0, TS, *p)
    for i in range(6):
        ref = _scipy_reference(z0[i], tuple(a[i] for a in p), TS)
        err = np.abs(np.asarray(sol.zs[i]) - ref).max(0) / np.abs(ref).max(0)
        assert err.max() < 1e-4, (i, err)


@pytest.mark.parametrize("regime", ["rich", "lazy", "mixed"])
def test_final_distance_equals_long_solve(x64, regime):
    z0, eta_h, eta_y, dx2, dy2 = _params(seed=4, regime=regime)
    # Long enough for every trajectory to converge: rates >= 10^-3.5 and h∞ >= ~0.03.
    ts = np.geomspace(1.0, 5e6, 41)
    ts[0] = 0.0
    sol = theory.solve(z0, ts, eta_h, eta_y, dx2, dy2, rtol=1e-10, atol=1e-13)
    assert np.all(np.asarray(sol.status) == Status.OK)
    h_end = np.asarray(sol.zs[:, -1, 0])
    expected = np.asarray(theory.final_distance(z0[:, 0], z0[:, 1], eta_h, eta_y, dx2, dy2))
    assert_close(h_end, expected, rtol=1e-6)
    # ... at a perfect fit: y → dy2, w → 0.
    assert_close(np.asarray(sol.zs[:, -1, 1]), dy2, rtol=1e-6)
    assert np.max(np.abs(sol.zs[:, -1, 2])) < 1e-7


def test_rich_limit(x64):
    _, eta_h, eta_y, dx2, dy2 = _params(50, seed=5)
    rich = theory.rich_limit(eta_h, eta_y, dx2, dy2)
    assert_close(rich, np.sqrt(eta_h / eta_y * dx2 * dy2), rtol=1e-14)
    errors = []
    for s in [1e-2, 1e-4, 1e-6]:
        h = theory.final_distance(s, s**2, eta_h, eta_y, dx2, dy2)
        errors.append(float(np.max(np.abs(h / rich - 1))))
    # The end state approaches the geometric mean as the weights shrink, at rate O(s).
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-5


def test_lazy_limit(x64):
    _, eta_h, eta_y, dx2, dy2 = _params(50, seed=6)
    k = eta_h * dx2 / eta_y
    for h0 in [1e2, 1e4]:
        y0 = 0.1 * dy2
        h = np.asarray(theory.final_distance(h0, y0, eta_h, eta_y, dx2, dy2))
        # h∞ - h0 = k(dy2 - y0)/h0 · (1 - k·dy2/h0² + ...): the representation barely moves.
        leading = k * (dy2 - y0) / h0
        roundoff = 10 * np.finfo(float).eps * h0 / np.abs(leading)  # from h - h0 in this test
        assert np.all(np.abs((h - h0) / leading - 1) <= 2 * k * dy2 / h0**2 + roundoff)
        assert_close(theory.lazy_limit(h0), h0, rtol=0)


def test_final_distance_is_the_fixed_point_with_the_same_invariant(x64):
    z0, eta_h, eta_y, dx2, dy2 = _params(100, seed=7)
    h_inf = theory.final_distance(z0[:, 0], z0[:, 1], eta_h, eta_y, dx2, dy2)
    z_inf = jnp.stack([h_inf, dy2, 0 * dy2], -1)
    assert_close(theory.invariant(z_inf, eta_h, eta_y, dx2), theory.invariant(z0, eta_h, eta_y, dx2), rtol=1e-12, atol=1e-12)
    f = jax.vmap(lambda z, a, b, c, d: theory.vector_field(0.0, z, (a, b, c, d)))(z_inf, eta_h, eta_y, dx2, dy2)
    assert np.max(np.abs(f)) < 1e-12


def test_loss_curve_matches_half_mse_of_two_outputs(x64):
    # At any time with e0 replaced by the mean-output error, the analytic loss is the
    # half-MSE of the two outputs (one output dimension).
    rng = np.random.default_rng(8)
    yhat = rng.normal(size=(20, 2, 1))
    target = rng.normal(size=(20, 2, 1))
    y = quantities.output_distance(yhat[:, 0], yhat[:, 1])
    w = quantities.alignment(yhat[:, 0], yhat[:, 1], target[:, 0], target[:, 1])
    e = quantities.mean_output_error(yhat[:, 0], yhat[:, 1], target[:, 0], target[:, 1])
    dy2 = quantities.squared_distance(target[:, 0], target[:, 1])
    z = jnp.stack([jnp.ones_like(y), y, w], -1)[:, None, :]
    loss = theory.loss_curve(jnp.zeros(1), z, dy2, 0.3, e)[:, 0]
    expected = jax.vmap(quantities.half_mse)(yhat, target)
    assert_close(loss, expected, rtol=1e-12)
    # and the mean-output term decays as e^{-2 η t}
    later = theory.loss_curve(jnp.array([0.0, 10.0]), z[:, [0, 0]], dy2, 0.3, e)
    assert_close(later[:, 0] - later[:, 1], 0.5 * e * (1 - np.exp(-6.0)), rtol=1e-12)


def test_batched_solve_equals_python_loop(x64):
    # 1,000 parameter sets in one call equal single solves of the same sets: the first,
    # the last and 62 drawn across the batch (each single solve is a separate dispatch).
    z0, *p = _params(1000, seed=9)
    batch = theory.solve(z0, TS, *p)
    picked = np.unique(np.r_[0, 999, np.random.default_rng(9).choice(1000, 62, replace=False)])
    singles = np.stack([np.asarray(theory.solve(z0[i], TS, *(a[i] for a in p)).zs) for i in picked])
    assert_close(np.asarray(batch.zs)[picked], singles, rtol=1e-12, atol=1e-15)


def test_vmap_of_solve_equals_batch(x64):
    z0, *p = _params(seed=10)
    batch = theory.solve(z0, TS, *p)  # no element needs the implicit re-solve here
    assert not np.any(np.asarray(batch.stiff))
    mapped = jax.vmap(lambda z, a, b, c, d: theory.solve(z, TS, a, b, c, d, solver=diffrax.Tsit5()).zs)(z0, *p)
    assert_close(mapped, batch.zs, rtol=1e-10, atol=1e-14)


def test_grad_of_solve_matches_finite_differences(x64):
    z0, *p = _params(seed=11)

    def objective(log_rates):
        eta_h, eta_y = jnp.exp(log_rates[0]), jnp.exp(log_rates[1])
        sol = theory.solve(z0, TS, eta_h, eta_y, p[2], p[3], **TIGHT)
        return jnp.sum(sol.zs ** 2)

    x = jnp.log(jnp.stack([jnp.asarray(p[0]), jnp.asarray(p[1])]))
    g = jax.grad(objective)(x)
    eps = 1e-5
    for idx in [(0, 0), (1, 2), (0, 3)]:
        e = jnp.zeros_like(x).at[idx].set(eps)
        fd = (objective(x + e) - objective(x - e)) / (2 * eps)
        assert_close(g[idx], fd, rtol=1e-5)


def test_singular_trajectories_are_flagged_and_spoil_nothing(x64):
    healthy_z0, *healthy = _params(seed=12)
    # Outputs pointing the wrong way with C < 0: h and y run into 0 together.
    bad = [7, N - 1]
    z0, p = healthy_z0.copy(), [a.copy() for a in healthy]
    z0[bad] = [[3.4e-3, 5.2, 6.9], [1.5e-3, 0.27, 0.43]]
    for a, v in zip(p, [(1.2e-3, 2.9e-2), (0.71, 7.6e-3), (0.94, 3.79), (1.54, 0.635)]):
        a[bad] = v
    sol = theory.solve(z0, TS, *p)
    status = np.asarray(sol.status)
    assert status[7] == Status.HIT_ZERO and status[-1] == Status.HIT_ZERO
    ok = np.ones(len(status), bool)
    ok[bad] = False
    assert np.all(status[ok] == Status.OK)
    assert np.all(np.isfinite(np.asarray(sol.zs)))
    # The stopped trajectories hold a tiny h once stopped.
    assert sol.zs[7, -1, 0] < 1e-6 * z0[7, 0]
    # Their neighbours are exactly what they are in a batch without them.
    alone = theory.solve(healthy_z0, TS, *healthy)
    assert_close(np.asarray(sol.zs)[ok], np.asarray(alone.zs)[ok], rtol=1e-12, atol=1e-15)


def test_stiff_elements_are_resolved_implicitly(x64):
    z0, *p = _params(seed=13)
    # A tiny explicit budget sends most trajectories to the implicit solver.
    sol = theory.solve(z0, TS, *p, max_steps=12)
    assert np.any(np.asarray(sol.stiff)) and np.all(np.asarray(sol.status) == Status.OK)
    ref = theory.solve(z0, TS, *p)
    assert_close(sol.zs, ref.zs, rtol=1e-4, atol=1e-7)
    # With the budget spent the status says so, and values stay finite.
    spent = theory.solve(z0, TS, *p, solver=diffrax.Tsit5(), max_steps=3)
    assert np.all(np.asarray(spent.status) == Status.MAX_STEPS)
    assert np.all(np.isfinite(np.asarray(spent.zs)))


def test_float32_agrees_with_float64(x64):
    z0, *p = _params(seed=14)
    ref = theory.solve(z0, TS, *p)
    sol32 = theory.solve(*(np.asarray(a, np.float32) for a in (z0,)), TS.astype(np.float32),
                         *(np.asarray(a, np.float32) for a in p))
    assert sol32.zs.dtype == jnp.float32
    scale = np.abs(np.asarray(ref.zs)).max(axis=1, keepdims=True)
    assert np.max(np.abs(np.asarray(sol32.zs) - np.asarray(ref.zs)) / scale) < 1e-3


def test_second_call_does_not_recompile(x64):
    from jax import monitoring

    z0, *p = _params(seed=15)
    theory.solve(z0, TS, *p).zs.block_until_ready()
    compiles = []
    listener = lambda name, *a, **k: compiles.append(name) if "backend_compile" in name else None
    monitoring.register_event_duration_secs_listener(listener)
    try:
        z1, *q = _params(seed=16)
        theory.solve(z1, TS, *q).zs.block_until_ready()
    finally:
        monitoring.unregister_event_duration_listener(listener)
    assert compiles == []


GOOD = dict(z0=np.array([0.1, 0.01, 0.0]), ts=TS, eta_h=1e-3, eta_y=1e-3, dx2=1.0, dy2=0.5)


@pytest.mark.parametrize("field, value, words", [
    ("dx2", 0.0, "dx2 must be > 0"),
    ("dx2", -1.0, "dx2 must be > 0"),
    ("eta_h", 0.0, "eta_h must be > 0"),
    ("eta_y", -1e-3, "eta_y must be > 0"),
    ("dy2", -0.1, "dy2 must be >= 0"),
    ("eta_h", np.nan, "eta_h must be finite"),
    ("z0", np.array([0.1, 0.01]), "z0 must have shape [..., 3]"),
    ("z0", "0.1", "z0 must be a real numeric array"),
    ("eta_y", "fast", "eta_y must be a real numeric array"),
    ("solver", "tsit5", "solver must be a diffrax solver"),
    ("stiff_solver", diffrax.Kvaerno5, "stiff_solver must be a diffrax solver"),
    ("rtol", -1e-6, "rtol must be None or a finite number >= 0"),
    ("rtol", np.nan, "rtol must be None or a finite number >= 0"),
    ("atol", "1e-9", "atol must be None or a finite number >= 0"),
    ("h_floor", "small", "h_floor must be a finite number > 0.0 and < 1.0"),
    ("chunk_size", 0, "chunk_size must be an integer >= 1"),
    ("ts", np.array([0.0, np.nan, 2.0]), "ts must be finite"),
    ("ts", np.array([1.0]), "ts must be a 1-D array of at least 2 times"),
    ("ts", TS[::-1], "ts must be strictly increasing"),
    ("eta_h", np.ones(4) * 1e-3, "do not broadcast"),
])
def test_bad_input_raises(field, value, words):
    args = dict(GOOD, **{field: value})
    if field == "eta_h" and np.ndim(value) == 1:
        args["z0"] = np.ones((3, 3)) * [0.1, 0.01, 0.0]
    with pytest.raises(ValueError, match=__import__("re").escape(words)):
        theory.solve(args.pop("z0"), args.pop("ts"), **args)


@pytest.mark.parametrize("call, words", [
    (lambda: theory.final_distance(0.0, 0.1, 1e-3, 1e-3, 1.0, 0.5), "h0 must be > 0"),
    (lambda: theory.final_distance(0.1, 0.1, 1e-3, 1e-3, 0.0, 0.5), "dx2 must be > 0"),
    (lambda: theory.final_distance(0.1, -0.1, 1e-3, 1e-3, 1.0, 0.5), "y0 must be >= 0"),
    (lambda: theory.rich_limit(1e-3, 0.0, 1.0, 0.5), "eta_y must be > 0"),
    (lambda: theory.loss_curve(TS, np.zeros((41, 3)), 0.5, -1.0, 0.1), "eta_mean must be > 0"),
])
def test_bad_input_raises_in_closed_forms(call, words):
    with pytest.raises(ValueError, match=__import__("re").escape(words)):
        call()


@pytest.mark.parametrize("call, words", [
    (lambda: theory.rich_limit(np.ones(3) * 1e-3, np.ones(4) * 1e-3, 1.0, 0.5), "eta_h (3,), eta_y (4,)"),
    (lambda: theory.invariant(GOOD["z0"], 1e-3, 0.0, 1.0), "eta_y must be > 0"),
    (lambda: theory.invariant(GOOD["z0"], np.nan, 1e-3, 1.0), "eta_h must be finite"),
    (lambda: theory.invariant(GOOD["z0"], -1e-3, 1e-3, 1.0), "eta_h must be > 0"),
    (lambda: theory.invariant(GOOD["z0"][:2], 1e-3, 1e-3, 1.0), "z must have shape [..., 3]"),
    (lambda: theory.invariant(np.array([0.5, -1.0, 0.0]), 1e-3, 1e-3, 1.0),
     "y (z[..., 1]) must be >= 0"),
    (lambda: theory.loss_curve(TS, np.zeros((41, 2)), 0.5, 0.1, 0.1), "z must have shape [..., len(ts), 3]"),
    (lambda: theory.loss_curve(TS, np.zeros((40, 3)), 0.5, 0.1, 0.1), "z must have shape [..., len(ts), 3]"),
    (lambda: theory.loss_curve(TS[::-1], np.zeros((41, 3)), 0.5, 0.1, 0.1), "ts must be strictly increasing"),
    (lambda: theory.loss_curve(np.where(TS > 5, np.nan, TS), np.zeros((41, 3)), 0.5, 0.1, 0.1), "ts must be finite"),
    (lambda: theory.loss_curve(TS, np.full((41, 3), np.nan), 0.5, 0.1, 0.1), "z must be finite"),
    (lambda: theory.final_distance("0.1", 0.1, 1e-3, 1e-3, 1.0, 0.5), "h0 must be a real numeric array"),
])
def test_closed_forms_validate_their_arguments(call, words):
    with pytest.raises(ValueError, match=__import__("re").escape(words)):
        call()


def test_bad_elements_get_bad_input_status_and_spoil_nothing(x64):
    z0, *p = _params(seed=20)
    z0 = z0[:6]
    p = [a[:6] for a in p]
    bad_z0, bad_p = z0.copy(), [a.copy() for a in p]
    bad_z0[1] = [np.nan, 0.1, 0.0]
    bad_z0[2, 0] = 0.0           # h0 = 0
    bad_z0[3, 1] = -1e-3         # y0 < 0
    bad_p[0][4] = -1e-3          # eta_h < 0
    bad_p[3][5] = np.nan         # dy2 NaN
    sol = theory.solve(bad_z0, TS, *bad_p)
    status = np.asarray(sol.status)
    np.testing.assert_array_equal(status, [Status.OK] + [Status.BAD_INPUT] * 5)
    assert np.all(np.isnan(np.asarray(sol.zs[1:])))
    alone = theory.solve(z0[0], TS, *(a[0] for a in p))
    np.testing.assert_array_equal(np.asarray(sol.zs[0]), np.asarray(alone.zs))


def test_under_jit_bad_values_report_bad_input(x64):
    z0 = GOOD["z0"]
    run = jax.jit(lambda z, ts, eh, ey: theory.solve(z, ts, eh, ey, 1.0, 0.5).status)
    assert int(run(z0, TS, 1e-3, 1e-3)) == Status.OK
    for eh in (-1e-3, np.nan, 0.0):
        assert int(run(z0, TS, eh, 1e-3)) == Status.BAD_INPUT, eh
    assert int(run(z0, TS, 1e-3, np.inf)) == Status.BAD_INPUT
    assert int(run(z0 * [-1, 1, 1], TS, 1e-3, 1e-3)) == Status.BAD_INPUT
    for ts in (TS[::-1], np.where(TS > 100, np.nan, TS)):
        assert int(run(z0, ts, 1e-3, 1e-3)) == Status.BAD_INPUT


def test_empty_batch_gives_empty_results():
    sol = theory.solve(np.zeros((0, 3)), TS, 1e-3, 1e-3, 1.0, 0.5)
    assert sol.zs.shape == (0, len(TS), 3) and sol.status.shape == (0,)
    sol = theory.solve(np.ones((2, 0, 3)), TS, 1e-3, 1e-3, 1.0, 0.5)
    assert sol.zs.shape == (2, 0, len(TS), 3)


def test_new_batch_size_or_times_in_the_same_bucket_do_not_recompile(x64):
    traces = []

    def field(t, z, args):  # the theory's field, counting how often a program traces it
        traces.append(1)
        return theory.vector_field(t, z, args)

    z0, *p = _params(seed=21)
    theory.solve(z0[:5], TS, *(a[:5] for a in p), vector_field=field).zs.block_until_ready()
    before = len(traces)
    # 5 -> 7 elements (bucket 8); 41 -> 50 save times (bucket 64).
    sol = theory.solve(z0[:7], np.linspace(0.0, 4000.0, 50), *(a[:7] for a in p), vector_field=field)
    assert sol.zs.shape == (7, 50, 3)
    assert len(traces) == before
    # The padded save times do not change the result at the requested ones.
    ref = _scipy_reference(z0[6], tuple(a[6] for a in p), np.linspace(0.0, 4000.0, 50))
    assert np.max(np.abs(np.asarray(sol.zs[6]) - ref) / np.abs(ref).max(0)) < 1e-4
    # A batch in another bucket does compile.
    theory.solve(z0[:9], TS, *(a[:9] for a in p), vector_field=field)
    assert len(traces) > before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_determinism(x64, dtype):
    """Bitwise the same for the same call; round-off level (here: bitwise) across batch
    sizes, positions in the batch and chunk sizes."""
    z0, *p = (np.asarray(a, dtype) for a in _params(seed=22))
    ts = TS.astype(dtype)
    first = np.asarray(theory.solve(z0, ts, *p).zs)
    np.testing.assert_array_equal(np.asarray(theory.solve(z0, ts, *p).zs), first)
    eps = np.finfo(dtype).eps
    scale = np.abs(first).max(axis=1, keepdims=True)
    variants = {
        "alone": [np.asarray(theory.solve(z0[i], ts, *(a[i] for a in p)).zs) for i in range(3)],
        # N copies: the batch's own compiled program, the element at another position.
        "copies": [np.asarray(theory.solve(np.stack([z0[i]] * N), ts, *(a[i] for a in p)).zs[N - 1])
                   for i in range(3)],
        # chunks of 3: 16 elements in five full chunks and one padded one.
        "chunk 3": list(np.asarray(theory.solve(z0, ts, *p, chunk_size=3).zs)[:3]),
        "reversed": list(np.asarray(theory.solve(z0[::-1], ts, *(a[::-1] for a in p)).zs)[::-1][:3]),
    }
    for name, zs in variants.items():
        for i, z in enumerate(zs):
            err = np.max(np.abs(z - first[i]) / scale[i])
            assert err <= 4 * eps, (name, i, err / eps)
