"""The two schedules of :func:`train`: which steps run, and when records are taken.

Both run record units of ``record_every`` = k steps: the unit's first step records
before its update (a :class:`PairRecorder` observation), every step applies one
:func:`train_step`, and each :class:`Snapshots` recorder saves its measure before the
update of its chosen steps.

* :func:`scan_schedule` trains ONE seed for all T steps in one ``lax.scan``.
* :func:`stop_schedule` trains a chunk of seeds (vmapped) with early stopping: blocks of
  record units in a ``lax.while_loop`` that ends once every seed has stopped, diverged or
  run all steps.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from ._run import Status
from ._state import TrainData, init_state, train_step

__all__: list[str] = []


def _record_unit(config, data, observe, snapshots, *, record_every, unroll, stop_loss):
    """(carry, r) -> (carry, records of step r·k): one record unit; carry = (state, buffers)."""
    guard = config.steps if config.guard else None

    def one_step(carry, t, record):
        state, bufs = carry
        bufs = {name: s.record(bufs[name], state.params, t, steps=guard)
                for name, s in snapshots.items()}
        state, rec = train_step(config, data, state, t, observe=observe if record else None,
                                stop_loss=stop_loss if record else None)
        return (state, bufs), rec

    def unit(carry, r):
        if record_every == 1:
            return one_step(carry, r, True)
        t0 = r * record_every
        carry, rec = one_step(carry, t0, True)
        carry, _ = lax.scan(lambda c, t: (one_step(c, t, False)[0], None), carry,
                            t0 + jnp.arange(1, record_every, dtype=jnp.int32), unroll=unroll)
        return carry, rec

    return unit


def _result(state, rec, bufs):
    return dict(h=rec["h"], y=rec["y"], w=rec["w"], loss=rec["loss"], e0=rec["e0"][0],
                status=state.status, diverged_step=state.diverged_step,
                stop_step=state.stop_step, params=state.params, **bufs)


def scan_schedule(config, data: TrainData, state, pair, snapshots, *, pair_idx,
                  record_every, unroll):
    """Train ONE seed from ``state`` for T = ``config.steps`` steps in one ``lax.scan``
    over its record units; a dict of its records [T'], final status, parameters and
    snapshot buffers. Vmapped over the seeds (and per-seed data) by the caller."""
    num_records = math.ceil(config.steps / record_every)
    unit = _record_unit(config, data, pair.observer(data.y, pair_idx), snapshots,
                        record_every=record_every, unroll=unroll, stop_loss=None)
    bufs = {name: s.init(state.params) for name, s in snapshots.items()}
    (state, bufs), rec = lax.scan(unit, (state, bufs), jnp.arange(num_records, dtype=jnp.int32),
                                  unroll=unroll if record_every == 1 else 1)
    bufs = {name: s.finish(bufs[name], state.params) for name, s in snapshots.items()}
    return _result(state, rec, bufs)


def stop_schedule(config, params, k_order, k_dropout, x, y, lr, stop_loss, masks, pair,
                  snapshots, *, pair_idx, data_axes, record_every, block, unroll):
    """Train a chunk of seeds with early stopping: blocks of ``block`` record units until
    all are done.

    Each block is a ``lax.scan`` of the one-seed record unit, vmapped over the seeds; a
    ``lax.while_loop`` over blocks ends once every seed has stopped, diverged or reached
    T. (The loop runs over the vmapped block rather than vmapping a one-seed while loop:
    the batched loop would re-select the whole [T', ...] record buffers every block.)
    Records go into preallocated [T', ...] buffers; a seed frozen at step t (stop or
    divergence) then has every record of a step >= t, and every snapshot of a step >= t,
    set to those of its frozen parameters, exactly as the plain scan records.
    """
    steps, k = config.steps, record_every
    num_records = math.ceil(steps / k)
    x_axis, y_axis = data_axes

    def unit_of(xs, ys):
        data = TrainData(xs, ys, masks)
        return _record_unit(config, data, pair.observer(ys, pair_idx), snapshots,
                            record_every=k, unroll=unroll, stop_loss=stop_loss)

    def start(p, xs, ys, ko, kd, lr_s):
        state = init_state(config, TrainData(xs, ys, masks), p, ko, kd, lr_s)
        return state, {name: s.init(p) for name, s in snapshots.items()}

    def run_block(carry, r0, xs, ys):
        return lax.scan(unit_of(xs, ys), carry, r0 + jnp.arange(block, dtype=jnp.int32),
                        unroll=unroll if k == 1 else 1)

    def finish(carry, rec, units_run, xs, ys):
        state, bufs = carry
        params = state.params
        end = jnp.minimum(state.diverged_step, state.stop_step)
        # Records from the first record step >= end on are those of the frozen parameters.
        first_after = (end + (k - 1)) // k
        after = jnp.arange(num_records) >= first_after
        rec = {key: v[:num_records] for key, v in rec.items()}
        at = jnp.minimum(first_after, num_records - 1)
        frozen = {key: v[at] for key, v in rec.items()}
        if k > 1:
            # A seed that froze between records in the loop's last block may have its
            # next record in a block that never ran: take it from the frozen parameters.
            computed = first_after < units_run
            fresh = pair.record(*config.network.apply(params, xs, train=False), ys, pair_idx)
            frozen = {key: jnp.where(computed, v, fresh[key]) for key, v in frozen.items()}
        rec = {key: jnp.where(after.reshape((-1,) + (1,) * (v.ndim - 1)), frozen[key], v)
               for key, v in rec.items()}
        bufs = {name: s.freeze(bufs[name], params, end) for name, s in snapshots.items()}
        return _result(state, rec, bufs)

    data_in = (x_axis, y_axis)
    lr_axis = None if lr is None else 0
    carry = jax.vmap(start, in_axes=(0,) + data_in + (0, 0, lr_axis))(
        params, x, y, k_order, k_dropout, lr)
    # Record buffers [seeds, blocks·block, ...], from the shapes of one block's records.
    rec_shapes = jax.eval_shape(
        lambda c, xs, ys: run_block(c, jnp.int32(0), xs, ys)[1],
        jax.tree.map(lambda a: a[0], carry), _first(x, x_axis), _first(y, y_axis))
    num_seeds = k_order.shape[0]
    padded_records = math.ceil(num_records / block) * block
    rec_bufs = {key: jnp.zeros((num_seeds, padded_records) + s.shape[1:], s.dtype)
                for key, s in rec_shapes.items()}
    batched_block = jax.vmap(run_block, in_axes=(0, None) + data_in)

    def cond(loop):
        (state, _), _, r0 = loop
        return (r0 < num_records) & jnp.any((state.status == Status.OK) &
                                            (state.stop_step == steps))

    def body(loop):
        carry, rec_bufs, r0 = loop
        carry, rec = batched_block(carry, r0, x, y)
        rec_bufs = {key: lax.dynamic_update_slice_in_dim(rec_bufs[key], rec[key], r0, axis=1)
                    for key in rec_bufs}
        return carry, rec_bufs, r0 + block

    carry, rec_bufs, units_run = lax.while_loop(cond, body, (carry, rec_bufs, jnp.int32(0)))
    return jax.vmap(finish, in_axes=(0, 0, None) + data_in)(carry, rec_bufs, units_run, x, y)


def _first(a, axis):
    return a if axis is None else a[0]
