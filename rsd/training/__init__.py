"""Training real networks many seeds at a time, recording the pair dynamics every step
(or every ``record_every`` steps).

``Setting`` describes one experiment (``Setting.from_paper`` gives the paper's);
``train(setting, x, y, seeds=...)`` returns a ``Run`` of per-seed, per-step h, y, w
and loss (time in training steps), with a status per seed. Data may be shared or
given per seed, and ``stop_loss`` stops each seed once its loss falls below it.
Learning rates and gains may differ per seed in one compiled program, and the seed
axis can be sharded over devices. ``Trainer`` exposes the same step as a pure
``init``/``step`` pair over a pytree ``TrainState`` for loops a user drives.
"""

from ._engine import Run, Status, named_optimizer, train, use_devices
from ._loop import Trainer, TrainState, pad_hidden
from ._paper import PAPER_TABLES, PaperRow
from ._settings import (
    ACTIVATIONS,
    ARCHITECTURES,
    LOSSES,
    OPTIMIZERS,
    Setting,
    paper_layer_to_rsd,
    paper_names,
)

__all__ = [
    "Setting",
    "Run",
    "Status",
    "train",
    "use_devices",
    "Trainer",
    "TrainState",
    "pad_hidden",
    "named_optimizer",
    "paper_layer_to_rsd",
    "paper_names",
    "PAPER_TABLES",
    "PaperRow",
    "ARCHITECTURES",
    "ACTIVATIONS",
    "OPTIMIZERS",
    "LOSSES",
]
