"""The architecture registry: name → ``Network`` subclass, and ``make_network`` that reads it."""

from __future__ import annotations

import inspect

from ._base import check_name, short_repr
from ._cnn import CNN
from ._dropout import DropoutMLP
from ._mlp import MLP
from ._network import Network
from ._resnet import ResNet

__all__ = ["ARCHITECTURES", "make_network", "register_network"]

_REGISTRY: dict[str, type[Network]] = {cls.architecture: cls for cls in (MLP, ResNet, CNN, DropoutMLP)}

ARCHITECTURES = tuple(_REGISTRY)
"""The paper's architecture names ``make_network`` accepts: multilayer perceptron,
residual network, convolutional network and MLP with dropout (``register_network``
adds more)."""


def register_network(name: str, cls: type[Network]) -> None:
    """Make ``make_network(name, ...)`` build ``cls``, a concrete subclass of ``Network``
    whose class attribute ``architecture`` is ``name``. A name taken by another class
    cannot be registered again (registering the same class twice does nothing).

    Example:
        ```python
        from rsd import networks

        class WideMLP(networks.MLP):  # the MLP under another name
            architecture = "wide_mlp_example"  # a class attribute, not a field

        networks.register_network("wide_mlp_example", WideMLP)
        net = networks.make_network("wide_mlp_example", activation="relu", width=64, depth=2,
                                    gain=1.0, in_dim=2, out_dim=1)
        assert type(net) is WideMLP and net.architecture == "wide_mlp_example"
        ```
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string; got {short_repr(name)}.")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"name {name!r} is already registered (to {_REGISTRY[name].__name__}); "
                         f"registered: {sorted(_REGISTRY)}.")
    if not (isinstance(cls, type) and issubclass(cls, Network)) or inspect.isabstract(cls):
        raise ValueError(f"cls must be a concrete subclass of rsd.networks.Network; got {short_repr(cls)}.")
    if getattr(cls, "architecture", None) != name:
        raise ValueError(f"cls.architecture must be the registered name {name!r}; "
                         f"got {short_repr(getattr(cls, 'architecture', None))}.")
    _REGISTRY[name] = cls


def make_network(
    architecture: str,
    *,
    activation: str,
    width: int,
    depth: int,
    gain: float,
    in_dim: int,
    out_dim: int,
    dropout_rate: float = 0.1,
    precision: str = "highest",
) -> Network:
    """Validate the settings on the host and return the ``Network`` of that architecture.

    ``architecture`` names a registered class (``ARCHITECTURES``, plus any added by
    ``register_network``). ``precision`` is the matmul/conv precision; "highest"
    (default) keeps float32 products exact on accelerators (no TF32), as PyTorch's
    defaults do. Invalid settings raise ``ValueError`` naming the argument.

    Example:
        ```python
        import jax
        import jax.numpy as jnp
        from rsd import networks

        net = networks.make_network("mlp", activation="tanh", width=8, depth=3, gain=1.0,
                                    in_dim=2, out_dim=1)
        params = net.init(jax.random.key(0))
        out, hiddens = net.apply(params, jnp.ones((5, 2)))   # out: [5, 1]
        assert out.shape == (5, 1) and hiddens[0].shape == (5, 8)
        ```
    """
    check_name("architecture", architecture, tuple(_REGISTRY))
    cls = _REGISTRY[architecture]
    cls.check_settings(activation=activation, width=width, depth=depth, gain=gain, in_dim=in_dim,
                       out_dim=out_dim, dropout_rate=dropout_rate, precision=precision)
    return cls(
        activation=activation,
        width=int(width),
        depth=int(depth),
        gain=float(gain),
        in_dim=int(in_dim),
        out_dim=int(out_dim),
        dropout_rate=float(dropout_rate),
        precision=precision,
    )
