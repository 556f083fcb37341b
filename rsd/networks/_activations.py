"""Elementwise activations with PyTorch's derivative convention at exactly 0.

The two-point experiments put the second input at exactly 0 and start every bias
at 0, so at step 0 every pre-activation of that input is exactly 0 and the
derivative *at* 0 decides its early dynamics. PyTorch counts only
x > 0 as positive: relu'(0) = 0, leaky_relu'(0) = 0.01. ``jax.nn.leaky_relu``
uses x >= 0 (slope 1 at 0), so it is not used here. Like PyTorch's, every activation
maps NaN to NaN (a non-finite pre-activation must stay visible to the divergence check).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._validation import check_choice

__all__ = ["ACTIVATIONS", "LEAKY_RELU_SLOPE", "activation"]

ACTIVATIONS = ("none", "linear", "relu", "leaky_relu", "tanh", "elu", "silu")
"""The activation names :func:`activation` accepts ("none" and "linear" are both the
identity; "silu" is swish)."""
LEAKY_RELU_SLOPE = 0.01
"""Slope of "leaky_relu" for negative inputs, φ(x) = 0.01·x there (PyTorch's default)."""


def _identity(x):
    """φ(x) = x."""
    return x


def _relu(x):
    """φ(x) = 0 for x <= 0, else x; φ'(0) = 0 (the gradient takes the x <= 0 branch), φ(NaN) = NaN.

    Written as "x <= 0" rather than "x > 0" so NaN (for which both are false) passes
    through as in PyTorch instead of becoming 0 and hiding a diverged input.
    """
    return jnp.where(x <= 0, jnp.zeros_like(x), x)


def _leaky_relu(x):
    """φ(x) = x for x > 0, else 0.01·x; φ'(0) = 0.01 (PyTorch's convention)."""
    return jnp.where(x > 0, x, LEAKY_RELU_SLOPE * x)


def _elu(x):
    """φ(x) = x for x > 0, else exp(x) − 1; φ'(0) = 1 from both sides."""
    # expm1 only sees x <= 0, so the unused branch can't overflow and poison the gradient;
    # a where (not jnp.minimum, whose gradient splits ½/½ at the tie x = 0) keeps φ'(0) = 1.
    safe = jnp.where(x > 0, jnp.zeros_like(x), x)
    return jnp.where(x > 0, x, jnp.expm1(safe))


def _silu(x):
    """φ(x) = x·σ(x) (swish)."""
    return x * jax.nn.sigmoid(x)


_FUNCTIONS = {
    "none": _identity,
    "linear": _identity,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "tanh": jnp.tanh,
    "elu": _elu,
    "silu": _silu,
}


def activation(name: str):
    """The elementwise function called ``name`` (one of ``ACTIVATIONS``; "none" = "linear" = identity).

    Derivatives at 0 follow PyTorch (relu'(0) = 0, leaky_relu'(0) = ``LEAKY_RELU_SLOPE``).

    Args:
        name: an activation name from ``ACTIVATIONS``.

    Returns:
        A function φ mapping an array to an array of the same shape, elementwise.
        An unknown name raises ``ValueError``.
    """
    check_choice("activation", name, ACTIVATIONS)
    return _FUNCTIONS[name]
