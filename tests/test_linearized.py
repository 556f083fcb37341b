"""The un-reduced linearized theory against the 3-D effective theory (DESIGN.md §1)."""

import functools
import re

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from rsd import quantities, theory
from rsd.theory import LinearizedState, Status

from .helpers import assert_close, three_d_field

N_IN, HIDDEN, OUT = 3, 7, 2
ETA_H, ETA_Y, ETA_MEAN = 0.05, 0.1, 0.02
TS = np.linspace(0.0, 400.0, 81)  # training steps; w has decayed to ~1e-6 by the end
TOL = dict(rtol=1e-11, atol=1e-13)
SCIPY_TOL = dict(method="DOP853", rtol=1e-12, atol=1e-14)


def _pair(seed=0, n_in=N_IN, hidden=HIDDEN, out=OUT):
    """A random pair and two initial states: Dy rank one along Δh, and Dy random."""
    rng = np.random.default_rng(seed)
    dx, dy_target, mean_target = rng.normal(size=n_in), rng.normal(size=out), rng.normal(size=out)
    enc = 0.3 * rng.normal(size=(hidden, n_in))
    dh = enc @ dx
    dec_rank_one = np.outer(0.8 * rng.normal(size=out), dh) / np.linalg.norm(dh)
    dec_random = 0.3 * rng.normal(size=(out, hidden))
    mean = rng.normal(size=out)
    return (dx, dy_target, mean_target,
            LinearizedState(enc, dec_rank_one, mean), LinearizedState(enc, dec_random, mean))


@functools.lru_cache(maxsize=None)
def _solved():
    """Both initial states solved as one batch and the 3-D theory from their (h0, y0, w0).

    Cached: the diffrax compiles dominate the run time. Call only under the x64 fixture.
    """
    dx, dy_target, mean_target, rank_one, random = _pair()
    states0 = jax.tree_util.tree_map(lambda a, b: np.stack([a, b]), rank_one, random)
    sol = theory.solve_linearized(states0, TS, dx, dy_target, mean_target, ETA_H, ETA_Y, ETA_MEAN,
                                  **TOL)
    z, e = theory.linearized_observables(sol.states, dx, dy_target, mean_target)
    dx2, dy2 = float(dx @ dx), float(dy_target @ dy_target)
    ref = theory.solve(z[:, 0], TS, ETA_H, ETA_Y, dx2, dy2, solver=diffrax.Tsit5(), **TOL)
    assert np.all(np.asarray(sol.status) == Status.OK)
    assert np.all(np.asarray(ref.status) == Status.OK)
    return sol, np.asarray(z), np.asarray(e), np.asarray(ref.zs), dx2, dy2


# The independent reference: the same flows written out in numpy, solved by scipy.

def _matrix_flow(t, v, hidden, n_in, dx, dy_target, mean_target):
    """Gradient flow of the linearized pair (DESIGN.md §1), state flattened (Dh, Dy, ȳ):
    dDh/dt = −½·η_h·Dyᵀ·r·Δxᵀ, dDy/dt = −½·η_y·r·(Dh·Δx)ᵀ, dȳ/dt = −η_ȳ·(ȳ − ȳ*),
    r = Dy·Dh·Δx − Δy*."""
    n_out = dy_target.size
    enc = v[:hidden * n_in].reshape(hidden, n_in)
    dec = v[hidden * n_in:hidden * (n_in + n_out)].reshape(n_out, hidden)
    mean = v[hidden * (n_in + n_out):]
    dh = enc @ dx
    r = dec @ dh - dy_target
    return np.concatenate([(-0.5 * ETA_H * np.outer(dec.T @ r, dx)).ravel(),
                           (-0.5 * ETA_Y * np.outer(r, dh)).ravel(),
                           -ETA_MEAN * (mean - mean_target)])


