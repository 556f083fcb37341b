"""ONE seed's training as a pure ``init``/``step`` pair over a typed carry, ``TrainState``.

``train_step`` is the only training step of rsd: both schedules of :func:`train` and
:class:`Trainer` call it. A step t draws the epoch's minibatch order at the epoch's first
step, takes the gradient of the training loss, and applies one optax update unless the
seed is frozen. A seed freezes (its parameters and optimizer state stop changing) when
its loss, training activations or bias gradients turn non-finite (status ``DIVERGED``)
or when, at a record step, its recorded loss falls below ``stop_loss``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from .. import quantities as q
from ._checks import has_dropout
from ._run import Status

__all__ = ["TrainState", "named_optimizer"]


class StepConfig(NamedTuple):
    """What a step depends on statically (part of the compiled program).

    ``steps``: the run's length T; ``diverged_step`` and ``stop_step`` hold T while
    nothing happened, and with ``guard`` the steps t >= T (padding of the last record
    unit or block) change nothing.
    """

    network: Any
    optimizer: optax.GradientTransformation
    loss_scale: float
    batch_size: int | None
    steps: int
    guard: bool


def step_config(setting, network, optimizer=None, *, steps=None, guard=False) -> StepConfig:
    """The :class:`StepConfig` of ``setting`` (its loss, batch size, steps and, unless
    ``optimizer`` is given, its named optimizer) for ``network``."""
    return StepConfig(network=network,
                      optimizer=named_optimizer(setting.optimizer) if optimizer is None else optimizer,
                      loss_scale=2.0 if setting.loss == "mse" else 1.0,
                      batch_size=setting.batch_size,
                      steps=setting.steps if steps is None else steps, guard=guard)


class TrainData(NamedTuple):
    """One seed's training data: x [n, in_dim], y [n, out_dim] and optional replayed
    dropout keep masks (one [steps, n, fan_in] array per linear layer, or None)."""

    x: jax.Array
    y: jax.Array
    masks: Any = None


class TrainState(NamedTuple):
    """The state of ONE seed's training (a pytree; a leading axis for many seeds).

    * ``params``: the network's parameters; ``opt_state``: the optimizer's state (with
      the default optimizers it holds the learning rate,
      ``opt_state.hyperparams["learning_rate"]``).
    * ``step`` int32: the index t of the next step (0 at ``init``).
    * ``status`` int32 (:class:`Status`), ``diverged_step`` int32: the step whose loss,
      activations or gradient turned non-finite (``MAX_STEPS`` for :class:`Trainer`,
      T for :func:`train`, while none has); from then on a step leaves ``params`` and
      ``opt_state`` unchanged.
    * ``stop_step`` int32: the record step whose loss fell below ``train``'s
      ``stop_loss`` (the same "not yet" value as ``diverged_step`` while none has);
      the seed froze there.
    * ``order``: the current epoch's minibatch order (None for full batch).
    * ``k_order``, ``k_dropout``: the seed's minibatch-order and dropout keys.
    """

    params: Any
    opt_state: Any
    step: jax.Array
    status: jax.Array
    diverged_step: jax.Array
    stop_step: jax.Array
    order: jax.Array | None
    k_order: jax.Array
    k_dropout: jax.Array


@functools.lru_cache(maxsize=None)
def named_optimizer(name: str) -> optax.GradientTransformation:
    """The optax transformation of ``Setting.optimizer`` ``name`` ("sgd": plain SGD,
    "adam": optax defaults = PyTorch's), with its learning rate injected
    (``optax.inject_hyperparams``): the rate is a value in the optimizer state
    (``state.hyperparams["learning_rate"]``), so seeds with different rates share one
    compiled program. One object per name (a stable cache key)."""
    factory = {"sgd": optax.sgd, "adam": optax.adam}[name]
    return optax.inject_hyperparams(factory)(learning_rate=1.0)


def _with_learning_rate(opt_state, lr):
    """``opt_state`` with its injected learning rate set to ``lr``."""
    hyper = dict(opt_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lr, hyper["learning_rate"].dtype)
    return opt_state._replace(hyperparams=hyper)


def _has_injected_lr(optimizer, params) -> bool:
    state = jax.eval_shape(optimizer.init, params)
    hyper = getattr(state, "hyperparams", None)
    return isinstance(hyper, dict) and "learning_rate" in hyper


def _batches_per_epoch(config, n):
    return 1 if config.batch_size is None else math.ceil(n / config.batch_size)


def init_state(config: StepConfig, data: TrainData, params, k_order, k_dropout,
               lr=None) -> TrainState:
    """The state at step 0: ``params``, the optimizer's initial state (its injected
    learning rate set to ``lr`` unless None), status OK, nothing diverged or stopped."""
    order0 = None if config.batch_size is None else \
        jnp.zeros(_batches_per_epoch(config, data.x.shape[0]) * config.batch_size, jnp.int32)
    last = jnp.int32(config.steps)
    opt_state = config.optimizer.init(params)
    if lr is not None:
        opt_state = _with_learning_rate(opt_state, lr)
    return TrainState(params=params, opt_state=opt_state, step=jnp.int32(0),
                      status=jnp.int32(Status.OK), diverged_step=last, stop_step=last,
                      order=order0, k_order=k_order, k_dropout=k_dropout)


def _draw_order(config, n, order, t, k_order):
    """The epoch's minibatch order: ``permutation(fold_in(k_order, epoch), n)``, padded
    to whole minibatches, drawn once at the epoch's first step."""
    per_epoch = _batches_per_epoch(config, n)

    def draw(_):
        perm = jax.random.permutation(jax.random.fold_in(k_order, t // per_epoch),
                                      n).astype(jnp.int32)
        return jnp.concatenate([perm, jnp.zeros(per_epoch * config.batch_size - n, jnp.int32)])

    # In train, t is the scan's (unbatched) step counter, so under vmap this stays a real
    # branch: the permutation (a sort of n keys) runs once per epoch, not per step.
    return lax.cond(t % per_epoch == 0, draw, lambda o: o, order)


def _training_loss(params, config, data, t, order, k_dropout):
    """The step's loss ½·mean((f(x) − y*)²)·loss_scale over its (mini)batch, and
    (eval output, eval hiddens, training hiddens); the eval pair only when the training
    pass is the eval pass on all the data (full batch without dropout)."""
    network, batch_size = config.network, config.batch_size
    x, y, masks = data
    dropout = has_dropout(network)
    if batch_size is None and not dropout:
        out, hid = network.apply(params, x, train=False)
        return config.loss_scale * q.half_mse(out, y), (out, hid, hid)
    if batch_size is None:
        xb, yb, scale, mask = x, y, 1.0, None
    else:
        b = t % _batches_per_epoch(config, x.shape[0])
        idx = lax.dynamic_slice(order, (b * batch_size,), (batch_size,))
        mask = b * batch_size + jnp.arange(batch_size) < x.shape[0]
        xb, yb = x[idx], y[idx]
        # Mean over the valid rows only: zero the padded rows, rescale the mean.
        scale = batch_size / jnp.sum(mask)
    if masks is not None:
        out, hid = network.apply(params, xb, train=True, masks=tuple(m[t] for m in masks))
    else:
        out, hid = network.apply(params, xb, train=dropout,
                                 key=jax.random.fold_in(k_dropout, t) if dropout else None)
    if mask is not None:
        m = mask[:, None].astype(out.dtype)
        out, yb = out * m, yb * m
    return config.loss_scale * scale * q.half_mse(out, yb), (None, None, hid)


def _finiteness_probe(network, grads):
    """The gradients whose finiteness decides a step's: every weight gradient of a layered
    network is a sum of layer input ⊗ back-propagated signal, and its bias gradient is the
    sum of the signals, non-finite iff one of them is; so with finite loss and hiddens the
    bias gradients suffice (no extra pass over the weights). Any other network: all."""
    if getattr(network, "layer_shapes", None) is not None:
        return [b for _, b in network.to_layers(grads)]
    return grads


def all_finite(tree):
    leaves = jax.tree.leaves(tree)
    return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(a)) for a in leaves],
                            jnp.bool_(True))


