"""Training as a pure ``init``/``step`` pair over a pytree state, for loops a user drives.

``Trainer(setting, x, y)`` gives ``init(seed) -> TrainState`` and ``step(state) ->
(state, records)``: pure functions to ``jax.jit``, ``jax.vmap`` (over seeds, learning
rates, initial parameters) and ``lax.scan``. ``step`` is the very step :func:`train`
scans (the same function of the same engine), so a scan of ``T`` steps from
``init(s)`` reproduces ``train(setting, x, y, seeds=[s])`` record for record.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ._checks import (
    _as_float_array,
    _check_data,
    _check_layers,
    _check_pair,
    _short_repr,
    _typed_key,
    parameter_template,
)
from ._recorders import PairRecorder
from ._settings import MAX_STEPS, Setting
from ._state import (
    TrainData,
    TrainState,
    _has_injected_lr,
    init_state,
    named_optimizer,
    step_config,
    train_step,
)

__all__ = ["Trainer", "pad_hidden"]



class Trainer:
    """``init``/``step`` for one setting on one data set (x [n, in_dim], y [n, out_dim]).

    Args:
        setting: the :class:`Setting` (architecture, optimizer by name, lr, batch size,
            loss; ``setting.steps`` is not used: the caller decides how many steps).
        x: the training inputs [n, in_dim], shared by every seed.
        y: the training targets [n, out_dim], shared by every seed.
        pair: the two points whose h, y, w ``step`` records.
        layers: hidden layers whose h is recorded (default ``setting.layers``, else all).
        optimizer: None (``setting.optimizer`` by name with an injected learning rate,
            :func:`named_optimizer`) or any ``optax.GradientTransformation``.
        network: None (``setting.network(in_dim, out_dim)``) or any network of rsd's
            interface, trained instead (as :func:`train`'s ``network``).

    Example:
        4 seeds × 2 learning rates in one program, 100 steps scanned by hand:

        ```python
        import jax
        import jax.numpy as jnp
        from rsd import data, training

        setting = training.Setting.from_paper("2_points", "narrow").replace(
            width=16, depth=2, layers=(1,))
        x, y = data.two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim,
                               out_dim=setting.out_dim)
        trainer = training.Trainer(setting, x, y)
        seeds, lrs = jnp.meshgrid(jnp.arange(4), jnp.asarray([5e-3, 1e-2]))
        state = jax.vmap(trainer.init)(seeds.ravel(), lrs.ravel())
        scan = lambda s: jax.lax.scan(lambda c, _: trainer.step(c), s, length=100)
        state, records = jax.jit(jax.vmap(scan))(state)
        assert records["h"].shape == (8, 100, 1)      # [seeds × lrs, steps, layers]
        ```
    """

    def __init__(self, setting: Setting, x, y, *, pair=(0, 1), layers=None,
                 optimizer: optax.GradientTransformation | None = None, network=None):
        if not isinstance(setting, Setting):
            raise ValueError(f"setting must be an rsd.training.Setting; got {type(setting).__name__}.")
        dtype = jnp.result_type(float)
        x = _as_float_array("x", x, dtype)
        y = _as_float_array("y", y, dtype)
        if x.ndim != 2 or y.ndim != 2:
            raise ValueError("x and y must have shapes [n, in_dim] and [n, out_dim] (one data "
                             f"set; vmap the trainer for several); got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}.")
        _check_data(setting, x, y, 1, network)
        n = x.shape[0]
        self.pair = _check_pair(pair, n)
        if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
            raise ValueError("optimizer must be None or an optax.GradientTransformation; got "
                             f"{_short_repr(optimizer)}.")
        batch_size = setting.batch_size if setting.batch_size is not None and \
            setting.batch_size < n else None
        self.setting = setting
        self.network = setting.network(x.shape[1], y.shape[1]) if network is None else network
        self.layers = _check_layers("layers", layers if layers is not None else setting.layers,
                                    self.network.num_hidden)
        self.optimizer = named_optimizer(setting.optimizer) if optimizer is None else optimizer
        self._named = optimizer is None
        self._takes_lr = self._named or _has_injected_lr(self.optimizer,
                                                         parameter_template(self.network))
        # No guard and no end: the caller decides how many steps; "not yet diverged or
        # stopped" is MAX_STEPS.
        self._config = step_config(setting.replace(batch_size=batch_size), self.network,
                                   self.optimizer, steps=MAX_STEPS)
        self._observe = PairRecorder(self.layers).observer
        self.x, self.y = x, y

    def init(self, seed, lr=None, *, params=None, root_key=None) -> TrainState:
        """The state at step 0 of seed ``seed`` (an int, or a traced int32 under vmap).

        Keys as in :func:`train`: ``(k_init, k_order, k_dropout) =
        split(fold_in(root_key, seed), 3)`` (default ``root_key = jax.random.key(0)``).
        ``lr``: the learning rate (default ``setting.lr`` with the named optimizers; a
        given optimizer keeps its own unless ``lr`` is passed, which needs an injected
        learning rate). ``params``: start from these instead of the random
        initialization (``network.from_layers`` builds them from (W, b) pairs).
        """
        if lr is not None and not self._takes_lr:
            raise ValueError("lr needs an optimizer with an injected learning rate "
                             "(optax.inject_hyperparams(...)(learning_rate=...)).")
        root_key = jax.random.key(0) if root_key is None else _typed_key(root_key)
        k_init, k_order, k_dropout = jax.random.split(
            jax.random.fold_in(root_key, jnp.asarray(seed, jnp.uint32)), 3)
        if params is None:
            params = self.network.init(k_init)
        if lr is None and self._named:
            lr = self.setting.lr
        return init_state(self._config, TrainData(self.x, self.y), params, k_order, k_dropout,
                          lr)

    def step(self, state: TrainState) -> tuple[TrainState, dict]:
        """One training step: the records of ``state`` (before the update) and the state
        after it.

        Records: ``h`` [K] at ``layers``, ``y``, ``w``, ``e0`` of the pair and the
        full-data half-MSE ``loss``, in eval mode, as :func:`train` records them.
        """
        return train_step(self._config, TrainData(self.x, self.y), state, state.step,
                          observe=self._observe(self.y, jnp.asarray(self.pair, jnp.int32)))


def pad_hidden(layers, width: int):
    """Zero-pad the hidden units of an MLP's or ResNet's ``(W, b)`` layers to ``width``.

    ``layers``: [(W [in, P], b [P]), (W [P, P], b [P]), ..., (W [P, out], b [out])] (as
    ``network.to_layers`` gives, optionally with a leading seed axis). The extra units
    get zero incoming and outgoing weights and zero biases. With an activation that
    maps 0 to 0 (every one rsd has), an extra unit's value, its outgoing weights'
    gradient and its incoming weights' gradient are all exactly zero, so SGD and Adam
    leave it at zero and the padded network computes the unpadded one: training it
    from these layers gives the unpadded run's records, up to the order of float sums.
    Not for dropout (masks are drawn per unit) or the CNN (its width is a length).
    """
    layers = [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers]
    if len(layers) < 2:
        raise ValueError(f"layers must hold at least 2 (W, b) pairs; got {len(layers)}.")
    p = layers[0][0].shape[-1]
    if not (isinstance(width, int) and width >= p):
        raise ValueError(f"width must be an integer >= the layers' width {p}; got {width!r}.")
    extra = width - p
    out = []
    for k, (w, b) in enumerate(layers):
        lead = [(0, 0)] * (w.ndim - 2)
        rows = (0, 0) if k == 0 else (0, extra)
        cols = (0, 0) if k == len(layers) - 1 else (0, extra)
        out.append((jnp.pad(w, lead + [rows, cols]), jnp.pad(b, lead[:b.ndim - 1] + [cols])))
    return out
