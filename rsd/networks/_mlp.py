"""The multilayer perceptron, and the dense-stack base it shares with the ResNet and the dropout MLP."""

from __future__ import annotations

from typing import ClassVar

from ._layers import DenseStack
from ._network import Network

__all__ = ["MLP"]


class DenseNetwork(Network):
    """Linear(in→P), act, (L−1)×[Linear(P→P), act], Linear(P→out): L hidden records of P features.

    The MLP, the ResNet and the dropout MLP differ only in ``_skip`` (add the activation
    two layers back) and ``has_dropout``; they share shapes and the Flax module.
    """

    _skip: ClassVar[bool] = False

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """Feature count of each hidden record: P, L times."""
        return (self.width,) * self.depth

    @property
    def layer_shapes(self) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
        """(kernel [fan_in, fan_out], bias [fan_out]) of the L + 1 linear layers."""
        dims = [self.in_dim] + [self.width] * self.depth + [self.out_dim]
        return tuple(((a, b), (b,)) for a, b in zip(dims[:-1], dims[1:]))

    @property
    def layer_kinds(self) -> tuple[str, ...]:
        """"dense", L + 1 times."""
        return ("dense",) * (self.depth + 1)

    def _module(self):
        return DenseStack(
            width=self.width,
            depth=self.depth,
            out_dim=self.out_dim,
            activation=self.activation,
            gain=self.gain,
            precision=self._precision,
            skip=self._skip,
            dropout_rate=self.dropout_rate if self.has_dropout else 0.0,
        )


class MLP(DenseNetwork):
    """Multilayer perceptron ("mlp"): Linear(in→P), act, (L−1)×[Linear(P→P), act], Linear(P→out).

    Hidden record i is the activation of hidden layer i (i = 0 … L−1), P features.
    """

    architecture: ClassVar[str] = "mlp"
