"""The Flax modules behind ``Network`` (DESIGN.md §2); nothing outside rsd.networks sees them.

Every parametrized module is named ``layer_<n>`` in forward order, so the thin layer in
``_network.py`` can turn Flax's parameter dict into a tuple of ``{"kernel", "bias"}``
dicts and back.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._activations import activation

__all__ = ["xavier_normal", "DenseStack", "ConvNet", "CONV_CHANNELS", "CONV_KERNEL"]

CONV_CHANNELS = 20
CONV_KERNEL = 11


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


def _dense(features, gain, precision, n):
    return nn.Dense(
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
            z = _dense(features, self.gain, self.precision, n)(a)
            if n == self.depth:
                return z, tuple(hiddens)
            a = act(z)
            if self.skip and n >= 2:
                a = a + hiddens[n - 2]
            hiddens.append(a)


class ConvNet(nn.Module):
    """CNN: Linear(in→P), act, Conv1d(1→20), act, (L−1)×[Conv1d(20→20), act], Conv1d(20→1), act, Linear.

    Convs have kernel 11 and no padding, so each shortens the length by 10 and the last
    Linear maps P − 10·(L+1) → out. Hidden records are flattened channel-major, as
    PyTorch's ``.reshape(batch, −1)`` of a [batch, channels, length] tensor.
    """

    width: int
    depth: int
    out_dim: int
    activation: str
    gain: float
    precision: Any = None

    @nn.compact
    def __call__(self, x, keep=None):
        act = activation(self.activation)
        batch = x.shape[0]
        a = act(_dense(self.width, self.gain, self.precision, 0)(x))
        hiddens = [a]
        a = a[:, :, None]  # Flax convs are channels-last: [batch, length, channels]
        channels = [CONV_CHANNELS] * self.depth + [1]
        for i, c in enumerate(channels):
            conv = nn.Conv(
                c,
                (CONV_KERNEL,),
                padding="VALID",
                kernel_init=xavier_normal(self.gain),
                bias_init=nn.initializers.zeros,
                precision=self.precision,
                name=f"layer_{i + 1}",
            )
            a = act(conv(a))
            hiddens.append(jnp.swapaxes(a, 1, 2).reshape(batch, -1))
        z = _dense(self.out_dim, self.gain, self.precision, len(channels) + 1)(a[:, :, 0])
        return z, tuple(hiddens)
