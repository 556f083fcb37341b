"""Batched, failure-tolerant solves of the 3-D effective theory with diffrax."""

from __future__ import annotations

import enum
import math
from typing import Callable, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from .._batching import bucket, chunk_width, chunked_vmap, pad_rows
from .._validation import (
    as_array,
    check_broadcast,
    check_increasing,
    check_int_range,
    check_nonnegative,
    check_positive,
    check_real,
    check_solver,
    check_tolerance,
    check_vector_field,
)
from ._dynamics import _final_distance, vector_field

__all__ = ["Status", "Solution", "solve", "Trajectory", "solve_trajectory", "default_tolerances", "H_FLOOR"]

H_FLOOR = 1e-6
"""Default relative floor on h (of :func:`solve`, :func:`solve_trajectory` and the fits):
a trajectory stops when h < H_FLOOR·min(h0, h∞)."""

FIRST_BUDGET = 128
"""Step budget of the first explicit pass of :func:`solve` (see its docstring)."""


class Status(enum.IntEnum):
    """Per-trajectory outcome of :func:`solve` (stored as int32 in ``Solution.status``)."""

    OK = 0
    """Integrated to the last time."""
    HIT_ZERO = 1
    """h fell below ``h_floor``: the trajectory ran into the singularity at h = 0."""
    MAX_STEPS = 2
    """The step budget was spent (by the implicit solver too, when it was tried)."""
    FAILED = 3
    """The solver failed otherwise: a non-finite state or a collapsed step size."""
    BAD_INPUT = 4
    """This element's input is invalid, so it was not solved: z0 not finite, h0 ≤ 0
    or y0 < 0; a rate or dx2 not finite and > 0, dy2 not finite and ≥ 0; or (under
    ``jit``, where the host checks cannot run) ``ts`` not finite and strictly
    increasing. Its ``zs`` are NaN."""


class Solution(eqx.Module):
    """Result of :func:`solve`.

    ``zs[..., i, :]`` is (h, y, w) at ``ts[i]``. After a trajectory stops early
    (status ``HIT_ZERO`` or ``FAILED``) its remaining entries hold the last state
    reached, so ``zs`` is finite wherever the solver produced a finite state;
    elements with status ``BAD_INPUT`` hold NaN.
    """

    ts: jax.Array
    zs: jax.Array
    status: jax.Array
    num_steps: jax.Array
    stiff: jax.Array
    """True where the trajectory was re-solved with the implicit solver."""

    @property
    def ok(self):
        return self.status == Status.OK


