"""The paper's real networks (MLP, ResNet, CNN, dropout MLP) as pure init/apply pairs.

Flax stays inside this package: ``make_network(...)`` returns a frozen ``Network`` whose
``init(key)`` gives a plain parameter pytree and whose ``apply(params, x)`` gives
``(output, hiddens)``. Activations follow PyTorch's derivative convention at 0.
"""

from ._activations import ACTIVATIONS, LEAKY_RELU_SLOPE, activation
from ._architectures import xavier_normal
from ._network import ARCHITECTURES, PRECISIONS, Network, make_network

__all__ = [
    "ARCHITECTURES",
    "ACTIVATIONS",
    "PRECISIONS",
    "LEAKY_RELU_SLOPE",
    "Network",
    "activation",
    "make_network",
    "xavier_normal",
]
