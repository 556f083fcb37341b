"""``Network``: the common base of the paper's four architectures (one file each).

Parameters are a plain pytree: a tuple with one ``{"kernel": W, "bias": b}`` dict per
parametrized module, in forward order. Layouts (rsd's, used everywhere in rsd):

- dense kernel ``[in, out]`` (PyTorch's ``weight`` is ``[out, in]``: transpose),
- conv kernel ``[k, in_ch, out_ch]`` (PyTorch's ``Conv1d.weight`` is ``[out_ch, in_ch, k]``:
  reverse the three axes), bias ``[out]`` in both.

``from_torch``/``to_torch`` convert; ``from_layers``/``to_layers`` take rsd's layout.
All four accept leading (seed) axes on every array.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_int_range, check_key, check_nonnegative
from ._activations import ACTIVATIONS
from ._base import AbstractNetwork, check_inputs, check_name, is_real, real_array, short_repr

__all__ = ["PRECISIONS", "Network"]

PRECISIONS = ("default", "high", "highest")
"""Matmul/convolution precisions ``make_network`` accepts (``jax.lax.Precision``
DEFAULT, HIGH, HIGHEST)."""
_PRECISION = {
    "default": jax.lax.Precision.DEFAULT,
    "high": jax.lax.Precision.HIGH,
    "highest": jax.lax.Precision.HIGHEST,
}
# The most elements an array may have: its size in bytes (float64) must fit an int64.
_MAX_ELEMENTS = np.iinfo(np.int64).max // 8


class Network(AbstractNetwork):
    """One of the paper's architectures, as a pure init/apply pair; build it with ``make_network``.

    The subclasses ``MLP``, ``ResNet``, ``CNN`` and ``DropoutMLP`` share these fields;
    ``architecture`` (a class attribute) is the name ``make_network`` knows each by.
    ``init(key) -> params`` and ``apply(params, x) -> (output [batch, out_dim], hiddens)``
    are pure and jit/vmap/grad friendly. ``hiddens[i]`` is hidden record i, after its
    activation, as [batch, features]:

    - mlp, resnet, dropout: the L hidden layers (i = 0 … L−1);
    - cnn: i = 0 the first Linear (P features), i = 1 … L+1 the convs' outputs
      flattened channel-major (20·length, the last one 1·length).

    The paper's tables count module outputs: for mlp, resnet and cnn their index is
    rsd's; for dropout they count the dropout modules too, so their odd index j is
    rsd's hidden record (j − 1)/2 (see ``paper_layer``). ``train`` is a Python bool
    (static under jit).

    A new architecture of this family subclasses ``Network``: it sets the class
    attribute ``architecture``, implements ``_module()`` (a Flax module whose
    parametrized submodules are named ``layer_<n>`` and whose ``__call__(x, keep)``
    returns (output, hiddens)), ``hidden_sizes``, ``layer_shapes`` and ``layer_kinds``,
    and is made known to ``make_network`` by ``register_network``.
    """

    architecture: eqx.AbstractClassVar[str]
    activation: str = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    gain: float = eqx.field(static=True)
    in_dim: int = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)
    dropout_rate: float = eqx.field(static=True, default=0.1)
    precision: str = eqx.field(static=True, default="highest")

    def __check_init__(self):
        self.check_settings(activation=self.activation, width=self.width, depth=self.depth, gain=self.gain,
                            in_dim=self.in_dim, out_dim=self.out_dim, dropout_rate=self.dropout_rate,
                            precision=self.precision)

    @classmethod
    def check_settings(cls, *, activation, width, depth, gain, in_dim, out_dim, dropout_rate, precision):
        """ValueError naming the first invalid setting (``make_network`` calls this before converting)."""
        check_name("activation", activation, ACTIVATIONS)
        check_int_range("width", width, 1)
        check_int_range("depth", depth, 1)
        check_int_range("in_dim", in_dim, 1)
        check_int_range("out_dim", out_dim, 1)
        check_name("precision", precision, PRECISIONS)
        if not is_real(gain):
            raise ValueError(f"gain must be a finite number >= 0; got {short_repr(gain)}.")
        check_nonnegative("gain", float(gain))  # an int beyond int64 is an object array to numpy
        if not is_real(dropout_rate) or not (0.0 <= dropout_rate < 1.0):
            raise ValueError(f"dropout_rate must be a number in [0, 1); got {short_repr(dropout_rate)}.")
        cls._check_size(width, depth)
        # XLA aborts the process (no exception) on an array whose size overflows int64.
        largest = max(in_dim * width, width * width, width * out_dim)
        if largest > _MAX_ELEMENTS:
            raise ValueError(f"width, in_dim and out_dim give a layer of {largest:.3g} weights; no array holds "
                             f"more than {_MAX_ELEMENTS:.3g}.")

    @classmethod
    def _check_size(cls, width, depth):
        """Architecture-specific limits on width and depth (none by default)."""

    # --- shapes -----------------------------------------------------------------

    @property
    @abc.abstractmethod
    def hidden_sizes(self) -> tuple[int, ...]:
        """Feature count of each hidden record."""

    @property
    @abc.abstractmethod
    def layer_shapes(self) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
        """(kernel shape, bias shape) of each parametrized module, rsd layout."""

    @property
    @abc.abstractmethod
    def layer_kinds(self) -> tuple[str, ...]:
        """"dense" or "conv" for each parametrized module."""

    @property
    def num_hidden(self) -> int:
        """Number of hidden records returned by ``apply``: L, or L + 2 for the CNN."""
        return len(self.hidden_sizes)

    @property
    def num_layers(self) -> int:
        """Number of parametrized modules (entries of ``params``)."""
        return len(self.layer_shapes)

    @property
    def num_params(self) -> int:
        """Total number of parameters: the sizes of every kernel and bias."""
        return sum(math.prod(w) + math.prod(b) for w, b in self.layer_shapes)

    # --- init and apply ------------------------------------------------------------

    @abc.abstractmethod
    def _module(self):
        """The Flax module: parametrized submodules ``layer_<n>``, ``__call__(x, keep)``."""

    @property
    def _precision(self):
        return _PRECISION[self.precision]

    def init(self, key):
        """Xavier-normal kernels with gain (std = gain·sqrt(2/(fan_in+fan_out))), zero biases.

        ``key``: one JAX PRNG key (``jax.random.key(seed)``) or the raw uint32 data of one
        key (``jax.random.PRNGKey(seed)``); both give the same parameters.
        """
        key = check_key("key", key)
        variables = self._module().init(key, jnp.zeros((1, self.in_dim), jnp.float32))
        return self._from_flax(variables["params"])

    def apply(self, params, x, *, train: bool = False, key=None, masks=None):
        """(output, hiddens) of inputs x [batch, in_dim]; deterministic unless training the dropout MLP.

        For a network with dropout (``has_dropout``) and ``train=True`` each linear layer's
        input is multiplied by keep/(1−p): keep masks come from ``masks`` (a tuple of L+1
        boolean arrays [batch, fan_in], e.g. replayed from PyTorch) or else are drawn from
        ``key`` with ``dropout_masks``. Eval mode (``train=False``) never drops.
        """
        x = check_inputs(x, self.in_dim, train)
        flax_params = self._to_flax(params)
        if key is not None:
            key = check_key("key", key)
        keep = None
        dropping = train and self.has_dropout
        if masks is not None and not dropping:
            raise ValueError("masks are only used by the dropout architecture with train=True.")
        if dropping:
            if masks is None:
                if key is None:
                    raise ValueError("key is required to train the dropout architecture (or pass masks).")
                masks = self.dropout_masks(key, x.shape[0])
            keep = self._check_masks(masks, x.shape[0])
        return self._module().apply({"params": flax_params}, x, keep)

    def _check_masks(self, masks, batch):
        """``masks`` as a tuple of boolean [batch, fan_in] arrays, one per linear layer."""
        shapes = [(batch, w[0]) for w, _ in self.layer_shapes]
        try:
            keep = tuple(jnp.asarray(m, bool) for m in masks)
        except (TypeError, ValueError):
            keep = None
        if keep is None or [m.shape for m in keep] != shapes:
            got = [tuple(m.shape) for m in keep] if keep is not None else short_repr(masks)
            raise ValueError(f"masks must hold {self.num_layers} boolean arrays, one per linear layer, "
                             f"of shapes {shapes} ([batch, fan_in]); got {got}.")
        return keep

    def dropout_masks(self, key, batch: int):
        """Keep masks, True with probability 1 − p: one [batch, fan_in] array per linear layer.

        Layer n draws from ``fold_in(key, n)``; masks of architectures without dropout
        are all True.
        """
        key = check_key("key", key)
        check_int_range("batch", batch, 0)
        p = self.dropout_rate if self.has_dropout else 0.0
        return tuple(
            jax.random.bernoulli(jax.random.fold_in(key, n), 1.0 - p, (batch, w[0][0]))
            for n, w in enumerate(self.layer_shapes)
        )

    # --- conversions -----------------------------------------------------------------

    def _from_flax(self, flax_params):
        return tuple(
            {"kernel": flax_params[f"layer_{n}"]["kernel"], "bias": flax_params[f"layer_{n}"]["bias"]}
            for n in range(self.num_layers)
        )

    def _to_flax(self, params):
        """Flax's parameter dict from rsd's params, whose structure and shapes are checked first."""
        expected = self.layer_shapes
        if not isinstance(params, (tuple, list)) or len(params) != len(expected):
            raise ValueError(f"params must be a tuple of {len(expected)} {{'kernel', 'bias'}} dicts, one per "
                             f"parametrized module (as returned by init); got {short_repr(params)}.")
        layers = {}
        for n, (p, shapes) in enumerate(zip(params, expected)):
            if not isinstance(p, Mapping) or set(p) != {"kernel", "bias"}:
                raise ValueError(f"params[{n}] must be a dict with keys 'kernel' and 'bias'; got {short_repr(p)}.")
            arrays = {}
            for name, shape in zip(("kernel", "bias"), shapes):
                a = real_array(f"params[{n}][{name!r}]", p[name])
                if a.shape != shape:
                    raise ValueError(f"params[{n}][{name!r}] must have shape {shape}; got {a.shape}.")
                arrays[name] = a
            layers[f"layer_{n}"] = arrays
        return layers

    def from_layers(self, layers):
        """params from a list of (W, b) per parametrized module in rsd's layout; arrays may carry leading seed axes."""
        layers = list(layers)
        if len(layers) != self.num_layers:
            raise ValueError(f"layers must hold {self.num_layers} (W, b) pairs for this network; got {len(layers)}.")
        lead = None
        params = []
        for n, ((w, b), (w_shape, b_shape)) in enumerate(zip(layers, self.layer_shapes)):
            w, b = jnp.asarray(w), jnp.asarray(b)
            k = len(w_shape)
            if w.ndim < k or w.shape[w.ndim - k :] != w_shape:
                raise ValueError(f"layers[{n}] W must end in shape {w_shape}; got {w.shape}.")
            if b.ndim < 1 or b.shape[-1:] != b_shape or b.shape[:-1] != w.shape[: w.ndim - k]:
                raise ValueError(f"layers[{n}] b must have shape {w.shape[: w.ndim - k] + b_shape}; got {b.shape}.")
            if lead is None:
                lead = b.shape[:-1]
            elif b.shape[:-1] != lead:
                raise ValueError(f"layers[{n}] has leading axes {b.shape[:-1]}; layer 0 has {lead}.")
            params.append({"kernel": w, "bias": b})
        return tuple(params)

    def to_layers(self, params):
        """Inverse of ``from_layers``: a list of (W, b) in rsd's layout."""
        return [(p["kernel"], p["bias"]) for p in params]

    def from_torch(self, layers):
        """params from PyTorch-layout (W, b) pairs: dense W [out, in], conv W [out_ch, in_ch, k].

        Leading seed axes are allowed, as in ``from_layers``.
        """
        layers = list(layers)
        if len(layers) != self.num_layers:
            raise ValueError(f"layers must hold {self.num_layers} (W, b) pairs for this network; got {len(layers)}.")
        converted = [
            (_torch_to_rsd(w, kind, f"layers[{n}] W"), b)
            for n, ((w, b), kind) in enumerate(zip(layers, self.layer_kinds))
        ]
        return self.from_layers(converted)

    def to_torch(self, params):
        """Inverse of ``from_torch``: a list of (W, b) in PyTorch's layout."""
        return [(_rsd_to_torch(p["kernel"], kind), p["bias"]) for p, kind in zip(params, self.layer_kinds)]


def _torch_to_rsd(w, kind, name):
    k = 2 if kind == "dense" else 3
    if w.ndim < k:
        raise ValueError(f"{name} must have at least {k} axes for a {kind} layer; got shape {w.shape}.")
    return jnp.swapaxes(jnp.asarray(w), -1, -k)


def _rsd_to_torch(w, kind):
    # both transposes are involutions: [in, out] <-> [out, in]; [k, in, out] <-> [out, in, k]
    return jnp.swapaxes(w, -1, -2 if kind == "dense" else -3)
