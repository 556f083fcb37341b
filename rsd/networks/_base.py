"""``AbstractNetwork``: the interface every network of rsd follows, and the checks they share.

A network is a frozen, hashable description (all fields static) with two pure functions,
``init(key) -> params`` and ``apply(params, x) -> (output, hiddens)``; training, theory
and fitting code see only this interface, never Flax.
"""

from __future__ import annotations

import abc
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._validation import as_array, check_choice, check_int_range

__all__ = ["AbstractNetwork"]


class AbstractNetwork(eqx.Module):
    """The interface of every network: pure ``init``/``apply`` and the shapes around them.

    Subclasses declare ``in_dim`` and ``out_dim`` (ints: input and output features) and
    implement ``init`` and ``apply``; everything else has a default derived from those. All fields must be
    static, so a network is hashable and equal by value: it is a static argument of
    compiled training programs.

    - ``init(key) -> params``: a pytree of arrays, from one JAX PRNG key.
    - ``apply(params, x, *, train=False, key=None, masks=None) -> (output, hiddens)``:
      output [batch, out_dim] and ``hiddens``, a tuple of ``num_hidden`` arrays
      [batch, features], the records whose distances rsd measures. ``train``, ``key``
      and ``masks`` matter only to networks with dropout (``has_dropout``).
    - ``hidden_sizes``, ``num_hidden``: feature count of each hidden record, and how many
      there are (default: read off ``apply`` by ``jax.eval_shape``).
    - ``has_dropout`` (default False) and ``dropout_masks(key, batch)``: the keep masks
      a training step passes to ``apply`` as ``masks`` (default None: no masks).
    - ``paper_layer(index)``: the paper tables' hidden-layer index as rsd's hidden-record
      index (default: the same index).
    - ``to_layers(params)``/``from_layers(layers)``: params to and from a user-facing
      layer list (default: the params themselves).
    - ``param_shapes``, ``num_params``: shapes and total size of ``params``.
    """

    # in_dim and out_dim are not declared here (as eqx.AbstractVar): that would put them
    # first in every subclass's field order, ahead of the fields a subclass lists first.

    @abc.abstractmethod
    def init(self, key):
        """Parameters (a pytree of arrays) from one JAX PRNG key."""

    @abc.abstractmethod
    def apply(self, params, x, *, train: bool = False, key=None, masks=None):
        """(output [batch, out_dim], hiddens: tuple of [batch, features]) of inputs x [batch, in_dim]."""

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """Feature count of each hidden record ``apply`` returns."""
        return tuple(int(h.shape[-1]) for h in _abstract_apply(self)[1])

    @property
    def num_hidden(self) -> int:
        """Number of hidden records ``apply`` returns."""
        return len(self.hidden_sizes)

    @property
    def param_shapes(self):
        """``init``'s pytree with a ``jax.ShapeDtypeStruct`` for every array (nothing is computed)."""
        return jax.eval_shape(self.init, jax.random.key(0))

    @property
    def num_params(self) -> int:
        """Total number of parameters (array elements of ``init``'s pytree)."""
        return int(sum(math.prod(a.shape) for a in jax.tree.leaves(self.param_shapes)))

    @property
    def has_dropout(self) -> bool:
        """Whether ``apply(..., train=True)`` drops units (and so needs ``key`` or ``masks``)."""
        return False

    def dropout_masks(self, key, batch: int):
        """Keep masks for one training step of ``batch`` inputs; None for a network without dropout."""
        return None

    def paper_layer(self, index: int) -> int:
        """rsd's hidden-record index of the paper tables' hidden-layer ``index`` (here the same index)."""
        check_int_range("index", index, 0, self.num_hidden - 1)
        return int(index)

    def to_layers(self, params):
        """params as a user-facing list of layers; here the params themselves."""
        return params

    def from_layers(self, layers):
        """Inverse of ``to_layers``; here the layers themselves."""
        return layers


def _abstract_apply(network):
    """Shapes of ``network.apply`` on one input, cached for hashable networks (all of rsd's)."""
    try:
        return _cached_abstract_apply(network)
    except TypeError:  # an unhashable static field: trace again
        return _trace_apply(network)


def _trace_apply(network):
    params = jax.eval_shape(network.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((1, network.in_dim), jnp.float32)
    return jax.eval_shape(lambda p, x: network.apply(p, x), params, x)


_cached_abstract_apply = functools.lru_cache(maxsize=256)(_trace_apply)


# --- argument checks shared by the networks ------------------------------------------


def real_array(name, a):
    """``a`` as an array of a real numeric dtype (tracers included); ValueError naming ``name`` otherwise."""
    try:
        is_key = jnp.issubdtype(a.dtype, jax.dtypes.prng_key)
    except (AttributeError, TypeError):
        is_key = False
    if is_key:  # as_array's numpy dtype checks cannot interpret key dtypes
        raise ValueError(f"{name} must be a real numeric array (integer or floating point); got PRNG keys "
                         f"of dtype {a.dtype}.")
    return as_array(name, a)


def check_inputs(x, in_dim, train):
    """``x`` as a real [batch, in_dim] array; ``train`` must be a Python bool.

    Shapes and dtypes only: these checks also hold for tracers (under jit they run once,
    at trace time, and never inside the compiled program).
    """
    x = real_array("x", x)
    if x.ndim != 2 or x.shape[-1] != in_dim:
        raise ValueError(f"x must have shape [batch, {in_dim}]; got {x.shape}.")
    if not isinstance(train, bool):
        raise ValueError(f"train must be True or False (a Python bool, static under jit); got {train!r}.")
    return x


def short_repr(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_name(name, value, allowed):
    """``value`` must be one of the strings ``allowed`` (arrays and other objects name the argument too)."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be one of {sorted(allowed)}; got {short_repr(value)}.")
    check_choice(name, value, allowed)


def is_real(value):
    """A real number that fits a float (a Python int beyond float range does not)."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True
