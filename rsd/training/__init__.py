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

from ._engine import train
from ._loop import Trainer, pad_hidden
from ._paper import PAPER_TABLES, PaperRow
from ._placement import (Placement, parameter_count, resolve_devices, seed_footprint, state_bytes,
                         use_devices)
from ._recorders import Recording
from ._run import Run, Status
from ._settings import (
    ACTIVATIONS,
    ARCHITECTURES,
    LOSSES,
    OPTIMIZERS,
    Setting,
    paper_layer_to_rsd,
    paper_names,
)
from ._state import TrainState, named_optimizer

__all__ = [
    "Setting",
    "Run",
    "Status",
    "train",
    "use_devices",
    "resolve_devices",
    "Trainer",
    "TrainState",
    "pad_hidden",
    "named_optimizer",
    "Recording",
    "Placement",
    "parameter_count",
    "state_bytes",
    "seed_footprint",
    "paper_layer_to_rsd",
    "paper_names",
    "PAPER_TABLES",
    "PaperRow",
    "ARCHITECTURES",
    "ACTIVATIONS",
    "OPTIMIZERS",
    "LOSSES",
]
