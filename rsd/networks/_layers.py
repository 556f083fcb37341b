"""Flax building blocks of the paper's networks; nothing outside rsd.networks sees them.

Every parametrized module is named ``layer_<n>`` in forward order, so ``Network`` (in
``_network.py``) can turn Flax's parameter dict into a tuple of ``{"kernel", "bias"}``
dicts and back. ``DenseStack`` serves the MLP, the ResNet and the dropout MLP; the
CNN's Flax module lives with its architecture in ``_cnn.py``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ._activations import activation

__all__ = ["xavier_normal", "dense", "Dense", "dense_layer", "DenseStack"]


def xavier_normal(gain: float):
    """Initializer W ~ Normal(0, gain²·2/(fan_in + fan_out)), fans as in ``torch.nn.init.xavier_normal_``.

    Dense kernels are [in, out]; conv kernels are [k, in_ch, out_ch], whose fans are
    in_ch·k and out_ch·k (PyTorch multiplies both by the receptive field size).
    """

    def init(key, shape, dtype=jnp.float32):
        receptive = math.prod(shape[:-2])
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        return std * jax.random.normal(key, shape, dtype)

    return init


# Up to this many rows (samples), the kernel's derivative is formed as a sum of outer
# products instead of a dot; beyond it a dot is faster than the elementwise loop.
OUTER_PRODUCT_ROWS = 8
# Up to this many rows, x·W (and δ·Wᵀ) is one vector-matrix product per row.
SPLIT_ROWS = 2


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def dense(x, kernel, bias, precision=None):
    """z = x·W + b for x [..., in], W [in, out], b [out]: ``flax.linen.Dense``'s forward.

    The derivative is the usual one; only how it is formed differs. For a few rows
    (≤ ``OUTER_PRODUCT_ROWS``) the kernel's tangent is written row by row, so its
    transpose, the kernel gradient Σ_b x_b ⊗ δ_b, is a sum of outer products: pure
    broadcasts and multiplies, which XLA fuses into the elementwise optimizer update
    (W − lr·g reads and writes W once, and g is never stored). As a dot, g is
    materialized (in the transposed layout) and read back by the update: one more
    pass over every weight per step, the costliest thing in a memory-bound step.
    The two forms differ by float32 round-off only.
    """
    z = _matmul(x, kernel, precision)
    return z + jnp.reshape(bias, (1,) * (z.ndim - 1) + (-1,))


def _matmul(x, kernel, precision):
    """x·W over x's last axis; a couple of rows as separate vector-matrix products.

    XLA:CPU's matrix kernels stream a [2, P]×[P, P] product at about half the speed of
    two [P]×[P, P] ones (the second finds W in cache); the transpose of this form, the
    backward pass's δ·Wᵀ, is split the same way. Same products, summed per output.
    """
    rows = x.reshape(-1, x.shape[-1])
    if not 0 < rows.shape[0] <= SPLIT_ROWS:
        return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)
    z = [lax.dot_general(r, kernel, (((0,), (0,)), ((), ())), precision=precision) for r in rows]
    return jnp.stack(z).reshape(x.shape[:-1] + kernel.shape[1:])


@functools.partial(dense.defjvp, symbolic_zeros=True)
def _dense_jvp(precision, primals, tangents):
    x, kernel, bias = primals
    dx, dkernel, dbias = tangents
    z = dense(x, kernel, bias, precision)
    terms = []
    if not _is_zero(dx):
        terms.append(_matmul(dx, kernel, precision))
    if not _is_zero(dkernel):
        rows = x.reshape(-1, x.shape[-1])
        if 0 < rows.shape[0] <= OUTER_PRODUCT_ROWS:
            # Row b of the tangent is Σ_i x_bi·dW_i, a broadcast-multiply-sum; its transpose
            # gives the kernel gradient one outer product x_b ⊗ δ_b per row.
            per_row = [jnp.sum(r[:, None] * dkernel, axis=0) for r in rows]
            terms.append(jnp.stack(per_row).reshape(z.shape))
        else:
            terms.append(lax.dot_general(x, dkernel, (((x.ndim - 1,), (0,)), ((), ())),
                                         precision=precision))
    if not _is_zero(dbias):
        terms.append(jnp.broadcast_to(jnp.reshape(dbias, (1,) * (z.ndim - 1) + (-1,)), z.shape))
    dz = functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(z)
    return z, dz


def _is_zero(tangent):
    return isinstance(tangent, jax.custom_derivatives.SymbolicZero)


class Dense(nn.Module):
    """``flax.linen.Dense`` (same parameters, names, initialization order) through :func:`dense`."""

    features: int
    kernel_init: Any
    bias_init: Any = nn.initializers.zeros
    precision: Any = None

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=None)
        return dense(x, kernel, bias, self.precision)


def dense_layer(features, gain, precision, n):
    """Parametrized module ``layer_<n>``: a :class:`Dense` with Xavier-normal kernel and zero bias."""
    return Dense(
        features,
        kernel_init=xavier_normal(gain),
        bias_init=nn.initializers.zeros,
        precision=precision,
        name=f"layer_{n}",
    )


class DenseStack(nn.Module):
    """MLP, ResNet (``skip``) and dropout MLP: Linear(in→P), act, (L−1)×[Linear(P→P), act], Linear(P→out).

    With ``skip``, hidden layers 2 ≤ n ≤ L−1 compute a_n = act(W_n a_{n−1} + b_n) + a_{n−2}.
    With ``keep`` (one boolean mask per linear layer), the layer input is multiplied by
    keep/(1−p) first: PyTorch's inverted dropout with an explicit mask.
    """

    width: int
    depth: int
    out_dim: int
    activation: str
    gain: float
    skip: bool = False
    dropout_rate: float = 0.0
    precision: Any = None

    @nn.compact
    def __call__(self, x, keep=None):
        act = activation(self.activation)
        # PyTorch builds its dropout noise as bernoulli(1−p) / (1−p) in the tensor's dtype
        # and then multiplies; forming the same factor first keeps the rounding identical.
        scale = jnp.asarray(1.0 / (1.0 - self.dropout_rate), dtype=x.dtype)
        hiddens = []
        a = x
        for n in range(self.depth + 1):
            if keep is not None:
                a = a * jnp.where(keep[n], scale, jnp.zeros_like(scale))
            features = self.out_dim if n == self.depth else self.width
            z = dense_layer(features, self.gain, self.precision, n)(a)
            if n == self.depth:
                return z, tuple(hiddens)
            a = act(z)
            if self.skip and n >= 2:
                a = a + hiddens[n - 2]
            hiddens.append(a)
