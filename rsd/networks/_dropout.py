"""The MLP with dropout before every linear layer, PyTorch's inverted dropout."""

from __future__ import annotations

from typing import ClassVar

from .._validation import check_int_range
from ._mlp import DenseNetwork

__all__ = ["DropoutMLP"]


class DropoutMLP(DenseNetwork):
    """MLP with dropout ("dropout"): every linear layer's input is multiplied by keep/(1−p)
    in training (``apply(..., train=True)`` with ``key`` or ``masks``), p = ``dropout_rate``.

    Hidden record i is the activation of hidden layer i (i = 0 … L−1), P features; eval
    mode (``train=False``) is the MLP.
    """

    architecture: ClassVar[str] = "dropout"

    @property
    def has_dropout(self) -> bool:
        """True: training draws keep masks (``dropout_masks``)."""
        return True

    def paper_layer(self, index: int) -> int:
        """rsd's hidden record of the paper tables' module-output ``index``.

        The tables count [dropout, linear, dropout, linear, …]: odd index 2k+1 is hidden
        linear layer k → k (so 5 → 2); even index 2k ≥ 2 is the dropout after hidden layer
        k−1, the identity in eval mode → k − 1; index 0, the dropout of the input, is no
        hidden layer. Allowed: 1 … 2·depth.
        """
        check_int_range("index", index, 0, 2 * self.depth)
        if index == 0:
            raise ValueError("index 0 of a dropout MLP is the dropout of the input, not a hidden layer; "
                             f"allowed: an index in [1, {2 * self.depth}].")
        return (int(index) - 1) // 2
