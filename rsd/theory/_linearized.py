"""The un-reduced linearized theory: gradient flow on the encoder and decoder Jacobians.

Around the midpoint of a pair the network is linear: φ(x) ≈ φ̄ + Dh·(x − x̄) and
g(φ) ≈ ȳ + Dy·(φ − φ̄), with encoder Jacobian Dh [hidden, in], decoder Jacobian
Dy [out, hidden] and midpoint output ȳ [out]. With Δx = x2 − x1, Δh = Dh·Δx,
Δŷ = Dy·Δh, outputs ŷ_{1,2} = ȳ ∓ ½·Δŷ and residual r = Δŷ − Δy*, the flow is
(time in training steps)

    dDh/dt = −½·η_h·Dyᵀ·r·Δxᵀ,   dDy/dt = −½·η_y·r·Δhᵀ,   dȳ/dt = −η_ȳ·(ȳ − ȳ*).

This is gradient flow on the pair's loss ½·mean((ŷ − y*)²) = ½·|ȳ − ȳ*|² + ⅛·|r|²
(one output) with the learning rates absorbed into η_h, η_y, η_ȳ; the mean decouples
because the two points sit symmetrically about the midpoint. The ½ is chosen so
that, for ANY Dy, dh/dt = −η_h·dx2·w, and, when Dy = Δŷ·Δhᵀ/h (rank one along Δh, a
form the flow preserves), (h, y, w) obey exactly the 3-D system of
:func:`rsd.theory.vector_field` with the same η_h, η_y; e = |ȳ − ȳ*|² decays as
e0·e^(−2·η_ȳ·t), as in :func:`rsd.theory.loss_curve`.

For every Dy the matrix Dyᵀ·Dy/η_y − Dh·Dhᵀ/η_h is conserved
(:func:`linearized_balance`); the 3-D invariant C is conserved only in the rank-one case.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .. import quantities
from .._validation import (
    as_array,
    check_finite,
    check_increasing,
    check_int_range,
    check_positive,
    check_solver,
    check_tolerance,
)
from ._solve import Status, default_tolerances

__all__ = [
    "LinearizedState",
    "LinearizedSolution",
    "linearized_vector_field",
    "linearized_observables",
    "linearized_balance",
    "solve_linearized",
]


class LinearizedState(eqx.Module):
    """State of the linearized network of one pair (leading axes, e.g. time, allowed).

    ``enc`` is the encoder Jacobian Dh [..., hidden, in], ``dec`` the decoder
    Jacobian Dy [..., out, hidden] and ``mean`` the midpoint output ȳ [..., out].
    """

    enc: jax.Array
    dec: jax.Array
    mean: jax.Array


class LinearizedSolution(eqx.Module):
    """Result of :func:`solve_linearized`.

    ``states`` holds the state at each of ``ts`` (a leading time axis on every leaf).
    After a solve stops early its remaining entries repeat the last state reached.
    ``status`` is a :class:`rsd.theory.Status` value (int32); ``HIT_ZERO`` never
    occurs, since the un-reduced flow has no singularity at h = 0.
    """

    ts: jax.Array
    states: LinearizedState
    status: jax.Array
    num_steps: jax.Array

    @property
    def ok(self):
        return self.status == Status.OK


def linearized_vector_field(t, state, args):
    """d(Dh, Dy, ȳ)/dt of the linearized pair, diffrax signature ``(t, y, args)``.

    With args = (eta_h, eta_y, eta_mean, dx, dy_target, mean_target) and r = Dy·Dh·Δx − Δy*:

        dDh/dt = −½·η_h·Dyᵀ·r·Δxᵀ,   dDy/dt = −½·η_y·r·(Dh·Δx)ᵀ,   dȳ/dt = −η_ȳ·(ȳ − ȳ*)
    """
    del t
    eta_h, eta_y, eta_mean, dx, dy_target, mean_target = args
    dh = state.enc @ dx
    residual = state.dec @ dh - dy_target
    d_enc = -0.5 * eta_h * jnp.outer(state.dec.T @ residual, dx)
    d_dec = -0.5 * eta_y * jnp.outer(residual, dh)
    d_mean = -eta_mean * (state.mean - mean_target)
    return LinearizedState(enc=d_enc, dec=d_dec, mean=d_mean)


def linearized_observables(state, dx, dy_target, mean_target):
    """(z, e): z = (h, y, w) on the last axis and e = |ȳ − ȳ*|², from rsd.quantities.

    The pair is rebuilt about its midpoint, φ_{1,2} = ∓½·Dh·Δx, ŷ_{1,2} = ȳ ∓ ½·Dy·Dh·Δx,
    y*_{1,2} = ȳ* ∓ ½·Δy*; leading axes of ``state`` (e.g. time) broadcast.
    """
    dx = jnp.asarray(dx)
    dy_target = jnp.asarray(dy_target)
    mean_target = jnp.asarray(mean_target)
    dh = jnp.einsum("...hi,...i->...h", state.enc, dx)
    dyhat = jnp.einsum("...oh,...h->...o", state.dec, dh)
    mean = state.mean
    z = quantities.pair_quantities(
        -0.5 * dh, 0.5 * dh,
        mean - 0.5 * dyhat, mean + 0.5 * dyhat,
        mean_target - 0.5 * dy_target, mean_target + 0.5 * dy_target,
    )
    e = quantities.mean_output_error(
        mean - 0.5 * dyhat, mean + 0.5 * dyhat,
        mean_target - 0.5 * dy_target, mean_target + 0.5 * dy_target,
    )
    return z, e


def linearized_balance(state, eta_h, eta_y):
    """Q = Dyᵀ·Dy/η_y − Dh·Dhᵀ/η_h [..., hidden, hidden], conserved by the flow for any Dy.

    The rates must be finite and > 0 (checked on the host; ``ValueError`` naming them).
    """
    check_positive("eta_h", eta_h)
    check_positive("eta_y", eta_y)
    dec, enc = state.dec, state.enc
    return (jnp.einsum("...oh,...ok->...hk", dec, dec) / eta_y
            - jnp.einsum("...hi,...ki->...hk", enc, enc) / eta_h)


def solve_linearized(
    state0,
    ts,
    dx,
    dy_target,
    mean_target,
    eta_h,
    eta_y,
    eta_mean,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 4096,
    solver: diffrax.AbstractSolver | None = None,
):
    """Integrate :func:`linearized_vector_field` from ``state0`` at ``ts[0]``; save at ``ts``.

    ``ts`` are training steps (strictly increasing); ``dx`` = x2 − x1 [in],
    ``dy_target`` = y2* − y1* [out], ``mean_target`` = (y1* + y2*)/2 [out]; the
    rates are scalars. Returns a :class:`LinearizedSolution`; nothing raises
    inside the solve (``throw=False``), failures show in ``status``.

    Written for ONE pair. Batch with ``jax.vmap`` over positional arguments and bind
    the keyword options with ``functools.partial`` (vmap would map keywords), e.g.::

        f = functools.partial(solve_linearized, rtol=1e-8, atol=1e-10)
        jax.vmap(f, in_axes=(0, None, 0, None, None, None, None, None))(
            states0, ts, dxs, dy_target, mean_target, eta_h, eta_y, eta_mean)

    Tolerances default to rtol=1e-6, atol=1e-9 (float64) or rtol=1e-5, atol=1e-8
    (float32); the solver defaults to Tsit5 with a PID step-size controller.
    """
    if not isinstance(state0, LinearizedState):
        raise ValueError(f"state0 must be a LinearizedState(enc, dec, mean); got {type(state0).__name__}.")
    ts = as_array("ts", ts)
    dx, dy_target, mean_target = (as_array(name, a) for name, a in
                                  (("dx", dx), ("dy_target", dy_target), ("mean_target", mean_target)))
    state0 = LinearizedState(*(as_array(f"state0.{name}", getattr(state0, name))
                               for name in ("enc", "dec", "mean")))
    eta_h, eta_y, eta_mean = (as_array(name, a) for name, a in
                              (("eta_h", eta_h), ("eta_y", eta_y), ("eta_mean", eta_mean)))
    check_tolerance("rtol", rtol)
    check_tolerance("atol", atol)
    _check_args(state0, ts, dx, dy_target, mean_target, eta_h, eta_y, eta_mean, max_steps)
    check_solver("solver", solver)

    dtype = jnp.promote_types(jnp.result_type(state0.enc, state0.dec, state0.mean, dx, dy_target,
                                              mean_target, eta_h, eta_y, eta_mean), jnp.float32)
    rtol, atol = default_tolerances(dtype, rtol, atol)
    cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    state0 = jax.tree_util.tree_map(cast, state0)
    args = tuple(cast(a) for a in (eta_h, eta_y, eta_mean, dx, dy_target, mean_target))
    return _solve(state0, cast(ts), args, float(rtol), float(atol), max_steps,
                  solver if solver is not None else diffrax.Tsit5())


@eqx.filter_jit
def _solve(state0, ts, args, rtol, atol, max_steps, solver):
    # Saving t1 as well gives the last state reached when the solve stops early.
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts), diffrax.SubSaveAt(t1=True)])
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(linearized_vector_field), solver, ts[0], ts[-1], None, state0, args,
        saveat=saveat, stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, throw=False,
    )
    saved, last = sol.ys
    reached = sol.ts[0] <= sol.ts[1][-1]

    def fill(at_ts, end):
        mask = reached.reshape(reached.shape + (1,) * (at_ts.ndim - 1))
        return jnp.where(mask & jnp.isfinite(at_ts), at_ts, end[-1])

    states = jax.tree_util.tree_map(fill, saved, last)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf))
                                for leaf in jax.tree_util.tree_leaves(last)]))
    result = sol.result
    status = jnp.where(
        (result == diffrax.RESULTS.successful) & finite, Status.OK,
        jnp.where(result == diffrax.RESULTS.max_steps_reached, Status.MAX_STEPS, Status.FAILED))
    return LinearizedSolution(ts=ts, states=states, status=status.astype(jnp.int32),
                              num_steps=sol.stats["num_steps"])


def _check_args(state0, ts, dx, dy_target, mean_target, eta_h, eta_y, eta_mean, max_steps):
    # Shapes are static, so these checks also hold (per element) under jit and vmap.
    named = {"state0.enc": state0.enc, "state0.dec": state0.dec, "state0.mean": state0.mean,
             "dx": dx, "dy_target": dy_target, "mean_target": mean_target}
    wanted = {"state0.enc": 2, "state0.dec": 2, "state0.mean": 1,
              "dx": 1, "dy_target": 1, "mean_target": 1}
    for name, ndim in wanted.items():
        if named[name].ndim != ndim:
            raise ValueError(f"{name} must be {ndim}-D for one pair (vmap to batch); "
                             f"got shape {named[name].shape}.")
    hidden, n_in = state0.enc.shape
    n_out = state0.dec.shape[0]
    if dx.shape[0] != n_in:
        raise ValueError(f"dx must have length {n_in} = state0.enc.shape[1] (input dimension); "
                         f"got shape {dx.shape}.")
    if state0.dec.shape[1] != hidden:
        raise ValueError(f"state0.dec must have shape [out, {hidden}] to match state0.enc "
                         f"[{hidden}, {n_in}]; got shape {state0.dec.shape}.")
    for name in ("state0.mean", "dy_target", "mean_target"):
        if named[name].shape != (n_out,):
            raise ValueError(f"{name} must have shape ({n_out},) = (state0.dec.shape[0],); "
                             f"got shape {named[name].shape}.")
    for name, rate in (("eta_h", eta_h), ("eta_y", eta_y), ("eta_mean", eta_mean)):
        if jnp.ndim(rate) != 0:
            raise ValueError(f"{name} must be a scalar for one pair (vmap to batch); "
                             f"got shape {jnp.shape(rate)}.")
        check_positive(name, rate)
    for name, value in named.items():
        check_finite(name, value)
    check_increasing("ts", ts)
    check_int_range("max_steps", max_steps, 1)
