"""Effective rates predicted from a network's own gradient step (docs/predicted-rates.md).

The theory's rates η_h, η_y, η_ȳ are usually fitted to a trajectory. Here they are
read off one training step instead: the first-order change that the step makes to
the pair's representation difference Δφ = φ(x2) − φ(x1) through the encoder
parameters, to the output difference Δŷ through the decoder parameters and to the
midpoint output ȳ = (ŷ1 + ŷ2)/2 through all parameters, each projected (least
squares) on the direction the effective theory moves that quantity per unit rate.
An estimate of the rates like the fits, but from a network: it sits above both
``rsd.theory`` and ``rsd.networks``.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ..networks import Network
from .._validation import as_array, check_choice, check_finite, check_int_range, check_real, is_concrete
from ..quantities import half_mse

__all__ = ["PredictedRates", "predicted_rates"]

_LOSSES = ("half_mse", "mse")


class PredictedRates(NamedTuple):
    """Result of :func:`predicted_rates`: effective rates per training step.

    A NamedTuple (unpacks as ``eta_h, eta_y, eta_mean``, η_ȳ last); scalars for one
    parameter set (leading axes when vmapped). A rate is NaN where the theory's direction for it vanishes and
    the rate is undefined: η_h when w·dx2 = 0 or h = 0, η_y when h·|r|² = 0
    (r = Δŷ − Δy*), η_ȳ when ȳ = ȳ*; or when the inputs are not finite.
    """

    eta_h: jax.Array
    eta_y: jax.Array
    eta_mean: jax.Array


def predicted_rates(
    network: Network,
    params,
    x,
    y,
    *,
    layer: int,
    lr=None,
    update=None,
    pair: tuple[int, int] = (0, 1),
    loss: str = "half_mse",
) -> PredictedRates:
    """Rates (η_h, η_y, η_ȳ) per step that one training step of ``params`` implies.

    With Δx = x_j − x_i, Δy* = y_j − y_i, Δφ and Δŷ the pair's representation (hidden
    record ``layer``) and output differences, h = |Δφ|², r = Δŷ − Δy*, w = Δŷ·r,
    ȳ, ȳ* the pair's mean output and target, and δθ the parameter change of one step
    (−lr·∇L of the full-batch loss on (x, y), or ``update``), split into its encoder
    part δθ_enc (modules 0 … ``layer``) and decoder part δθ_dec (the rest)::

        η_h = −2·⟨J_Δφ·δθ_enc, Δφ⟩ / (dx2·w)       (= ⟨δΔφ_enc, u_h⟩/|u_h|², u_h = −½·dx2·(w/h)·Δφ)
        η_y = −2·⟨J_Δŷ·δθ_dec, r⟩ / (h·|r|²)       (= ⟨δΔŷ_dec, u_y⟩/|u_y|², u_y = −½·h·r)
        η_ȳ = −⟨J_ȳ·δθ, ȳ − ȳ*⟩ / |ȳ − ȳ*|²

    J· are Jacobian-vector products (``jax.jvp``; no finite differences). For a
    two-layer linear network on centred data (x̄ = 0, zero first-layer bias, one
    output) this gives η_h = η_y = lr/2 exactly, and the theory with these rates is
    the network's gradient flow (docs/predicted-rates.md).

    Args:
        network: an :class:`rsd.networks.Network`.
        params: ONE parameter set (as ``network.init`` returns). Batch over seeds with
            ``jax.vmap(lambda p: predicted_rates(network, p, x, y, layer=k, lr=lr))``.
        x: the training inputs [n, in_dim] (n ≥ 2) whose loss the step descends;
            the pair is ``(x[i], x[j])`` for ``pair = (i, j)``.
        y: the training targets [n, out_dim].
        layer: rsd hidden record, 0 … ``network.num_hidden − 1``.
        lr: SGD learning rate (> 0): the step is δθ = −lr·∇L. Rates are per step.
        update: instead of ``lr``, the step δθ itself (a pytree like ``params``), e.g.
            Adam's preconditioned update from optax; give exactly one of the two.
        pair: two distinct row indices of x.
        loss: "half_mse" (½·mean squared error) or "mse" (without the ½), as
            :class:`rsd.training.Setting.loss`.

    The gradient is taken in eval mode (no dropout: the dropout MLP's expected step,
    to O(p)). Arguments are checked on the host (``ValueError`` naming them); inside
    jit/vmap nothing raises, undefined rates are NaN.
    """
    x, y, lr = _check_arguments(network, params, x, y, layer=layer, lr=lr, update=update, pair=pair,
                                loss=loss)
    return _predicted_rates(network, params, x, y, lr, update, layer=layer, pair=tuple(pair), loss=loss)


def _check_arguments(network, params, x, y, *, layer, lr, update, pair, loss):
    """Host checks shared with :func:`rsd.fitting.secant_rates`; returns (x, y, lr) as arrays."""
    if not isinstance(network, Network):
        raise ValueError(f"network must be an rsd.networks.Network (from make_network); "
                         f"got {type(network).__name__}.")
    x, y = as_array("x", x), as_array("y", y)
    if x.ndim != 2 or x.shape[1] != network.in_dim:
        raise ValueError(f"x must have shape [n, {network.in_dim}] (one batch; vmap to batch seeds); "
                         f"got {x.shape}.")
    if y.ndim != 2 or y.shape[1] != network.out_dim:
        raise ValueError(f"y must have shape [n, {network.out_dim}]; got {y.shape}.")
    n = x.shape[0]
    if n < 2 or y.shape[0] != n:
        raise ValueError(f"x and y must hold the same number n >= 2 of points; got {x.shape[0]} and {y.shape[0]}.")
    check_finite("x", x)
    check_finite("y", y)
    check_int_range("layer", layer, 0, network.num_hidden - 1)
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in pair)
            or not all(0 <= i < n for i in pair) or pair[0] == pair[1]):
        raise ValueError(f"pair must be two distinct integers in [0, {n - 1}]; got {pair!r}.")
    check_choice("loss", loss, _LOSSES)
    if (lr is None) == (update is None):
        raise ValueError("give exactly one of lr (an SGD step −lr·∇L) and update (the step itself).")
    if lr is not None:
        lr = as_array("lr", lr)
        if lr.ndim != 0:
            raise ValueError(f"lr must be a scalar (vmap to batch); got shape {lr.shape}.")
        if is_concrete(lr):
            check_real("lr", float(lr), lo=0.0, lo_open=True)
    # Structure and shapes of params (and update) are checked by apply, at trace time.
    jax.eval_shape(lambda p: network.apply(p, x), params)
    if update is not None:
        if jax.tree_util.tree_structure(update) != jax.tree_util.tree_structure(params):
            raise ValueError("update must have the structure of params (one {'kernel', 'bias'} dict per module).")
        for a, b in zip(jax.tree_util.tree_leaves(update), jax.tree_util.tree_leaves(params)):
            if jnp.shape(a) != jnp.shape(b):
                raise ValueError(f"update must have the shapes of params; got a leaf of shape {jnp.shape(a)} "
                                 f"where params has {jnp.shape(b)}.")
    return x, y, lr


@eqx.filter_jit
def _predicted_rates(network, params, x, y, lr, update, *, layer, pair, loss):
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params), x, y, float)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
    x, y = x.astype(dtype), y.astype(dtype)
    scale = 2.0 if loss == "mse" else 1.0

    if update is None:
        grads = jax.grad(lambda p: scale * half_mse(network.apply(p, x)[0], y))(params)
        update = jax.tree_util.tree_map(lambda g: -lr * g, grads)
    update = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), update)
    # Modules 0 … layer compute hidden record `layer` (every architecture): the encoder.
    zero = lambda t: jax.tree_util.tree_map(jnp.zeros_like, t)  # noqa: E731
    enc = tuple(u if k <= layer else zero(u) for k, u in enumerate(update))
    dec = tuple(zero(u) if k <= layer else u for k, u in enumerate(update))

    i, j = pair
    xp = jnp.stack([x[i], x[j]])

    def pair_state(p):
        out, hid = network.apply(p, xp)
        phi = hid[layer]
        return phi[1] - phi[0], out[1] - out[0], 0.5 * (out[0] + out[1])

    (dphi, dyhat, mean), lin = jax.linearize(pair_state, params)
    d_dphi_enc = lin(enc)[0]
    d_dyhat_dec = lin(dec)[1]
    d_mean = lin(update)[2]

    dx2 = jnp.sum((x[j] - x[i]) ** 2)
    dy_target = y[j] - y[i]
    mean_target = 0.5 * (y[i] + y[j])
    h = jnp.sum(dphi**2)
    r = dyhat - dy_target
    w = jnp.dot(dyhat, r)
    e = mean - mean_target

    eta_h = _ratio(-2.0 * jnp.dot(d_dphi_enc, dphi), dx2 * w * (h > 0))
    eta_y = _ratio(-2.0 * jnp.dot(d_dyhat_dec, r), h * jnp.dot(r, r))
    eta_mean = _ratio(-jnp.dot(d_mean, e), jnp.dot(e, e))
    return PredictedRates(eta_h=eta_h, eta_y=eta_y, eta_mean=eta_mean)


def _ratio(num, den):
    # Double where: a vanishing denominator gives NaN without poisoning gradients.
    ok = (den != 0) & jnp.isfinite(den) & jnp.isfinite(num)
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), jnp.nan)
