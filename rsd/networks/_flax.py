"""``FlaxNetwork``: a user's own Flax module behind rsd's network interface."""

from __future__ import annotations

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp

from .._validation import check_int_range, check_key
from ._base import AbstractNetwork, check_inputs, short_repr

__all__ = ["FlaxNetwork"]


class FlaxNetwork(AbstractNetwork):
    """A Flax ``nn.Module`` of your own as an rsd network (``train(..., network=...)``).

    Contract for ``module``: ``module(x)`` takes x [batch, in_dim] and returns
    ``(output, hiddens)``, output [batch, out_dim] and hiddens a tuple or list of at
    least one [batch, features] array: the representations rsd records distances of.
    The module must be deterministic (no dropout, no mutable collections) and hashable
    (Flax modules are, by their fields). ``init(key)`` returns the whole Flax variables
    pytree, ``module.init(key, zeros([1, in_dim]))``, and ``apply(params, x)`` is
    ``module.apply(params, x)``; ``train`` and ``key`` are accepted and unused, ``masks``
    must be None. The contract is checked when the network is built, by tracing
    ``init`` and ``apply`` once on shapes only (``jax.eval_shape``); a violation raises
    ``ValueError`` naming ``module``, ``in_dim`` or ``out_dim``.

    Example:
        ```python
        import flax.linen as nn
        import jax
        import jax.numpy as jnp
        from rsd import networks

        class TwoLayer(nn.Module):
            @nn.compact
            def __call__(self, x):
                h = jnp.tanh(nn.Dense(16)(x))
                return nn.Dense(1)(h), (h,)

        net = networks.FlaxNetwork(TwoLayer(), in_dim=2, out_dim=1)
        params = net.init(jax.random.key(0))  # Flax variables: {"params": {...}}
        out, hiddens = net.apply(params, jnp.ones((5, 2)))
        assert out.shape == (5, 1) and net.hidden_sizes == (16,) and net.num_hidden == 1
        ```
    """

    # All fields are static: the network is hashable and a static jit argument.
    module: nn.Module = eqx.field(static=True)
    in_dim: int = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)

    def __check_init__(self):
        if not isinstance(self.module, nn.Module):
            raise ValueError(f"module must be a flax.linen.Module; got {short_repr(self.module)}.")
        try:
            hash(self.module)
        except TypeError as e:
            raise ValueError(f"module must be hashable (a static argument of compiled programs); {e}.") from None
        check_int_range("in_dim", self.in_dim, 1)
        check_int_range("out_dim", self.out_dim, 1)
        try:
            params = jax.eval_shape(self.init, jax.random.key(0))
            x = jax.ShapeDtypeStruct((1, self.in_dim), jnp.float32)
            out = jax.eval_shape(lambda p, x: self.module.apply(p, x), params, x)
        except Exception as e:  # noqa: BLE001 - any failure of the user's module is reported the same way
            raise ValueError(f"module fails on inputs x of shape [1, in_dim] with in_dim={self.in_dim}: "
                             f"{type(e).__name__}: {e}") from e
        self._check_output(out, 1)

    def init(self, key):
        """The module's Flax variables, ``module.init(key, zeros([1, in_dim]))``.

        ``key``: one JAX PRNG key or the raw uint32 data of one key.
        """
        key = check_key("key", key)
        return self.module.init(key, jnp.zeros((1, self.in_dim), jnp.float32))

    def apply(self, params, x, *, train: bool = False, key=None, masks=None):
        """``module.apply(params, x)`` as (output [batch, out_dim], tuple of hiddens [batch, features])."""
        x = check_inputs(x, self.in_dim, train)
        if key is not None:
            check_key("key", key)
        if masks is not None:
            raise ValueError("masks are only used by networks with dropout (has_dropout); a FlaxNetwork has none.")
        return self._check_output(self.module.apply(params, x), x.shape[0])

    def _check_output(self, out, batch):
        """(output, hiddens tuple) of what the module returned; ValueError when off contract."""
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ValueError(f"module must return (output, hiddens); its __call__ returned {_describe(out)}.")
        output, hiddens = out
        if getattr(output, "shape", None) != (batch, self.out_dim):
            raise ValueError(f"module's output must have shape [batch, out_dim] = {(batch, self.out_dim)} "
                             f"(out_dim={self.out_dim}); got {_describe(output)}.")
        if (not isinstance(hiddens, (tuple, list)) or not hiddens
                or any(getattr(h, "ndim", None) != 2 or h.shape[0] != batch for h in hiddens)):
            raise ValueError(f"module's hiddens must be a tuple or list of at least one [batch, features] "
                             f"array (batch={batch}); got {_describe(hiddens)}.")
        return output, tuple(hiddens)


def _describe(value):
    """Shapes of the arrays in ``value`` (which may be abstract), else its repr."""
    if hasattr(value, "shape"):
        return f"an array of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return type(value).__name__ + " of " + str(len(value)) + ": [" + ", ".join(_describe(v) for v in value) + "]"
    return short_repr(value)
