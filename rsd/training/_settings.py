"""Training settings: one frozen, validated record per experiment.

A :class:`Setting` says which network to train and how (architecture, width,
depth, gain, optimizer, learning rate, number of steps, batch size, which hidden
layers to record). ``Setting.from_paper(table, name)`` builds the setting of a row
of the paper's hyperparameter tables (kept in :mod:`rsd.training._paper`).

Conversions from the paper's tables to rsd, all in this module:

* two-point experiments (table ``"2_points"``): ``lr = table lr / 2`` and
  ``steps = 2 · n_epochs`` (one epoch is one full-batch step on the two points);
  the reference trains this way, the other tables are taken as they are;
* the table's ``hidden_layer`` becomes an rsd hidden-layer index through
  :func:`paper_layer_to_rsd`, the one place that knows the reference's module
  numbering.

Quirks of the reference notebooks are offered, never silently applied:
``from_paper(..., quirks=True)`` reproduces them (see :meth:`Setting.from_paper`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import numpy as np

from .._validation import check_choice, check_int_range
from ..networks import ACTIVATIONS, ARCHITECTURES, cnn_min_width
from ._paper import PAPER_TABLES, PaperRow

__all__ = [
    "Setting",
    "ARCHITECTURES",
    "ACTIVATIONS",
    "OPTIMIZERS",
    "LOSSES",
    "paper_layer_to_rsd",
    "paper_names",
]

OPTIMIZERS = ("sgd", "adam")
"""Values of ``Setting.optimizer``: plain SGD or Adam (optax defaults), see
:func:`named_optimizer`."""
LOSSES = ("half_mse", "mse")
"""Values of ``Setting.loss``: "half_mse", ½·mean over points and outputs of
(ŷ − y*)², or "mse", the same without the ½."""

_MODEL_TYPES = {"MLP": "mlp", "ResNet": "resnet", "CNN": "cnn", "Dropout": "dropout"}
_TWO_POINT_TABLE = "2_points"
# Rows the reference trains with Adam; every other row uses plain SGD.
_ADAM_ROWS = {(_TWO_POINT_TABLE, "adam"), ("mnist", "structure")}
_QUIRK_BATCH_SIZE = 64
# Training counts steps (stop and divergence steps, record slots) in int32.
MAX_STEPS = 2**31 - 1


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Setting:
    """How to train one network (all fields static; hashable; validated on creation).

    Time is measured in training steps (one optimizer update each).

    Fields:
        architecture: one of ``ARCHITECTURES`` ("mlp", "resnet", "cnn", "dropout").
        activation: one of ``ACTIVATIONS``; "none"/"linear" give a linear network.
        width: hidden width P (features per hidden layer).
        depth: L, the number of hidden layers of the MLP/ResNet/dropout MLP; for the
            CNN the number of 20→20 convolutions plus one.
        gain: Xavier-normal gain of every linear/conv weight (biases start at 0).
        optimizer: "sgd" (no momentum) or "adam" (optax defaults = PyTorch defaults).
        lr: learning rate (per step).
        steps: number of training steps (updates), at most ``MAX_STEPS`` = 2**31 − 1;
            one record before each step by default (see ``train``'s ``record_every``).
        batch_size: None for full batch, else minibatches of this size, reshuffled
            every epoch (the last minibatch of an epoch may be smaller).
        layers: rsd hidden-layer indices (0-based) whose h is recorded; None = all.
        dropout_rate: dropout probability of the "dropout" architecture.
        in_dim, out_dim: input/output dimension; None = taken from the data.
        dx2, dy2: squared input/output distance of the two training points for the
            two-point experiments; None where the data are not two points.
        loss: "half_mse" (½·mean squared error over points and outputs) or "mse" (without the
            ½; the XOR quirk). The recorded loss is always the half-MSE.
        name: provenance, e.g. "2_points/default"; free text.
    """

    architecture: str = "mlp"
    activation: str = "leaky_relu"
    width: int = 500
    depth: int = 20
    gain: float = 1.0
    optimizer: str = "sgd"
    lr: float = 0.005
    steps: int = 6000
    batch_size: int | None = None
    layers: tuple[int, ...] | None = None
    dropout_rate: float = 0.1
    in_dim: int | None = 1
    out_dim: int | None = 1
    dx2: float | None = 1.0
    dy2: float | None = 0.5
    loss: str = "half_mse"
    name: str = ""

    HYPERPARAMETERS: ClassVar[tuple[str, ...]] = ("lr", "gain", "dx2", "dy2")
    """Fields that are data to a compiled training program, not part of its structure:
    ``train`` takes lr and gain per seed, dx2 and dy2 come with each seed's data."""

    def __new__(cls, *args, **kwargs):
        # Every construction (Setting(...), replace, from_paper, copy, pickle) passes here
        # before the dataclass __init__, which would raise TypeError for an unknown or doubled
        # field name; checking the names first makes that a ValueError naming the field.
        _check_field_names(cls, args, kwargs)
        return super().__new__(cls)

    def __post_init__(self):
        _check_name("Setting.architecture", self.architecture, ARCHITECTURES)
        _check_name("Setting.activation", self.activation, ACTIVATIONS)
        _check_name("Setting.optimizer", self.optimizer, OPTIMIZERS)
        _check_name("Setting.loss", self.loss, LOSSES)
        if not isinstance(self.name, str):
            raise ValueError(f"Setting.name must be a string (free text); got {_short_repr(self.name)}.")
        check_int_range("Setting.width", self.width, 1)
        check_int_range("Setting.depth", self.depth, 1)
        check_int_range("Setting.steps", self.steps, 1, MAX_STEPS)
        if self.batch_size is not None:
            check_int_range("Setting.batch_size", self.batch_size, 1)
        for field in ("in_dim", "out_dim"):
            value = getattr(self, field)
            if value is not None:
                check_int_range(f"Setting.{field}", value, 1)
        _check_real("Setting.gain", self.gain, positive=True)
        _check_real("Setting.lr", self.lr, positive=True)
        for field in ("dx2", "dy2"):
            value = getattr(self, field)
            if value is not None:
                _check_real(f"Setting.{field}", value, positive=False)
        rate = self.dropout_rate
        if not _is_real(rate) or not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Setting.dropout_rate must be a number in [0, 1); got {_short_repr(rate)}.")
        if self.layers is not None:
            if not isinstance(self.layers, tuple) or len(self.layers) == 0:
                raise ValueError(
                    "Setting.layers must be None (all hidden layers) or a non-empty tuple of "
                    f"hidden-layer indices; got {self.layers!r}."
                )
            for layer in self.layers:
                check_int_range("Setting.layers entries", layer, 0)
        if self.architecture == "cnn":
            if self.width < cnn_min_width(self.depth):
                shrink = cnn_min_width(self.depth) - 1
                raise ValueError(
                    f"Setting.width must be > {shrink} for Setting.architecture='cnn' with "
                    f"Setting.depth={self.depth} (each of its {self.depth + 1} convolutions shortens "
                    f"the signal by {shrink // (self.depth + 1)}); got {self.width}."
                )

    def network(self, in_dim: int | None = None, out_dim: int | None = None):
        """The :class:`rsd.networks.Network` this setting trains, for data of ``in_dim``
        inputs and ``out_dim`` outputs (default: the setting's own dims)."""
        from ..networks import make_network

        in_dim = self.in_dim if in_dim is None else in_dim
        out_dim = self.out_dim if out_dim is None else out_dim
        if in_dim is None or out_dim is None:
            raise ValueError("in_dim and out_dim must be given when the setting leaves them to "
                             f"the data; got in_dim={in_dim!r}, out_dim={out_dim!r}.")
        return make_network(self.architecture, activation=self.activation, width=self.width,
                            depth=self.depth, gain=self.gain, in_dim=in_dim, out_dim=out_dim,
                            dropout_rate=self.dropout_rate)

    def structure(self) -> "Setting":
        """What a compiled training program depends on: this setting with its
        ``HYPERPARAMETERS`` and its descriptive fields (name, layers, in_dim, out_dim,
        which the data and ``train``'s arguments fix) set to fixed neutral values, and
        the dropout rate neutral unless the architecture uses it.

        Two settings with equal structures train in one program: their differences are
        data (``train(..., lr=, gain=)`` and per-seed x, y). Hashable (a cache key).
        """
        neutral = dict(lr=1.0, gain=1.0, dx2=1.0, dy2=0.5, name="", layers=None,
                       in_dim=None, out_dim=None)
        if self.architecture != "dropout":
            neutral["dropout_rate"] = 0.1
        return self.replace(**neutral)

    def hyperparameters(self) -> dict:
        """The values of ``HYPERPARAMETERS`` (the fields ``structure`` sets aside)."""
        return {name: getattr(self, name) for name in self.HYPERPARAMETERS}

    def replace(self, **changes) -> "Setting":
        """A copy with some fields changed (validated again); unknown field names raise ValueError."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_paper(cls, table: str, name: str, *, quirks: bool = False,
                   n_train: int | None = None) -> "Setting":
        """The setting of row ``name`` of the paper's table ``table``.

        Tables: "2_points", "xor", "orthogonal", "mnist" (see ``paper_names``).
        Optimizer: Adam for the two-point "adam" row and the MNIST "structure" row (as
        the reference trains them), SGD otherwise. Two-point rows: lr = table lr / 2, steps = 2·n_epochs, full batch, in/out
        dims and dx2/dy2 from the table. Other tables: lr and steps = n_epochs as
        published, full batch, dims and distances from the data (None).
        ``layers`` is the table's hidden layer mapped by :func:`paper_layer_to_rsd`.

        ``quirks=True`` reproduces the reference notebooks' deviations from their tables:
        XOR trains with relu and the MSE without ½; the context-blob ("orthogonal")
        run trains leaky_relu whatever the table says; MNIST and blob runs use
        shuffled minibatches of 64, so ``steps = n_epochs · ceil(n_train / 64)`` and
        ``n_train`` (the number of training points) is required there.

        Example:
            ```python
            from rsd import training

            s = training.Setting.from_paper("2_points", "narrow")
            small = s.replace(width=16, depth=4, steps=1000, layers=(2,))  # validated copy
            print(s.lr, s.steps, small)
            ```
        """
        _check_name("table", table, tuple(PAPER_TABLES))
        _check_name("name", name, tuple(PAPER_TABLES[table]))
        if not isinstance(quirks, bool):
            raise ValueError(f"quirks must be True or False; got {_short_repr(quirks)}.")
        if n_train is not None:
            check_int_range("n_train", n_train, 1)
        row: PaperRow = PAPER_TABLES[table][name]
        architecture = _MODEL_TYPES[row.model_type]
        fields = dict(
            architecture=architecture,
            activation=row.nonlinearity,
            width=row.width,
            depth=row.depth,
            gain=row.gain,
            optimizer="adam" if (table, name) in _ADAM_ROWS else "sgd",
            layers=(paper_layer_to_rsd(architecture, row.hidden_layer),),
            name=f"{table}/{name}" + ("+quirks" if quirks else ""),
        )
        if table == _TWO_POINT_TABLE:
            fields.update(lr=row.lr / 2, steps=2 * row.n_epochs, in_dim=row.in_dim,
                          out_dim=row.out_dim, dx2=float(row.dx2), dy2=float(row.dy2))
        else:
            fields.update(lr=row.lr, steps=row.n_epochs, in_dim=None, out_dim=None,
                          dx2=None, dy2=None)
        if quirks:
            if table == "xor":
                fields.update(activation="relu", loss="mse")
            if table == "orthogonal":
                fields.update(activation="leaky_relu")
            if table in ("orthogonal", "mnist"):
                if n_train is None:
                    raise ValueError(
                        f"n_train (the number of training points) is required for "
                        f"from_paper({table!r}, ..., quirks=True): its minibatches of 64 make "
                        "the number of steps per epoch depend on it."
                    )
                # integer ceil: n_train / 64 in floating point overflows or rounds for huge n_train
                per_epoch = -(-int(n_train) // _QUIRK_BATCH_SIZE)
                if row.n_epochs * per_epoch > MAX_STEPS:
                    raise ValueError(
                        f"n_train must be at most {MAX_STEPS // row.n_epochs * _QUIRK_BATCH_SIZE} for "
                        f"{table}/{name} ({row.n_epochs} epochs of ceil(n_train / 64) steps must fit "
                        f"in {MAX_STEPS} steps); got {_short_repr(n_train)}.")
                fields.update(batch_size=_QUIRK_BATCH_SIZE, steps=row.n_epochs * per_epoch)
        return cls(**fields)


def paper_layer_to_rsd(architecture: str, index: int) -> int:
    """Map a reference table's ``hidden_layer`` (a module-output index) to rsd's hidden layer.

    rsd numbers hidden layers 0, 1, ... (the output of each hidden module, after its
    activation). The reference counts module outputs:

    * "mlp", "resnet": the hidden layer number itself → rsd hidden ``index``;
    * "cnn": output n of [linear, conv, conv, ...] → rsd hidden ``index``
      (rsd's CNN hidden layers are the same module outputs, flattened);
    * "dropout": [dropout, linear, dropout, linear, ...], the dropout modules count
      too: odd index 2k+1 is the (k+1)-th linear layer → rsd hidden ``k`` (so 5 → 2);
      even index 2k ≥ 2 is the dropout after hidden layer k−1, the identity in eval
      mode → rsd hidden ``k − 1``; index 0 (dropout of the input) is no hidden layer.
    """
    _check_name("architecture", architecture, ARCHITECTURES)
    check_int_range("hidden_layer index", index, 0)
    if architecture != "dropout":
        return index
    if index == 0:
        raise ValueError(
            "hidden_layer index 0 of a dropout MLP is the dropout of the input, not a hidden "
            "layer; allowed: an index >= 1."
        )
    return (index - 1) // 2


def paper_names(table: str) -> tuple[str, ...]:
    """The row names of one of the paper's tables, in published order.

    Args:
        table: a table name, a key of ``PAPER_TABLES`` ("2_points", "xor", "orthogonal",
            "mnist").

    Returns:
        The row names, e.g. ``("default", "shallow", ...)`` for "2_points"; each is a
        valid ``row`` of :meth:`Setting.from_paper`.
    """
    _check_name("table", table, tuple(PAPER_TABLES))
    return tuple(PAPER_TABLES[table])


def _check_field_names(cls, args, kwargs):
    """ValueError for arguments the dataclass __init__ would refuse with a TypeError."""
    fields = [f.name for f in dataclasses.fields(cls)]
    if len(args) > len(fields):
        raise ValueError(f"Setting takes at most {len(fields)} positional fields ({', '.join(fields)}); "
                         f"got {len(args)}.")
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ValueError(f"Setting has no field {', '.join(map(repr, unknown))}; its fields are "
                         f"{', '.join(fields)}.")
    twice = sorted(set(kwargs) & set(fields[:len(args)]))
    if twice:
        raise ValueError(f"Setting field {', '.join(map(repr, twice))} given both by position and "
                         "by name.")


def _check_name(name, value, allowed):
    """``value`` must be one of the strings ``allowed`` (an array or other object names the field too)."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be one of {sorted(allowed)}; got {_short_repr(value)}.")
    check_choice(name, value, allowed)


def _short_repr(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_real(value) -> bool:
    """A finite real number (a Python int beyond float range is not: it would overflow)."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _check_real(name, value, *, positive):
    if not _is_real(value):
        raise ValueError(f"{name} must be a finite number; got {_short_repr(value)}.")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0; got {value!r}.")
    if not positive and not value >= 0:
        raise ValueError(f"{name} must be >= 0; got {value!r}.")