@functools.lru_cache(maxsize=None)
def _scipy_reference():
    """For both initial states of _pair(): the states (Dh, Dy, ȳ) at TS from scipy on the
    matrix flow, their (h, y, w) and e computed here in numpy from the definitions, and
    scipy's 3-D solution from the same (h0, y0, w0). Float64 throughout."""
    dx, dy_target, mean_target, *states0 = _pair()
    hidden, n_in = states0[0].enc.shape
    n_out = dy_target.size
    out = []
    for s0 in states0:
        v0 = np.concatenate([s0.enc.ravel(), s0.dec.ravel(), s0.mean])
        run = solve_ivp(_matrix_flow, (TS[0], TS[-1]), v0, t_eval=TS,
                        args=(hidden, n_in, dx, dy_target, mean_target), **SCIPY_TOL)
        assert run.success
        v = run.y.T
        enc = v[:, :hidden * n_in].reshape(-1, hidden, n_in)
        dec = v[:, hidden * n_in:hidden * (n_in + n_out)].reshape(-1, n_out, hidden)
        mean = v[:, hidden * (n_in + n_out):]
        dyhat = np.einsum("toh,thi,i->to", dec, enc, dx)  # ŷ2 − ŷ1
        dphi = np.einsum("thi,i->th", enc, dx)            # φ(x2) − φ(x1)
        y = np.sum(dyhat ** 2, -1)
        z = np.stack([np.sum(dphi ** 2, -1), y, y - dyhat @ dy_target], -1)
        e = np.sum((mean - mean_target) ** 2, -1)
        dx2, dy2 = float(dx @ dx), float(dy_target @ dy_target)
        run3 = solve_ivp(three_d_field, (TS[0], TS[-1]), z[0], t_eval=TS,
                         args=(ETA_H, ETA_Y, dx2, dy2), **SCIPY_TOL)
        assert run3.success
        out.append(dict(enc=enc, dec=dec, mean=mean, z=z, e=e, z3=run3.y.T))
    return out


def test_solutions_match_scipy_on_the_matrix_flow(x64):
    sol, z, e, z_ref, _, _ = _solved()
    # Both solvers run at rtol ≤ 1e-11; measured agreement ≈ 5e-12 (absolute).
    for i, ref in enumerate(_scipy_reference()):
        for name in ("enc", "dec", "mean"):
            assert_close(np.asarray(getattr(sol.states, name)[i]), ref[name], rtol=1e-9, atol=1e-10,
                         err_msg=f"{name} of case {i}")
        assert_close(z[i], ref["z"], rtol=1e-9, atol=1e-10, err_msg=f"(h, y, w) of case {i}")
        assert_close(e[i], ref["e"], rtol=1e-9, atol=1e-11, err_msg=f"e of case {i}")
        assert_close(z_ref[i], ref["z3"], rtol=1e-9, atol=1e-10, err_msg=f"3-D theory of case {i}")


def test_rank_one_reduces_to_the_3d_theory(x64):
    sol, z, _, z_ref, dx2, dy2 = _solved()
    assert z.dtype == np.float64
    # Same (h, y, w) trajectory as the closed 3-D system, to both solvers' tolerance.
    assert_close(z[0], z_ref[0], rtol=1e-8, atol=1e-10)
    # ... ending at the closed-form end state with a perfect fit.
    h_inf = theory.final_distance(z[0, 0, 0], z[0, 0, 1], ETA_H, ETA_Y, dx2, dy2)
    assert_close(z[0, -1, 0], h_inf, rtol=1e-5)
    assert abs(z[0, -1, 2]) < 1e-5
    # The flow keeps Dy rank one along Δh: its second singular value stays at round-off.
    s = np.linalg.svd(np.asarray(sol.states.dec[0]), compute_uv=False)
    assert np.all(s[:, 1] < 1e-12 * s[:, 0])


def test_random_decoder_deviates_from_the_3d_theory(x64):
    """A random Dy is not rank one along Δh, so (h, y, w) leave the 3-D theory: rsd's
    deviation equals the one scipy gives on both flows, and it is the flow's (orders of
    magnitude above both solvers' tolerances), not the solvers' error."""
    _, z, _, z_ref, _, dy2 = _solved()
    ref = _scipy_reference()[1]
    deviation = np.abs(z[1] - z_ref[1]).max(axis=0) / np.abs(z_ref[1]).max(axis=0)
    expected = np.abs(ref["z"] - ref["z3"]).max(axis=0) / np.abs(ref["z3"]).max(axis=0)
    print(f"max |Δ(h, y, w)| / max|(h, y, w)|, random Dy: rsd {deviation}, scipy {expected}")
    assert_close(deviation, expected, rtol=1e-8)
    assert np.all(expected > 1e-4)  # tolerances 1e-11 (rsd) and 1e-12 (scipy)
    h_end_dev = (z[1, -1, 0] - z_ref[1, -1, 0]) / z_ref[1, -1, 0]
    assert_close(h_end_dev, (ref["z"][-1, 0] - ref["z3"][-1, 0]) / ref["z3"][-1, 0], rtol=1e-8)
    assert abs(h_end_dev) > 1e-4
    # The un-reduced network still fits the targets (the fixed point y = dy2, w = 0);
    # it just ends elsewhere than the 3-D end state.
    assert abs(z[1, -1, 1] - dy2) < 1e-4 * dy2 and abs(z[1, -1, 2]) < 1e-5


