"""Effective rates from a few real training steps (docs/predicted-rates.md, "Secant rates").

:func:`rsd.fitting.predicted_rates` reads the rates off the first-order change of one
step. In deep networks trained at the paper's learning rates the step is far from
first order: the parameters oscillate across a sharp direction of the loss, and the
linearization at one end of the oscillation carries the curvature of h and y along
it, a change that the next step undoes. Here the rates come instead from the actual
change of (h, y, w) over k full-batch SGD steps from the given parameters, matched to
the theory's field integrated along those steps (the trapezoid rule), as
:func:`rsd.fitting.initial_rates` does over a whole trajectory.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from .._validation import check_int_range
from ..quantities import half_mse
from ._predicted import PredictedRates, _check_arguments, _ratio

__all__ = ["secant_rates"]


def secant_rates(
    network,
    params,
    x,
    y,
    *,
    layer: int,
    lr,
    steps: int = 8,
    pair: tuple[int, int] = (0, 1),
    loss: str = "half_mse",
) -> PredictedRates:
    """Rates (η_h, η_y, η_ȳ) per step that ``steps`` SGD steps from ``params`` imply.

    Takes k = ``steps`` full-batch SGD steps θ ← θ − lr·∇L on (x, y), recording the pair's
    z = (h, y, w) and mean error e = ȳ − ȳ* before each and after the last. With the
    theory's field written dz/dt = η_h·A(z) + η_y·B(z) (A, B as in
    ``rsd.theory.vector_field``; B has no h component) and ∫ the trapezoid sum over
    the k steps::

        η_h = (h_k − h_0) / ∫A_h,    η_y = (y_k − y_0 − η_h·∫A_y) / ∫B_y,
        η_ȳ = −(|e_k|² − |e_0|²) / (2·∫|e|²)

    i.e. the rates for which the theory's integrated field equals the actual change of
    h and y (and of |e|², which decays as e^(−2η_ȳ t)). For small steps this is
    :func:`predicted_rates` (one step, first order); for the steps that deep networks
    take at the paper's learning rates it differs (docs/predicted-rates.md). A rate is
    NaN where its denominator vanishes. Arguments as :func:`predicted_rates` (SGD only:
    ``lr`` > 0), plus ``steps`` ≥ 1; checked on the host (``ValueError``).
    """
    if lr is None:
        raise ValueError("lr must be given: secant rates take SGD steps −lr·∇L.")
    x, y, lr = _check_arguments(network, params, x, y, layer=layer, lr=lr, update=None, pair=pair,
                                loss=loss)
    check_int_range("steps", steps, 1)
    return _secant_rates(network, params, x, y, lr, layer=layer, steps=int(steps), pair=tuple(pair),
                         loss=loss)


@eqx.filter_jit
def _secant_rates(network, params, x, y, lr, *, layer, steps, pair, loss):
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params), x, y, float)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
    x, y = x.astype(dtype), y.astype(dtype)
    scale = 2.0 if loss == "mse" else 1.0
    i, j = pair
    dx2 = jnp.sum((x[j] - x[i]) ** 2)
    dy_target = y[j] - y[i]
    mean_target = 0.5 * (y[i] + y[j])

    def observe(p):
        out, hid = network.apply(p, jnp.stack([x[i], x[j]]))
        dphi = hid[layer][1] - hid[layer][0]
        dyhat = out[1] - out[0]
        e = 0.5 * (out[0] + out[1]) - mean_target
        return jnp.stack([jnp.sum(dphi**2), jnp.dot(dyhat, dyhat), jnp.dot(dyhat, dyhat - dy_target),
                          jnp.dot(e, e)])

    def step(p, _):
        grads = jax.grad(lambda q: scale * half_mse(network.apply(q, x)[0], y))(p)
        return jax.tree_util.tree_map(lambda a, g: a - lr * g, p, grads), observe(p)

    last, zs = lax.scan(step, params, None, length=steps)
    zs = jnp.concatenate([zs, observe(last)[None]])  # [k + 1, 4]
    h, yy, w, e2 = zs[:, 0], zs[:, 1], zs[:, 2], zs[:, 3]
    safe_h = jnp.where(h > 0, h, 1.0)
    trapezoid = lambda f: jnp.sum(0.5 * (f[1:] + f[:-1]))  # noqa: E731
    a_h = trapezoid(-dx2 * w)
    a_y = trapezoid(-dx2 * w * yy / safe_h)
    b_y = trapezoid(-w * h)
    eta_h = _ratio(h[-1] - h[0], a_h * jnp.all(h > 0))
    eta_y = _ratio(yy[-1] - yy[0] - eta_h * a_y, b_y)
    eta_mean = _ratio(-(e2[-1] - e2[0]), 2.0 * trapezoid(e2))
    return PredictedRates(eta_h=eta_h, eta_y=eta_y, eta_mean=eta_mean)
