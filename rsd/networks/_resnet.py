"""The residual network: the MLP with the activation two layers back added."""

from __future__ import annotations

from typing import ClassVar

from ._mlp import DenseNetwork

__all__ = ["ResNet"]


class ResNet(DenseNetwork):
    """Residual network ("resnet"): the MLP whose hidden layers 2 ≤ n ≤ L−1 compute
    a_n = act(W_n a_{n−1} + b_n) + a_{n−2} (the reference's "skip" model).

    Hidden record i is a_i (i = 0 … L−1), P features.
    """

    architecture: ClassVar[str] = "resnet"
    _skip: ClassVar[bool] = True
