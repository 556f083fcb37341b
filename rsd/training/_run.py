"""What :func:`train` returns: the per-seed outcome codes and the recorded ``Run``."""

from __future__ import annotations

import enum
from typing import Any

import equinox as eqx
import jax

from ._settings import Setting

__all__ = ["Status", "Run"]


class Status(enum.IntEnum):
    """Per-seed outcome of :func:`train` (stored as int32 in ``Run.status``)."""

    OK = 0
    """Every step's loss, activations and update were finite."""
    DIVERGED = 1
    """A step's loss, activations or gradient turned non-finite; the seed froze before it."""


class Run(eqx.Module):
    """Recorded trajectories of :func:`train`: S seeds × T' records.

    With ``train(..., record_every=k)`` records are taken at steps t = 0, k, 2k, ... <
    T (T = ``setting.steps``), so T' = ceil(T / k) (T' = T and record r at step r by
    default); ``record_steps`` holds the step of each record. Record ``[s, r]`` is
    measured before the update of step ``record_steps[r]`` (step 0 is the
    initialization), in eval mode, for seed ``seeds[s]``:

    * ``h``    [S, T', K]  ||φ_k(x_j) − φ_k(x_i)||² at hidden layer ``layers[k]``
    * ``y``    [S, T']     ||ŷ_j − ŷ_i||²
    * ``w``    [S, T']     Δŷ·(Δŷ − Δy*)
    * ``loss`` [S, T']     ½·mean over all training points and outputs of (ŷ − y*)²
    * ``record_steps`` [T'] int32: the step of each record, ``k · arange(T')``
    * ``e0``   [S]        ||(ŷ_i + ŷ_j)/2 − (y*_i + y*_j)/2||² at step 0
    * ``status`` [S] int32 (:class:`Status`), ``diverged_step`` [S] int32: the first
      step t whose training loss, training activations or gradient (or, at a record
      step, records) were non-finite (T if none). Update t and all later ones are
      skipped: the parameters stay those of step t, so every record of a step >= t
      is the record of those frozen parameters.
    * ``stop_step`` [S] int32: with ``train(..., stop_loss=ℓ)``, the first record step t
      whose recorded loss was below ℓ (T if none, and always T without ``stop_loss``);
      the seed froze there as on divergence (records from t on repeat step t's), its
      status stays OK.
    * ``lr``, ``gain`` [S]: each seed's learning rate and initialization gain
      (``setting.lr`` / ``setting.gain`` unless ``train`` was given per-seed values).
    * ``dx2``, ``dy2``: ||x_j − x_i||², ||y*_j − y*_i||² of the pair (i, j): scalars
      [] for shared data, [S] when x or y is given per seed.
    * with ``tracked`` inputs (n of them) and M ``matrix_steps``:
      ``hidden_matrices`` [S, M, K', n, n] (layers ``matrix_layers``) and
      ``output_matrices`` [S, M, n, n], pairwise squared distances at those steps
      (any steps, not only record steps; step T means after the last update);
      otherwise None.
    * ``params``: the parameters after the last step, with a leading seed axis,
      when ``return_params=True``; otherwise None.
    * with ``checkpoint_steps`` t_1 < ... < t_K in [0, T]: ``checkpoints``, the
      parameters after t_k steps (t = 0: the initial parameters), a pytree like
      ``params`` with leading axes [S, K], and ``checkpoint_steps`` [K] int32. A seed
      frozen at step t (stop or divergence) has its frozen parameters at every
      t_k >= t. Otherwise both None.
    """

    h: jax.Array
    y: jax.Array
    w: jax.Array
    loss: jax.Array
    record_steps: jax.Array
    e0: jax.Array
    status: jax.Array
    diverged_step: jax.Array
    stop_step: jax.Array
    seeds: jax.Array
    lr: jax.Array
    gain: jax.Array
    dx2: jax.Array
    dy2: jax.Array
    hidden_matrices: jax.Array | None
    output_matrices: jax.Array | None
    matrix_steps: jax.Array | None
    params: Any
    layers: tuple[int, ...] = eqx.field(static=True)
    matrix_layers: tuple[int, ...] | None = eqx.field(static=True)
    pair: tuple[int, int] = eqx.field(static=True)
    setting: Setting = eqx.field(static=True)
    checkpoints: Any = None
    checkpoint_steps: jax.Array | None = None

    @property
    def ok(self):
        return self.status == Status.OK
