"""The hyperparameters of the paper's experiments, as published with its code.

One :class:`PaperRow` per row of the reference's four settings tables, numbers
copied verbatim (the table's lr and n_epochs, before rsd's conversion to steps).
``Setting.from_paper`` turns a row into an rsd :class:`~rsd.training.Setting`.

Columns of the reference tables: architecture (model_type), nonlinearity, gain,
lr, P (width), L (depth), n_epochs, hidden_layer (the reference's module index,
see ``paper_layer_to_rsd``), dx2, dy2, in_dim, out_dim. Where the reference did not
use a column (the many-point experiments take distances and dimensions from the
data) the table holds a placeholder, kept here as published.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["PaperRow", "PAPER_TABLES"]


class PaperRow(NamedTuple):
    """One row of a reference settings table (numbers as published)."""

    model_type: str
    nonlinearity: str
    gain: float
    lr: float
    width: int
    depth: int
    n_epochs: int
    hidden_layer: int
    dx2: float
    dy2: float
    in_dim: int
    out_dim: int


def _row(*values):
    return PaperRow(*values)


# fmt: off
PAPER_TABLES: dict[str, dict[str, PaperRow]] = {
    "2_points": {
        #                  model      nonlinearity  gain   lr        P    L   epochs layer dx2 dy2  in out
        "default":   _row("MLP",     "leaky_relu", 1.0,   0.01,     500, 20, 3000, 10,  1, 0.5, 1, 1),
        "shallow":   _row("MLP",     "leaky_relu", 0.35,  0.02,     500, 2,  3000, 1,   1, 0.5, 1, 1),
        "narrow":    _row("MLP",     "leaky_relu", 1.05,  0.01,     50,  20, 3000, 10,  1, 0.5, 1, 1),
        "linear":    _row("MLP",     "none",       0.85,  0.0025,   500, 20, 3000, 10,  1, 0.5, 1, 1),
        "elu":       _row("MLP",     "elu",        0.95,  0.0009,   500, 20, 3000, 10,  1, 0.5, 1, 1),
        "tanh":      _row("MLP",     "tanh",       0.85,  0.0025,   500, 20, 3000, 10,  1, 0.5, 1, 1),
        "relu":      _row("MLP",     "relu",       1.0,   0.01,     500, 20, 3000, 10,  1, 0.5, 1, 1),
        "swish":     _row("MLP",     "silu",       1.7,   0.005,    500, 20, 3000, 10,  1, 0.5, 1, 1),
        "skip":      _row("ResNet",  "leaky_relu", 0.1,   0.02,     500, 20, 3000, 10,  1, 0.5, 1, 1),
        "cnn":       _row("CNN",     "leaky_relu", 0.95,  0.004,    500, 10, 3000, 5,   1, 0.5, 1, 1),
        "dropout":   _row("Dropout", "leaky_relu", 1.0,   0.01,     500, 10, 3000, 5,   1, 0.5, 1, 1),
        "gain_0.9":  _row("MLP",     "leaky_relu", 0.9,   0.03,     500, 20, 3000, 10,  1, 0.5, 1, 1),
        "gain_1.1":  _row("MLP",     "leaky_relu", 1.1,   0.005,    500, 20, 3000, 10,  1, 0.5, 1, 1),
        "gain_1.2":  _row("MLP",     "leaky_relu", 1.2,   0.0025,   500, 20, 3000, 10,  1, 0.5, 1, 1),
        "gain_1.3":  _row("MLP",     "leaky_relu", 1.3,   0.0015,   500, 20, 3000, 10,  1, 0.5, 1, 1),
        "gain_1.4":  _row("MLP",     "leaky_relu", 1.4,   0.0005,   500, 20, 3000, 10,  1, 0.5, 1, 1),
        "gain_1.6":  _row("MLP",     "leaky_relu", 1.6,   0.000003, 500, 20, 3000, 10,  1, 0.5, 1, 1),
        "adam":      _row("MLP",     "leaky_relu", 1.0,   0.000001, 500, 20, 3000, 10,  1, 0.5, 1, 1),
        "two_layer": _row("MLP",     "none",       0.1,   0.01,     500, 1,  3000, 0,   1, 0.5, 1, 1),
    },
    "xor": {
        "rich":         _row("MLP", "leaky_relu", 0.85,   0.015,       500, 20, 3000, 10, 1, 0.5, 1, 1),
        "intermediate": _row("MLP", "leaky_relu", 1.25,   0.002,       500, 20, 1000, 10, 1, 0.5, 1, 1),
        "lazy":         _row("MLP", "leaky_relu", 2.0,    0.000000003, 500, 20, 1000, 10, 1, 0.5, 1, 1),
        "shallow":      _row("MLP", "leaky_relu", 0.0015, 0.03,        500, 1,  2000, 0,  1, 0.5, 1, 1),
    },
    "orthogonal": {
        "high_init": _row("MLP", "tanh", 2.0,   0.0015, 100, 4, 750,  2, 0, 0, 0, 0),
        "low_init":  _row("MLP", "tanh", 0.5,   0.015,  100, 4, 1500, 2, 0, 0, 0, 0),
        "vlow_init": _row("MLP", "tanh", 0.275, 0.05,   100, 4, 2000, 2, 0, 0, 0, 0),
    },
    "mnist": {
        "structure":    _row("MLP", "leaky_relu", 0.5, 0.005, 200, 4, 200, 2, 0, 0, 0, 0),
        "trajectories": _row("MLP", "leaky_relu", 0.5, 0.003, 200, 4, 200, 2, 0, 0, 0, 0),
    },
}
"""The reference's settings tables as published: table name ("2_points", "xor",
"orthogonal", "mnist") → row name → :class:`PaperRow`. :meth:`Setting.from_paper`
converts a row to rsd's conventions."""
# fmt: on
