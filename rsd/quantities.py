"""The one definition of the representational quantities of a pair of inputs.

Theory, training and fitting all compute h, y, w, e0 and the loss through these
functions, so the effective theory and the networks can never drift apart.
For a pair (x1, y1*), (x2, y2*) with representations phi1, phi2 and outputs
yhat1, yhat2:

    h  = ||phi2 - phi1||²                      squared representational distance
    y  = ||yhat2 - yhat1||²                    squared output distance
    w  = y - (y2* - y1*)·(yhat2 - yhat1)       alignment
    e0 = ||(yhat1 + yhat2)/2 - (y1* + y2*)/2||²  mean-output error

Every function reduces over the last axis and broadcasts over leading ones.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = [
    "representation_distance",
    "output_distance",
    "alignment",
    "mean_output_error",
    "pair_quantities",
    "squared_distance",
    "pairwise_squared_distances",
    "half_mse",
]


def squared_distance(a, b):
    """||b - a||² over the last axis.

    Args:
        a: points [..., d].
        b: points [..., d], broadcasting against ``a``.

    Returns:
        The squared Euclidean distances [...].
    """
    d = jnp.asarray(b) - jnp.asarray(a)
    return jnp.sum(d * d, axis=-1)


def representation_distance(phi1, phi2):
    """h = ||phi2 - phi1||², the squared distance of two hidden representations.

    Args:
        phi1: the first input's hidden representation [..., features].
        phi2: the second input's hidden representation [..., features].

    Returns:
        h [...], in squared representation units.
    """
    return squared_distance(phi1, phi2)


def output_distance(yhat1, yhat2):
    """y = ||yhat2 - yhat1||², the squared distance of two network outputs.

    Args:
        yhat1: the network's output for the first input [..., out].
        yhat2: the network's output for the second input [..., out].

    Returns:
        y [...], in squared output units.
    """
    return squared_distance(yhat1, yhat2)


def alignment(yhat1, yhat2, target1, target2):
    """w = Δŷ·(Δŷ - Δy*) with Δ = second minus first; zero at a perfect fit.

    Positive while the outputs' difference overshoots the targets' along itself.
    Equivalently w = y − Δy*·Δŷ.

    Args:
        yhat1: output for the first input [..., out].
        yhat2: output for the second input [..., out].
        target1: target y1* of the first input [..., out].
        target2: target y2* of the second input [..., out].

    Returns:
        w [...], in squared output units.
    """
    d_out = jnp.asarray(yhat2) - jnp.asarray(yhat1)
    d_tgt = jnp.asarray(target2) - jnp.asarray(target1)
    return jnp.sum(d_out * (d_out - d_tgt), axis=-1)


def mean_output_error(yhat1, yhat2, target1, target2):
    """e0 = ||(ŷ1 + ŷ2)/2 - (y1* + y2*)/2||², the error of the pair's mean output.

    Evaluated at step 0 it is the e0 of :func:`rsd.theory.loss_curve`.

    Args:
        yhat1: output for the first input [..., out].
        yhat2: output for the second input [..., out].
        target1: target of the first input [..., out].
        target2: target of the second input [..., out].

    Returns:
        e [...], in squared output units.
    """
    m = 0.5 * (jnp.asarray(yhat1) + jnp.asarray(yhat2))
    t = 0.5 * (jnp.asarray(target1) + jnp.asarray(target2))
    return squared_distance(t, m)


def pair_quantities(phi1, phi2, yhat1, yhat2, target1, target2):
    """(h, y, w) of a pair, stacked on a new last axis (the theory's state z).

    Args:
        phi1: hidden representation of the first input [..., features].
        phi2: hidden representation of the second input [..., features].
        yhat1: output for the first input [..., out].
        yhat2: output for the second input [..., out].
        target1: target of the first input [..., out].
        target2: target of the second input [..., out].

    Returns:
        z [..., 3] = (:func:`representation_distance`, :func:`output_distance`,
        :func:`alignment`), the leading shapes broadcast together.
    """
    h = representation_distance(phi1, phi2)
    y = output_distance(yhat1, yhat2)
    w = alignment(yhat1, yhat2, target1, target2)
    return jnp.stack(jnp.broadcast_arrays(h, y, w), axis=-1)


def pairwise_squared_distances(points):
    """Matrix D[i, j] = ||p_i - p_j||² of a set of points [..., n, d] → [..., n, n].

    Args:
        points: n points of dimension d, [..., n, d].

    Returns:
        D [..., n, n], symmetric with a zero diagonal (the input matrices of
        :func:`rsd.theory.predicted_distance_matrix`).
    """
    p = jnp.asarray(points)
    return squared_distance(p[..., :, None, :], p[..., None, :, :])


def half_mse(prediction, target):
    """The training loss: ½·mean over batch and output components of (ŷ - y*)².

    Args:
        prediction: network outputs ŷ [batch, out] (any shape).
        target: targets y* of the same shape.

    Returns:
        The scalar loss.
    """
    d = jnp.asarray(prediction) - jnp.asarray(target)
    return 0.5 * jnp.mean(d * d)