def test_invariants_and_mean_output(x64):
    sol, z, e, _, dx2, _ = _solved()
    c = np.asarray(theory.invariant(z, ETA_H, ETA_Y, dx2))
    # C = h − (η_h·dx2/η_y)·y/h of the 3-D theory: conserved with Dy rank one; with a
    # random Dy it drifts, exactly as along scipy's solution of the matrix flow.
    assert np.ptp(c[0]) < 1e-9 * abs(c[0, 0])
    z_scipy = _scipy_reference()[1]["z"]
    c_scipy = z_scipy[:, 0] - ETA_H * dx2 / ETA_Y * z_scipy[:, 1] / z_scipy[:, 0]
    assert_close(c[1], c_scipy, rtol=1e-9, atol=1e-10)
    assert np.ptp(c_scipy) > 1e-4 * abs(c_scipy[0])  # far above the tolerances
    # Dyᵀ·Dy/η_y − Dh·Dhᵀ/η_h is conserved for any Dy (to the solver's tolerance).
    q = np.asarray(theory.linearized_balance(sol.states, ETA_H, ETA_Y))
    assert np.max(np.abs(q - q[:, :1])) < 1e-9 * np.max(np.abs(q))
    # The mean-output error decays as e0·e^(−2·η_ȳ·t).
    assert_close(e, e[:, :1] * np.exp(-2.0 * ETA_MEAN * TS), rtol=1e-7)


def test_batch_and_vmap_equal_loop(x64):
    sol, *_ = _solved()
    dx, dy_target, mean_target, rank_one, random = _pair()
    states0 = jax.tree_util.tree_map(lambda a, b: np.stack([a, b]), rank_one, random)
    solve = functools.partial(theory.solve_linearized, **TOL)
    mapped = jax.vmap(solve, in_axes=(0, None, None, None, None, None, None, None))(
        states0, TS, dx, dy_target, mean_target, ETA_H, ETA_Y, ETA_MEAN)
    for i, state0 in enumerate((rank_one, random)):
        one = solve(state0, TS, dx, dy_target, mean_target, ETA_H, ETA_Y, ETA_MEAN)
        assert int(one.status) == Status.OK
        for batched in (sol, mapped):
            assert_close(one.states, jax.tree_util.tree_map(lambda a: a[i], batched.states), rtol=1e-12)


def _rates_args(dx, dy_target, mean_target):
    return tuple(jnp.asarray(a) for a in (ETA_H, ETA_Y, ETA_MEAN, dx, dy_target, mean_target))


def test_vector_field_closes_on_3d_system(x64):
    """Instantaneous check, no solver: d(h, y, w)/dt along the flow, by forward-mode AD."""
    dx, dy_target, mean_target, rank_one, random = _pair(seed=3, n_in=4, hidden=5, out=3)
    args = _rates_args(dx, dy_target, mean_target)
    dx2, dy2 = dx @ dx, dy_target @ dy_target

    @jax.jit
    def rate_of_z(state):
        velocity = theory.linearized_vector_field(0.0, state, args)
        observe = lambda s: theory.linearized_observables(s, dx, dy_target, mean_target)[0]
        return jax.jvp(observe, (state,), (velocity,))

    z, dz = rate_of_z(jax.tree_util.tree_map(jnp.asarray, rank_one))
    assert_close(dz, theory.vector_field(0.0, z, (ETA_H, ETA_Y, dx2, dy2)), rtol=1e-12, atol=1e-15)
    # dh/dt = −η_h·dx2·w holds for any decoder; dy/dt does not.
    z, dz = rate_of_z(jax.tree_util.tree_map(jnp.asarray, random))
    assert_close(dz[0], -ETA_H * dx2 * z[2], rtol=1e-12)
    assert abs(dz[1] - theory.vector_field(0.0, z, (ETA_H, ETA_Y, dx2, dy2))[1]) > 1e-3 * abs(dz[1])


