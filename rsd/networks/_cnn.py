"""The convolutional network, its Flax module and its width rule (defined here only)."""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from .._validation import check_int_range
from ._activations import activation
from ._layers import dense_layer, xavier_normal
from ._network import Network

__all__ = ["CNN", "CONV_CHANNELS", "CONV_KERNEL", "ConvNet", "cnn_min_width"]

CONV_CHANNELS = 20
"""Channels of the CNN's hidden convolutions (the last one has 1)."""
CONV_KERNEL = 11
"""Kernel size of the CNN's convolutions; with no padding each shortens the length by
``CONV_KERNEL − 1`` = 10."""


def cnn_min_width(depth: int) -> int:
    """Smallest width P of a CNN of depth L: its L + 1 convolutions shorten the length to
    P − 10·(L + 1), which must be at least 1, so P ≥ 10·(L + 1) + 1."""
    check_int_range("depth", depth, 1)
    return (CONV_KERNEL - 1) * (depth + 1) + 1


def _conv_lengths(width, depth):
    """Length after each of the L + 1 convolutions."""
    return [width - (CONV_KERNEL - 1) * (i + 1) for i in range(depth + 1)]


class CNN(Network):
    """Convolutional network ("cnn"): Linear(in→P), act, Conv1d(1→20), act,
    (L−1)×[Conv1d(20→20), act], Conv1d(20→1), act, Linear(P − 10·(L+1) → out).

    Convolutions have kernel 11 and no padding, so the width must be at least
    ``cnn_min_width(depth)``. Hidden records (L + 2): i = 0 the first Linear (P features),
    i = 1 … L+1 the convolutions' outputs flattened channel-major (20·length, the last
    one 1·length).
    """

    architecture: ClassVar[str] = "cnn"

    @classmethod
    def _check_size(cls, width, depth):
        shortest = cnn_min_width(depth)
        if width < shortest:
            raise ValueError(
                f"width must be >= {shortest} for the cnn with depth {depth} "
                f"(each of its {depth + 1} convs shortens the length by {CONV_KERNEL - 1}); got {width}."
            )

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """P, then 20·length after each hidden convolution, then the last length."""
        lengths = _conv_lengths(self.width, self.depth)
        return (self.width,) + tuple(CONV_CHANNELS * n for n in lengths[:-1]) + (lengths[-1],)

    @property
    def layer_shapes(self) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
        """(kernel, bias) shapes: the first Linear, the L + 1 convs [k, in_ch, out_ch], the last Linear."""
        P, L = self.width, self.depth
        chans = [1] + [CONV_CHANNELS] * L + [1]
        convs = tuple(((CONV_KERNEL, a, b), (b,)) for a, b in zip(chans[:-1], chans[1:]))
        last = _conv_lengths(P, L)[-1]
        return (((self.in_dim, P), (P,)),) + convs + (((last, self.out_dim), (self.out_dim,)),)

    @property
    def layer_kinds(self) -> tuple[str, ...]:
        """"dense", then "conv" L + 1 times, then "dense"."""
        return ("dense",) + ("conv",) * (self.depth + 1) + ("dense",)

    def _module(self):
        return ConvNet(width=self.width, depth=self.depth, out_dim=self.out_dim, activation=self.activation,
                       gain=self.gain, precision=self._precision)


class ConvNet(nn.Module):
    """The CNN's Flax module: parametrized submodules ``layer_0`` … ``layer_{L+2}``.

    Hidden records are flattened channel-major, as PyTorch's ``.reshape(batch, −1)`` of a
    [batch, channels, length] tensor.
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
        a = act(dense_layer(self.width, self.gain, self.precision, 0)(x))
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
            # explicit sizes, not -1: an empty batch (batch = 0) must still reshape
            hiddens.append(jnp.swapaxes(a, 1, 2).reshape(batch, a.shape[1] * a.shape[2]))
        z = dense_layer(self.out_dim, self.gain, self.precision, len(channels) + 1)(a[:, :, 0])
        return z, tuple(hiddens)