def solve(
    z0,
    ts,
    eta_h,
    eta_y,
    dx2,
    dy2,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 4096,
    solver: diffrax.AbstractSolver | None = None,
    stiff_solver: diffrax.AbstractSolver | None = None,
    stiff_max_steps: int = 4096,
    chunk_size: int = 1024,
    stiff_chunk_size: int = 32,
    h_floor: float = H_FLOOR,
    vector_field=vector_field,
    adjoint: diffrax.AbstractAdjoint | None = None,
):
    """Solve dz/dt = ``vector_field`` from ``z0`` and save z at the times ``ts``.

    ``z0`` has shape [..., 3]; the rates and distances broadcast against its
    leading dimensions; ``ts`` (training steps, increasing) is shared. Works under
    ``jit`` and ``grad``; it batches itself, so there is no need to ``vmap`` it.
    Each trajectory is solved by the one single-trajectory solve of rsd (also behind
    :func:`solve_linearized` and the fits of :mod:`rsd.fitting`): an adaptive diffrax
    solve saving every step, stopped at the h-floor, read at ``ts`` by a quintic
    Hermite interpolant.

    One hard element never holds the batch hostage:

    * trajectories are sorted by a cheap stiffness estimate and solved in chunks of
      ``chunk_size`` (each chunk steps only as long as its own slowest element);
    * a trajectory whose h falls below ``h_floor·min(h0, h∞)`` stops at once
      with status ``HIT_ZERO``;
    * a first explicit pass has a budget of ``min(max_steps, 128)`` steps (its
      per-step buffers, the main cost of a batched solve, stay small); only the
      trajectories that spend it are solved again with ``max_steps``, in chunks of
      ``chunk_size // 4``;
    * with ``solver=None`` that explicit solver is Tsit5, and only the trajectories
      that spent ``max_steps`` too (stiff ones: very unequal rates, the lazy regime)
      are re-solved with an implicit Kvaerno5 in chunks of ``stiff_chunk_size``.
      Passing a ``solver`` uses that alone (in both explicit passes).

    Tolerances default to rtol=1e-6, atol=1e-9 (float64) or rtol=1e-5, atol=1e-8
    (float32). Statuses are :class:`Status` values; ``num_steps`` counts the steps
    of every pass an element went through.

    Invalid values: options, ``ts`` and 0-d (whole-batch) rates and distances are
    checked on the host and raise ``ValueError`` naming the argument. Per-element
    values — ``z0`` and array-valued rates or distances — never raise: an invalid
    element gets status ``BAD_INPUT`` and NaN states, and the others are solved as
    if it were absent. Under ``jit`` every value check becomes a ``BAD_INPUT`` status.
    An empty batch (a zero-size leading dimension) returns empty results.

    Compilation and determinism: the batch is padded to a power of two (at least 2)
    and ``ts`` to a power-of-two length (by repeating its last time, which the solve
    then reports as the state at ``ts[-1]``), so new batch sizes and numbers of save
    times within one bucket reuse the compiled program; ``chunk_size`` is rounded
    down to a power of two (at least 2). The same call gives bitwise the same
    result; across batch sizes, positions in the batch and chunk sizes an element's
    result agrees to round-off (a few ulp; bitwise on the CPUs tested).

    ``vector_field``: the field to solve, any function ``(t, z, args) -> dz/dt`` with
    args = (eta_h, eta_y, dx2, dy2), default the theory's :func:`vector_field` (see
    :data:`perturbed_vector_fields` for the paper's alternatives). It is static: each
    new function compiles a new program, the same function object reuses it (pass the
    function itself, not a fresh ``lambda`` per call). The h-floor scale and the
    chunk ordering still use the theory's closed forms; both only steer the solver.

    ``adjoint``: how ``grad`` differentiates the solve (a diffrax adjoint; default
    ``RecursiveCheckpointAdjoint``, reverse mode). Pass ``diffrax.ForwardMode()`` to
    differentiate with ``jax.jvp``/``jax.jacfwd`` (cheaper for a few parameters).

    Example:
        ```python
        import numpy as np
        from rsd import theory

        z0 = np.array([1e-4, 1e-6, 1e-6 - np.sqrt(1e-6 * 0.5)])   # (h, y, w) at step 0
        ts = np.linspace(0, 20000, 201)                            # training steps
        sol = theory.solve(z0, ts, eta_h=2e-3, eta_y=1e-3, dx2=1.0, dy2=0.5)
        assert sol.status == theory.Status.OK and sol.zs.shape == (201, 3)
        ```
    """
    z0, ts = as_array("z0", z0), as_array("ts", ts)
    eta_h, eta_y, dx2, dy2 = (as_array(name, p) for name, p in
                              (("eta_h", eta_h), ("eta_y", eta_y), ("dx2", dx2), ("dy2", dy2)))
    batch = _check_solve_args(z0, ts, eta_h, eta_y, dx2, dy2, max_steps, stiff_max_steps,
                              chunk_size, stiff_chunk_size, h_floor, solver, stiff_solver, rtol, atol)
    _check_adjoint("adjoint", adjoint)
    dtype = jnp.promote_types(jnp.result_type(z0, eta_h, eta_y, dx2, dy2), jnp.float32)
    check_vector_field("vector_field", vector_field, dtype)
    n, n_times = math.prod(batch), ts.shape[0]
    ts = ts.astype(dtype)
    if n == 0:
        return Solution(ts=ts, zs=jnp.zeros(batch + (n_times, 3), dtype),
                        status=jnp.zeros(batch, jnp.int32), num_steps=jnp.zeros(batch, jnp.int32),
                        stiff=jnp.zeros(batch, bool))
    z0s = jnp.broadcast_to(z0.astype(dtype), batch + (3,)).reshape(n, 3)
    ps = jnp.stack([jnp.broadcast_to(p.astype(dtype), batch).reshape(n)
                    for p in (eta_h, eta_y, dx2, dy2)], axis=-1)
    # Power-of-two buckets: one compiled program per bucket of batch sizes and of
    # numbers of save times (the padded times repeat ts[-1], where the solve ends).
    z0s, ps = pad_rows((z0s, ps), bucket(n))
    ts_padded = pad_rows(ts, bucket(n_times))
    sol = _solve(z0s, ps, ts_padded, jnp.asarray(n_times, jnp.int32), jnp.asarray(n, jnp.int32),
                 rtol=None if rtol is None else float(rtol), atol=None if atol is None else float(atol),
                 max_steps=max_steps, solver=solver, stiff_solver=stiff_solver,
                 stiff_max_steps=stiff_max_steps, chunk_size=chunk_width(chunk_size, n),
                 stiff_chunk_size=chunk_width(stiff_chunk_size, n), h_floor=float(h_floor),
                 field=vector_field, adjoint=adjoint)
    zs, status, steps, stiff = sol
    return Solution(
        ts=ts,
        zs=zs[:n, :n_times].reshape(batch + (n_times, 3)),
        status=status[:n].reshape(batch),
        num_steps=steps[:n].reshape(batch),
        stiff=stiff[:n].reshape(batch),
    )


