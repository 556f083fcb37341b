"""What a training run records, as small recorders the caller picks.

* :class:`PairRecorder`: at record steps, h at the chosen hidden layers, y, w, e0 of one
  pair and the full-data loss (the paper's quantities, :mod:`rsd.quantities`), from the
  eval pass before the step's update.
* :class:`Snapshots`: ``measure(params)`` at chosen steps t (before the update of step t;
  t = T after the last update), into preallocated buffers:
  :func:`distance_matrices` (pairwise squared distances of tracked inputs) and
  :func:`parameter_checkpoints` (the parameters themselves).

:class:`Recording` is the option record that chooses them in :func:`train`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .. import quantities as q
from ._state import all_finite

__all__ = ["Recording"]


@dataclasses.dataclass(frozen=True)
class Recording:
    """What :func:`train` records (an alternative to its loose keywords of the same names,
    which it documents): the ``pair`` (i, j) whose h, y, w are recorded at hidden
    ``layers`` every ``record_every`` steps; pairwise distance matrices of the ``tracked``
    inputs at ``matrix_steps`` for ``matrix_layers``; the parameters at
    ``checkpoint_steps`` (``Run.checkpoints``); and the final parameters when
    ``return_params``. Checked by ``train``."""

    pair: tuple[int, int] = (0, 1)
    layers: Any = None
    record_every: int = 1
    tracked: Any = None
    matrix_steps: Any = None
    matrix_layers: Any = None
    checkpoint_steps: Any = None
    return_params: bool = False


class PairRecorder(NamedTuple):
    """The pair records of one eval pass: h [K] at ``layers``, y, w, e0 of the pair
    (i, j) and the full-data half-MSE ``loss``."""

    layers: tuple[int, ...]

    def record(self, out, hid, y, pair) -> dict:
        i, j = pair[0], pair[1]
        target_i, target_j = y[i], y[j]
        h = jnp.stack([q.representation_distance(hid[k][i], hid[k][j]) for k in self.layers])
        return dict(
            h=h,
            y=q.output_distance(out[i], out[j]),
            w=q.alignment(out[i], out[j], target_i, target_j),
            e0=q.mean_output_error(out[i], out[j], target_i, target_j),
            loss=q.half_mse(out, y),
        )

    def observer(self, y, pair) -> Callable:
        """``observe(out, hid) -> (records, finite, loss)`` for :func:`train_step`."""
        def observe(out, hid):
            rec = self.record(out, hid, y, pair)
            finite = jnp.isfinite(rec["loss"]) & all_finite([rec["h"], rec["y"], rec["w"]])
            return rec, finite, rec["loss"]
        return observe


class Snapshots(NamedTuple):
    """``measure(params)`` at M chosen steps t_1 < ... < t_M in [0, T].

    ``slot`` [T] int32: the buffer slot of step t (−1: none), ``times`` [M] int32; both
    data. ``final`` (static): t_M = T, recorded by :meth:`finish` after the last update.
    """

    measure: Callable
    slot: jax.Array
    times: jax.Array
    count: int
    final: bool

    def init(self, params):
        shapes = jax.eval_shape(self.measure, params)
        return jax.tree.map(lambda s: jnp.zeros((self.count,) + s.shape, s.dtype), shapes)

    def record(self, bufs, params, t, *, steps=None):
        """Before the update of step t; with ``steps`` (a guard), steps t >= steps
        (padding) record nothing."""
        now = self.slot[t] >= 0
        if steps is not None:
            now = now & (t < steps)
        return lax.cond(
            now,
            lambda m: jax.tree.map(lambda buf, new: buf.at[self.slot[t]].set(new), m,
                                   self.measure(params)),
            lambda m: m,
            bufs,
        )

    def finish(self, bufs, params):
        """After the last update: the slot of t = T, if chosen."""
        if not self.final:
            return bufs
        return jax.tree.map(lambda buf, new: buf.at[self.count - 1].set(new), bufs,
                            self.measure(params))

    def freeze(self, bufs, params, end):
        """Every slot of a step >= ``end`` (where the seed froze) from ``params``."""
        late = self.times >= end
        return jax.tree.map(
            lambda buf, frozen: jnp.where(late.reshape((-1,) + (1,) * (buf.ndim - 1)), frozen,
                                          buf),
            bufs, self.measure(params))


def distance_matrices(network, tracked, layers, slot, times, count, final) -> Snapshots:
    """(hidden [K', n_t, n_t] at ``layers``, output [n_t, n_t]) pairwise squared
    distances of the ``tracked`` inputs, in eval mode."""
    def measure(params):
        out, hid = network.apply(params, tracked, train=False)
        return (jnp.stack([q.pairwise_squared_distances(hid[k]) for k in layers]),
                q.pairwise_squared_distances(out))
    return Snapshots(measure, slot, times, count, final)


def parameter_checkpoints(slot, times, count, final) -> Snapshots:
    """The parameters themselves."""
    return Snapshots(lambda params: params, slot, times, count, final)