def _select(pred, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def train_step(config: StepConfig, data: TrainData, state: TrainState, t, *,
               observe: Callable | None = None, stop_loss=None):
    """Step t (an int32, the scan's counter in :func:`train`): the state after its update,
    and, with ``observe``, the records of the state before it.

    ``observe(out, hiddens) -> (records, finite, loss)`` takes the eval pass on all the
    data; non-finite records freeze the seed as a non-finite step does, and with
    ``stop_loss`` (a traced scalar) a seed whose ``loss`` is below it stops here:
    ``stop_step = t`` and this update and all later ones are skipped. A stopped seed
    makes no update, so it cannot diverge.
    """
    network = config.network
    params, opt_state = state.params, state.opt_state
    status, diverged_step, stop_step = state.status, state.diverged_step, state.stop_step
    order = state.order
    if config.batch_size is not None:
        order = _draw_order(config, data.x.shape[0], order, t, state.k_order)
    (train_loss, aux), grads = jax.value_and_grad(
        lambda p: _training_loss(p, config, data, t, order, state.k_dropout), has_aux=True)(params)
    live = (status == Status.OK) & (stop_step == config.steps)
    if config.guard:
        live = live & (t < config.steps)
    # Divergence is decided BEFORE the update, from small arrays only (see
    # _finiteness_probe; float32 overflow of a product of finite factors aside, which
    # makes the next step's loss non-finite), so the update and the freeze fuse into one
    # elementwise loop.
    finite = jnp.isfinite(train_loss) & all_finite(_finiteness_probe(network, grads)) & \
        all_finite(aux[2])
    records = None
    if observe is not None:
        out, hid = aux[0], aux[1]
        if out is None:
            out, hid = network.apply(params, data.x, train=False)
        records, records_finite, loss = observe(out, hid)
        # A seed must never be OK with non-finite records (finite activations can still
        # overflow a squared distance).
        finite = finite & records_finite
        if stop_loss is not None:
            reached = live & finite & (loss < stop_loss)
            stop_step = jnp.where(reached, t, stop_step)
            live = live & ~reached
    # A seed that was running and now fails freezes here; a frozen seed stays frozen.
    accept = live & finite
    updates, new_opt_state = config.optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    params = _select(accept, new_params, params)
    opt_state = _select(accept, new_opt_state, opt_state)
    newly = live & ~finite
    diverged_step = jnp.where(newly, t, diverged_step)
    status = jnp.where(newly, jnp.int32(Status.DIVERGED), status)
    return state._replace(params=params, opt_state=opt_state, step=state.step + 1,
                          status=status, diverged_step=diverged_step, stop_step=stop_step,
                          order=order), records