def test_flow_is_gradient_flow_on_the_pair_loss(x64):
    """One output: the flow is −(2η_h, 2η_y, η_ȳ)·∇ of the training loss, and that loss is L(t)."""
    dx, dy_target, mean_target, _, state = _pair(seed=5, n_in=3, hidden=4, out=1)
    state = jax.tree_util.tree_map(jnp.asarray, state)
    targets = jnp.stack([mean_target - 0.5 * dy_target, mean_target + 0.5 * dy_target])

    def loss(s):
        dyhat = s.dec @ s.enc @ dx
        outputs = jnp.stack([s.mean - 0.5 * dyhat, s.mean + 0.5 * dyhat])
        return quantities.half_mse(outputs, targets)

    grad = jax.jit(jax.grad(loss))(state)
    flow = theory.linearized_vector_field(0.0, state, _rates_args(dx, dy_target, mean_target))
    assert_close(flow.enc, -2.0 * ETA_H * grad.enc, rtol=1e-12)
    assert_close(flow.dec, -2.0 * ETA_Y * grad.dec, rtol=1e-12)
    assert_close(flow.mean, -ETA_MEAN * grad.mean, rtol=1e-12)
    # L = ¼·(2e + w + ½(dy2 − y)): loss_curve at t = 0 from the observables.
    z, e = theory.linearized_observables(state, dx, dy_target, mean_target)
    curve = theory.loss_curve(jnp.zeros(1), z[None], dy_target @ dy_target, ETA_MEAN, e)
    assert_close(curve[0], loss(state), rtol=1e-12)


def test_step_budget_is_reported_not_raised():
    dx, dy_target, mean_target, rank_one, _ = _pair()
    sol = theory.solve_linearized(rank_one, TS, dx, dy_target, mean_target,
                                  ETA_H, ETA_Y, ETA_MEAN, max_steps=2)
    assert int(sol.status) == Status.MAX_STEPS and not bool(sol.ok)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(sol.states))


@pytest.mark.parametrize("change, name", [
    (dict(eta_h=0.0), "eta_h"),
    (dict(eta_y=-1.0), "eta_y"),
    (dict(eta_mean=np.nan), "eta_mean"),
    (dict(eta_h=np.ones(2), eta_y=np.ones(3)), "do not broadcast together"),
    (dict(dx=np.ones(N_IN + 1)), "dx"),
    (dict(dy_target=np.ones(OUT + 1)), "dy_target"),
    (dict(mean_target=np.ones((OUT, 1))), "mean_target"),
    (dict(ts=TS[::-1]), "ts"),
    (dict(max_steps=0), "max_steps"),
    (dict(solver="tsit5"), "solver"),
    (dict(rtol=-1e-6), "rtol must be None or a finite number >= 0"),
    (dict(rtol=np.nan), "rtol must be None or a finite number >= 0"),
    (dict(atol="1e-9"), "atol must be None or a finite number >= 0"),
    (dict(eta_h="fast"), "eta_h must be a real numeric array"),
    (dict(dx="x"), "dx must be a real numeric array"),
    (dict(state0=(1.0, 2.0, 3.0)), "state0 must be a LinearizedState"),
])
def test_bad_arguments_raise(change, name):
    dx, dy_target, mean_target, state0, _ = _pair()
    kwargs = dict(state0=state0, ts=TS, dx=dx, dy_target=dy_target, mean_target=mean_target,
                  eta_h=ETA_H, eta_y=ETA_Y, eta_mean=ETA_MEAN)
    kwargs.update(change)
    with pytest.raises(ValueError, match=name):
        theory.solve_linearized(**kwargs)


@pytest.mark.parametrize("field, bad, name", [
    ("dec", np.ones((OUT, HIDDEN + 1)), "state0.dec"),
    ("enc", np.where(np.eye(HIDDEN, N_IN) > 0, np.nan, 1.0), "state0.enc"),
    ("mean", np.ones(OUT + 1), "state0.mean"),
])
def test_bad_state_raises(field, bad, name):
    dx, dy_target, mean_target, state0, _ = _pair()
    fields = dict(enc=state0.enc, dec=state0.dec, mean=state0.mean)
    fields[field] = bad
    with pytest.raises(ValueError, match=name):
        theory.solve_linearized(LinearizedState(**fields), TS, dx, dy_target, mean_target,
                                ETA_H, ETA_Y, ETA_MEAN)


@pytest.mark.parametrize("eta_h, eta_y, name", [
    (0.0, ETA_Y, "eta_h must be > 0"),
    (-ETA_H, ETA_Y, "eta_h must be > 0"),
    (ETA_H, 0.0, "eta_y must be > 0"),
    (ETA_H, np.nan, "eta_y must be finite"),
])
def test_balance_rejects_bad_rates(eta_h, eta_y, name):
    _, _, _, state0, _ = _pair()
    with pytest.raises(ValueError, match=re.escape(name)):
        theory.linearized_balance(state0, eta_h, eta_y)
