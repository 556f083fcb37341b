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

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .. import quantities
from .._batching import bucket, chunk_width, chunked_vmap, pad_rows
from .._validation import (
    as_array,
    check_broadcast,
    check_finite,
    check_increasing,
    check_int_range,
    check_positive,
    check_solver,
    check_tolerance,
)
from ._solve import Status, default_tolerances, solve_trajectory

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

    ``states`` holds the state at each of ``ts``: every leaf is [..., len(ts), ...], the
    batch's leading shape, then time, then the state's own axes.
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

    Args:
        t: time in training steps (unused).
        state: a :class:`LinearizedState` of ONE pair: Dh [hidden, in], Dy [out, hidden],
            ȳ [out] (vmap it for a batch).
        args: the rates η_h, η_y, η_ȳ (per training step), Δx = x2 − x1 [in],
            Δy* = y2* − y1* [out] and ȳ* = (y1* + y2*)/2 [out].

    Returns:
        The time derivative as a :class:`LinearizedState` of the same shapes.
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

    Args:
        state: a :class:`LinearizedState`, e.g. ``LinearizedSolution.states``.
        dx: Δx = x2 − x1 [..., in].
        dy_target: Δy* = y2* − y1* [..., out].
        mean_target: ȳ* = (y1* + y2*)/2 [..., out].

    Returns:
        (z [..., 3], e [...]), computed by :mod:`rsd.quantities`.
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
    chunk_size: int = 256,
):
    """Integrate :func:`linearized_vector_field` from ``state0`` at ``ts[0]``; save at ``ts``.

    ``ts`` are training steps (1-D, strictly increasing) shared by every pair; per pair
    ``dx`` = x2 − x1 [..., in], ``dy_target`` = y2* − y1* [..., out], ``mean_target`` =
    (y1* + y2*)/2 [..., out], ``state0`` = (Dh [..., hidden, in], Dy [..., out, hidden],
    ȳ [..., out]) and the rates [...]. The leading dimensions of all of them broadcast
    together into the batch: it batches itself like :func:`solve` (power-of-two buckets,
    ``chunk_size`` pairs at a time), and also works under ``jax.vmap`` and ``jit``.
    Returns a :class:`LinearizedSolution` whose ``states`` leaves are [..., len(ts), ...]
    and ``status``, ``num_steps`` [...]; nothing raises inside the solve, failures show
    in ``status``.

    Each pair is solved by rsd's one single-trajectory solve (that of :func:`solve`, with
    no h-floor): adaptive diffrax steps, every step saved, a quintic Hermite interpolant
    at ``ts``. Tolerances default to rtol=1e-6, atol=1e-9 (float64) or rtol=1e-5,
    atol=1e-8 (float32); the solver defaults to Tsit5 with a PID step-size controller.
    Options, shapes and (outside ``jit``) values are checked on the host: ``ValueError``
    naming the argument.
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
    batch = _check_args(state0, ts, dx, dy_target, mean_target, eta_h, eta_y, eta_mean, max_steps)
    check_int_range("chunk_size", chunk_size, 1)
    check_solver("solver", solver)

    dtype = jnp.promote_types(jnp.result_type(state0.enc, state0.dec, state0.mean, dx, dy_target,
                                              mean_target, eta_h, eta_y, eta_mean), jnp.float32)
    rtol, atol = default_tolerances(dtype, rtol, atol)
    n, n_times = math.prod(batch), ts.shape[0]
    ts = ts.astype(dtype)

    def flat(a, tail):
        return jnp.broadcast_to(a.astype(dtype), batch + tail).reshape((n,) + tail)

    hidden, n_in = state0.enc.shape[-2:]
    n_out = state0.dec.shape[-2]
    states0 = LinearizedState(flat(state0.enc, (hidden, n_in)), flat(state0.dec, (n_out, hidden)),
                              flat(state0.mean, (n_out,)))
    args = (flat(eta_h, ()), flat(eta_y, ()), flat(eta_mean, ()), flat(dx, (n_in,)),
            flat(dy_target, (n_out,)), flat(mean_target, (n_out,)))
    if n == 0:
        states = jax.tree_util.tree_map(lambda a: jnp.zeros(batch + (n_times,) + a.shape[1:], dtype), states0)
        return LinearizedSolution(ts=ts, states=states, status=jnp.zeros(batch, jnp.int32),
                                  num_steps=jnp.zeros(batch, jnp.int32))
    states0, args = pad_rows((states0, args), bucket(n))
    states, status, steps = _solve(states0, ts, args, float(rtol), float(atol), int(max_steps),
                                   solver if solver is not None else diffrax.Tsit5(),
                                   chunk_width(chunk_size, n))
    unpad = lambda a: a[:n].reshape(batch + a.shape[1:])  # noqa: E731
    return LinearizedSolution(ts=ts, states=jax.tree_util.tree_map(unpad, states),
                              status=unpad(status), num_steps=unpad(steps))


@eqx.filter_jit
def _solve(states0, ts, args, rtol, atol, max_steps, solver, chunk):
    """Flat, padded batch of pairs: leaves of ``states0`` and ``args`` [n, ...]."""
    def one(state0, pair_args):
        return tuple(solve_trajectory(state0, ts, pair_args, field=linearized_vector_field, solver=solver,
                                      rtol=rtol, atol=atol, max_steps=max_steps, h_floor=None))

    return chunked_vmap(one, (states0, args), chunk)


def _check_args(state0, ts, dx, dy_target, mean_target, eta_h, eta_y, eta_mean, max_steps):
    """Host checks of shapes (static, so they hold under jit and vmap too) and, for
    concrete inputs, values; returns the batch shape."""
    named = {"state0.enc": state0.enc, "state0.dec": state0.dec, "state0.mean": state0.mean,
             "dx": dx, "dy_target": dy_target, "mean_target": mean_target}
    wanted = {"state0.enc": 2, "state0.dec": 2, "state0.mean": 1,
              "dx": 1, "dy_target": 1, "mean_target": 1}
    layout = {"state0.enc": "[..., hidden, in]", "state0.dec": "[..., out, hidden]",
              "state0.mean": "[..., out]", "dx": "[..., in]", "dy_target": "[..., out]",
              "mean_target": "[..., out]"}
    for name, ndim in wanted.items():
        if named[name].ndim < ndim:
            raise ValueError(f"{name} must have shape {layout[name]}; got shape {named[name].shape}.")
    hidden, n_in = state0.enc.shape[-2:]
    n_out = state0.dec.shape[-2]
    if dx.shape[-1] != n_in:
        raise ValueError(f"dx must have length {n_in} = state0.enc.shape[-1] (input dimension) on its "
                         f"last axis; got shape {dx.shape}.")
    if state0.dec.shape[-1] != hidden:
        raise ValueError(f"state0.dec must have shape [..., out, {hidden}] to match state0.enc "
                         f"[..., {hidden}, {n_in}]; got shape {state0.dec.shape}.")
    for name in ("state0.mean", "dy_target", "mean_target"):
        if named[name].shape[-1] != n_out:
            raise ValueError(f"{name} must have shape [..., {n_out}] (last axis = state0.dec.shape[-2]); "
                             f"got shape {named[name].shape}.")
    for name, rate in (("eta_h", eta_h), ("eta_y", eta_y), ("eta_mean", eta_mean)):
        check_positive(name, rate)
    for name, value in named.items():
        check_finite(name, value)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D array of at least 2 times; got shape {ts.shape}.")
    check_increasing("ts", ts)
    check_int_range("max_steps", max_steps, 1)
    return tuple(int(d) for d in check_broadcast({
        "state0.enc[..., 0, 0]": state0.enc.shape[:-2], "state0.dec[..., 0, 0]": state0.dec.shape[:-2],
        "state0.mean[..., 0]": state0.mean.shape[:-1], "dx[..., 0]": dx.shape[:-1],
        "dy_target[..., 0]": dy_target.shape[:-1], "mean_target[..., 0]": mean_target.shape[:-1],
        "eta_h": eta_h.shape, "eta_y": eta_y.shape, "eta_mean": eta_mean.shape}))
