"""Networks as pure init/apply pairs: the paper's four architectures and your own Flax modules.

Every network follows ``AbstractNetwork``: a frozen, hashable description whose
``init(key)`` gives a plain parameter pytree and whose ``apply(params, x)`` gives
``(output, hiddens)``. ``make_network(...)`` builds the paper's architectures (MLP,
ResNet, CNN, dropout MLP; one ``Network`` subclass each, found by name in a registry
that ``register_network`` extends); ``FlaxNetwork`` wraps a Flax module of your own.
Flax stays inside this package. Activations follow PyTorch's derivative convention at 0.
"""

from ._activations import ACTIVATIONS, LEAKY_RELU_SLOPE, activation
from ._base import AbstractNetwork
from ._cnn import CNN, CONV_CHANNELS, CONV_KERNEL, cnn_min_width
from ._dropout import DropoutMLP
from ._flax import FlaxNetwork
from ._layers import xavier_normal
from ._mlp import MLP
from ._network import PRECISIONS, Network
from ._registry import ARCHITECTURES, make_network, register_network
from ._resnet import ResNet

__all__ = [
    "ARCHITECTURES",
    "ACTIVATIONS",
    "PRECISIONS",
    "LEAKY_RELU_SLOPE",
    "CONV_CHANNELS",
    "CONV_KERNEL",
    "AbstractNetwork",
    "Network",
    "MLP",
    "ResNet",
    "CNN",
    "DropoutMLP",
    "FlaxNetwork",
    "activation",
    "cnn_min_width",
    "make_network",
    "register_network",
    "xavier_normal",
]