@eqx.filter_jit
def _solve(z0s, ps, ts, n_times, n_real, *, rtol, atol, max_steps, solver, stiff_solver,
           stiff_max_steps, chunk_size, stiff_chunk_size, h_floor, field, adjoint):
    """Flat, padded batch: z0s [n, 3], ps [n, 4] = (η_h, η_y, dx2, dy2) whose first
    ``n_real`` rows are the requested elements, ts [T] whose first ``n_times`` entries
    are the requested times. Returns (zs, status, steps, stiff)."""
    dtype = z0s.dtype
    n = z0s.shape[0]
    rtol, atol = default_tolerances(dtype, rtol, atol)

    # Invalid elements (only NaN/negative values reach here) are solved from a
    # harmless stand-in — the fixed point (1, 0, 0) with dy2 = 0 — and masked.
    real = jnp.arange(ts.shape[0]) < n_times
    ts_ok = (jnp.all(jnp.isfinite(ts))
             & jnp.all(jnp.where(real[1:], jnp.diff(ts) > 0, True)) & (n_times >= 2))
    ts = jnp.where(ts_ok, ts, jnp.minimum(jnp.arange(ts.shape[0]), n_times - 1).astype(dtype))
    valid = _valid_input(z0s, ps) & ts_ok
    # The bucket's padding rows get the stand-in too: at a fixed point they cost a few
    # steps, where copies of a real element would cost as much as it (up to 2x).
    standin = ~valid | (jnp.arange(n) >= n_real)
    z0s = jnp.where(standin[:, None], jnp.asarray([1.0, 0.0, 0.0], dtype), z0s)
    ps = jnp.where(standin[:, None], jnp.asarray([1.0, 1.0, 1.0, 0.0], dtype), ps)

    # Chunks step as long as their slowest element, so group elements of similar
    # stiffness: sort by a cheap estimate of the number of steps each needs.
    order = jnp.argsort(_stiffness(z0s, ps, ts[-1] - ts[0]))
    z0s, ps = z0s[order], ps[order]

    def one(solver, budget):
        return lambda z0, p: solve_trajectory(z0, ts, tuple(p), field=field, solver=solver, rtol=rtol,
                                              atol=atol, max_steps=budget, h_floor=h_floor, adjoint=adjoint)

    explicit = solver if solver is not None else diffrax.Tsit5()
    # Saved steps fill a [budget + 1, 3] buffer per element that every step of the
    # batched loop carries: a small first budget made the mixed population of
    # benchmarks/theory_solve.py 3-4x faster than one pass with the full budget.
    first = min(max_steps, FIRST_BUDGET)
    zs, status, steps = chunked_vmap(one(explicit, first), (z0s, ps), chunk_size)
    if max_steps > first:
        # A quarter of chunk_size: chunks of stiff_chunk_size made the wide population
        # of benchmarks/theory_solve.py (a third of it past the first budget) 20% slower.
        zs, status, steps, _ = _redo_stage(
            one(explicit, max_steps), z0s, ps, zs, status, steps, max(chunk_size // 4, 2))
    stiff = jnp.zeros(n, bool)

    if solver is None:
        implicit = stiff_solver if stiff_solver is not None else diffrax.Kvaerno5()
        zs, status, steps, stiff = _redo_stage(
            one(implicit, stiff_max_steps), z0s, ps, zs, status, steps, min(stiff_chunk_size, n))

    # Back to the input order by a gather (the inverse permutation): cheaper than a scatter.
    inverse = jnp.argsort(order)
    unsort = lambda a: a[inverse]  # noqa: E731
    zs, status, steps, stiff = unsort(zs), unsort(status), unsort(steps), unsort(stiff)
    zs = jnp.where(valid[:, None, None], zs, jnp.nan)
    status = jnp.where(valid, status, Status.BAD_INPUT).astype(jnp.int32)
    return zs, status, steps, stiff


def _valid_input(z0s, ps):
    """Per element: z0 finite with h0 > 0, y0 ≥ 0; rates and dx2 finite > 0; dy2 finite ≥ 0."""
    finite = jnp.all(jnp.isfinite(z0s), -1) & jnp.all(jnp.isfinite(ps), -1)
    return (finite & (z0s[:, 0] > 0) & (z0s[:, 1] >= 0) & (ps[:, 0] > 0) & (ps[:, 1] > 0)
            & (ps[:, 2] > 0) & (ps[:, 3] >= 0))


def _h_scale(z0, eta_h, eta_y, dx2, dy2):
    """min(h0, h∞), or h0 when h∞ = 0 (dy2 = 0 with C ≤ 0): the floor's scale."""
    h_inf = _final_distance(z0[0], z0[1], eta_h, eta_y, dx2, dy2)
    return jnp.where(h_inf > 0, jnp.minimum(z0[0], h_inf), z0[0])


def default_tolerances(dtype, rtol=None, atol=None, *, tighten: float = 1.0):
    """(rtol, atol), each defaulting to 1e-6, 1e-9 (float64) or 1e-5, 1e-8 (float32).

    The defaults of :func:`solve`, :func:`solve_linearized` and the fits; an explicit
    ``rtol`` or ``atol`` is returned as it is. ``tighten`` divides the float64 defaults
    (not explicit values, nor float32's, which cannot go much tighter): the fits use 10.
    """
    wide = dtype == jnp.float64
    scale = 1.0 / tighten if wide else 1.0
    return (rtol if rtol is not None else (1e-6 if wide else 1e-5) * scale,
            atol if atol is not None else (1e-9 if wide else 1e-8) * scale)


def _stiffness(z0s, ps, duration):
    """(largest row sum of |∂f/∂z|, at the start or at the end state) × duration.

    The norm bounds the fastest rate of the linearized flow, which sets the steps
    an adaptive solver needs; only used to order elements so that chunks hold
    trajectories of similar cost. (On the mixed population of
    benchmarks/theory_solve.py it put 67% of the lanes of chunks of 1,024 to use,
    against 57% for the earlier estimate η_y·h + η_h·dx2·y/h at both ends.)
    """
    eta_h, eta_y, dx2, dy2 = ps.T
    h0, y0 = z0s[:, 0], z0s[:, 1]
    h_inf = _final_distance(h0, y0, eta_h, eta_y, dx2, dy2)
    # At h∞ = 0 (dy2 = 0 with C ≤ 0) the field is singular: use the start alone.
    end = jnp.stack([jnp.where(h_inf > 0, h_inf, h0), dy2, jnp.zeros_like(h0)], -1)
    end = jnp.where((h_inf > 0)[:, None], end, z0s)

    def rate(z, p):
        jac = jax.jacfwd(lambda x: vector_field(None, x, tuple(p)))(z)
        return jnp.max(jnp.sum(jnp.abs(jac), axis=-1))

    rates = jnp.maximum(jax.vmap(rate)(z0s, ps), jax.vmap(rate)(end, ps))
    return jnp.where(jnp.isfinite(rates), rates, jnp.inf) * duration


# ---------------------------------------------------------------------------
# The one single-trajectory solve: solve, solve_linearized and the fits all call it.

class Trajectory(NamedTuple):
    """Result of :func:`solve_trajectory`: ``zs`` (z0's structure with a leading time axis),
    ``status`` (a :class:`Status`, int32) and ``num_steps`` (int32)."""

    zs: object
    status: jax.Array
    num_steps: jax.Array


def solve_trajectory(z0, ts, args, *, field: Callable = vector_field, solver=None, rtol: float,
                     atol: float, max_steps: int, h_floor: float | None = H_FLOOR,
                     adjoint=None) -> Trajectory:
    """ONE trajectory of dz/dt = ``field(t, z, args)`` from ``z0`` at ``ts[0]``, read at ``ts``.

    The single-trajectory solve behind :func:`solve`, :func:`solve_linearized` and the
    fits of :mod:`rsd.fitting`: a diffrax solve (``solver``, default Tsit5; PID
    step-size control at ``rtol``, ``atol``; at most ``max_steps`` steps;
    ``throw=False``) that saves every step, then a quintic Hermite interpolant at ``ts``
    (training steps), from z, dz/dt and d²z/dt² at both ends of each step: error
    O(Δt⁶), below the solver's own.

    It stops early (a diffrax event) on a non-finite state, status ``FAILED``, and —
    with ``h_floor`` set, for the 3-D theory only (z0 [3] = (h, y, w), args = (η_h,
    η_y, dx2, dy2)) — where h < ``h_floor``·min(h0, h∞) (h0 when h∞ = 0), status
    ``HIT_ZERO``. After a stop, times past it hold the last state reached. ``z0`` may
    be any pytree of arrays (``h_floor=None``); ``adjoint`` is diffrax's
    (``diffrax.ForwardMode()`` for ``jax.jvp``/``jax.jacfwd``; default reverse mode).

    Pure and jittable, written for one trajectory: ``jax.vmap`` it to batch. Nothing
    is checked here (it runs inside jit and vmap); the batched entry points check
    their options on the host and take rtol and atol from :func:`default_tolerances`.
    """
    flat0, unravel = ravel_pytree(z0)
    flat_field = lambda t, z, a: ravel_pytree(field(t, unravel(z), a))[0]  # noqa: E731
    if h_floor is None:
        floor = jnp.asarray(-jnp.inf, flat0.dtype)
    else:
        floor = h_floor * _h_scale(flat0, *args)
    # args carry the floor after the field's own arguments.
    term = diffrax.ODETerm(lambda t, z, a: flat_field(t, z, a[0]))
    extra = {} if adjoint is None else {"adjoint": adjoint}

    def stop(t, z, a, **kwargs):
        return (z[0] < a[1]) | ~jnp.all(jnp.isfinite(z))

    # Saving every step and interpolating afterwards costs a fraction of
    # SaveAt(ts): under vmap diffrax's save-at-ts loop rewrites the whole output
    # buffer of the batch at every step.
    sol = diffrax.diffeqsolve(
        term, solver if solver is not None else diffrax.Tsit5(), ts[0], ts[-1], None, flat0,
        (args, floor), saveat=diffrax.SaveAt(t0=True, steps=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        event=diffrax.Event(stop), max_steps=max_steps, throw=False, **extra,
    )
    zs, z_end = _hermite_at(ts, sol.ts, sol.ys, lambda z: flat_field(None, z, args))
    result = sol.result
    stopped = result == diffrax.RESULTS.event_occurred
    status = jnp.where(
        result == diffrax.RESULTS.successful, Status.OK,
        jnp.where(stopped & (z_end[0] < floor), Status.HIT_ZERO,
                  jnp.where(result == diffrax.RESULTS.max_steps_reached,
                            Status.MAX_STEPS, Status.FAILED)))
    return Trajectory(jax.vmap(unravel)(zs), status.astype(jnp.int32),
                      sol.stats["num_steps"].astype(jnp.int32))


def _hermite_at(ts, t_steps, z_steps, field):
    """z at the times ``ts`` from the states saved at every step.

    Quintic Hermite interpolation between steps, from z, dz/dt and d²z/dt² at both
    ends (the latter two from ``field(z)`` and its Jacobian-vector product):
    error O(Δt⁶), below the O(Δt⁵) local error of the 5th-order solvers. Times
    after the last step reached hold its state. Returns (zs [T, n], last state).
    """
    valid = jnp.isfinite(t_steps) & jnp.all(jnp.isfinite(z_steps), axis=-1)
    last = jnp.maximum(jnp.sum(valid) - 1, 0)
    z_last = z_steps[last]
    t_last = t_steps[last]
    # Unused buffer slots are inf: replace them so nothing non-finite enters.
    t_safe = jnp.where(valid, t_steps, jnp.inf)
    z_safe = jnp.where(valid[:, None], z_steps, z_last)
    i = jnp.clip(jnp.searchsorted(t_safe, ts, side="right") - 1, 0, jnp.maximum(last - 1, 0))
    j = jnp.minimum(i + 1, last)
    ta, tb = t_safe[i], jnp.where(j > i, t_safe[j], t_safe[i] + 1.0)
    za, zb = z_safe[i], z_safe[j]

    derivatives = jax.vmap(lambda z: jax.jvp(field, (z,), (field(z),)))
    fa, ga = derivatives(za)
    fb, gb = derivatives(zb)
    dt = (tb - ta)[:, None]
    s = jnp.clip((ts[:, None] - ta[:, None]) / dt, 0.0, 1.0)
    s2, s3 = s * s, s * s * s
    s4, s5 = s3 * s, s3 * s2
    h0 = 1 - 10 * s3 + 15 * s4 - 6 * s5
    h1 = s - 6 * s3 + 8 * s4 - 3 * s5
    h2 = 0.5 * (s2 - 3 * s3 + 3 * s4 - s5)
    h3 = 0.5 * (s3 - 2 * s4 + s5)
    h4 = -4 * s3 + 7 * s4 - 3 * s5
    h5 = 10 * s3 - 15 * s4 + 6 * s5
    zs = h0 * za + h1 * dt * fa + h2 * dt**2 * ga + h3 * dt**2 * gb + h4 * dt * fb + h5 * zb
    inside = (j > i)[:, None] & (ts <= t_last)[:, None]
    # Next to a stop at h ≈ 0 the field's 1/h terms can overflow: keep the step's state.
    inside = inside & jnp.all(jnp.isfinite(zs), axis=-1, keepdims=True)
    zs = jnp.where(inside, zs, jnp.where((ts >= t_last)[:, None], z_last, za))
    return zs, z_last


def _resolve_failures(redo, z0s, ps, zs, status, steps, k):
    """Re-solve the elements with status MAX_STEPS, k at a time.

    The elements to redo are sorted to the front, so only the ceil(#redo / k)
    chunks that hold them run ``redo`` (``lax.cond`` skips the rest, returning
    zeros); their results are then written over the old ones in one scatter.
    Returns (zs, status, steps).
    """
    n = z0s.shape[0]
    need = status == Status.MAX_STEPS
    n_need = jnp.sum(need)
    order = jnp.argsort(~need, stable=True)
    n_chunks = -(-n // k)
    order = jnp.concatenate([order, jnp.full(n_chunks * k - n, order[-1])])
    skipped = jax.eval_shape(lambda: jax.vmap(redo)(z0s[:k], ps[:k]))

    def chunk(c):
        ids = lax.dynamic_slice(order, (c * k,), (k,))
        # Gathered outside the cond: its operands are only this chunk's inputs (a cond
        # that closes over the whole batch may copy it at every chunk).
        run = lambda z, p: tuple(jax.vmap(redo)(z, p))
        skip = lambda z, p: tuple(jnp.zeros(s.shape, s.dtype) for s in skipped)
        return lax.cond(c * k < n_need, run, skip, z0s[ids], ps[ids])

    new_zs, new_status, new_steps = (a.reshape((n_chunks * k,) + a.shape[2:])
                                     for a in lax.map(chunk, jnp.arange(n_chunks)))
    # Slots past the last element to redo (their chunk skipped, or a duplicate of an
    # element redone in a slot before) point past the end: the scatter drops them.
    target = jnp.where(jnp.arange(n_chunks * k) < n_need, order, n)

    def merge(new, old):
        return old.at[target].set(new, mode="drop")

    steps = merge(new_steps + steps[order], steps)
    return merge(new_zs, zs), merge(new_status, status), steps


def _redo_stage(redo, z0s, ps, zs, status, steps, k):
    """:func:`_resolve_failures`, skipped as a whole when no element needs it (its
    per-chunk outputs and merges would touch the whole batch's buffers)."""
    need = status == Status.MAX_STEPS
    zs, status, steps = lax.cond(
        jnp.any(need), lambda zs, status, steps: _resolve_failures(redo, z0s, ps, zs, status, steps, k),
        lambda zs, status, steps: (zs, status, steps), zs, status, steps)
    return zs, status, steps, need


def _check_adjoint(name, adjoint):
    """None or a diffrax adjoint instance (e.g. ``diffrax.ForwardMode()``)."""
    if adjoint is not None and not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise ValueError(f"{name} must be a diffrax adjoint instance (e.g. diffrax.ForwardMode()) "
                         f"or None; got {adjoint!r}.")


def _check_solve_args(z0, ts, eta_h, eta_y, dx2, dy2, max_steps, stiff_max_steps,
                      chunk_size, stiff_chunk_size, h_floor, solver, stiff_solver, rtol, atol):
    """Host checks of everything that applies to the whole batch; returns the batch shape."""
    if z0.ndim < 1 or z0.shape[-1] != 3:
        raise ValueError(f"z0 must have shape [..., 3] holding (h, y, w); got shape {z0.shape}.")
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D array of at least 2 times; got shape {ts.shape}.")
    check_increasing("ts", ts)
    check_int_range("max_steps", max_steps, 1)
    check_int_range("stiff_max_steps", stiff_max_steps, 1)
    check_int_range("chunk_size", chunk_size, 1)
    check_int_range("stiff_chunk_size", stiff_chunk_size, 1)
    check_real("h_floor", h_floor, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    check_solver("solver", solver)
    check_solver("stiff_solver", stiff_solver)
    check_tolerance("rtol", rtol)
    check_tolerance("atol", atol)
    batch = check_broadcast({"z0[..., 0]": z0.shape[:-1], "eta_h": eta_h.shape,
                             "eta_y": eta_y.shape, "dx2": dx2.shape, "dy2": dy2.shape})
    # 0-d rates and distances apply to every element: a bad one is the caller's
    # mistake, not one element's. Array values are per element (status BAD_INPUT).
    for name, p, check in (("eta_h", eta_h, check_positive), ("eta_y", eta_y, check_positive),
                           ("dx2", dx2, check_positive), ("dy2", dy2, check_nonnegative)):
        if p.ndim == 0:
            check(name, p)
    return tuple(int(d) for d in batch)
