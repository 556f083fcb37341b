"""The paper's experiments, each a module with ``Config`` → ``run(config)`` → result,
``plot(result)`` → figures, ``metrics(result)`` → numbers; the CLI reads ``REGISTRY``.

``run_experiment(name, size=..., out=...)`` runs one into ``out/name/``;
``reproduce(names, size=..., out=...)`` runs several and writes ``out/report.md``.
Sizes: ``SIZES`` ("tiny", "quick", "paper").
"""

from . import (alternatives, atlas, context, depth, final_distance, mnist_structure,
               mnist_trajectory, predicted_rates, theory_demo, two_point_fit, two_points, xor)
from ._common import SIZES
from ._driver import Outcome, estimate_reproduction, make_config, prepare_output, reproduce, run_experiment

REGISTRY = {
    "two-point-fit": two_point_fit,
    "theory-demo": theory_demo,
    "two-points": two_points,
    "final-distance": final_distance,
    "depth": depth,
    "alternatives": alternatives,
    "predicted-rates": predicted_rates,
    "xor": xor,
    "context": context,
    "mnist-trajectory": mnist_trajectory,
    "mnist-structure": mnist_structure,
    "atlas": atlas,
}
"""Every experiment by name, in the order they run (a dependency before its users)."""

REPRODUCE = ("two-points", "final-distance", "depth", "alternatives", "predicted-rates", "xor",
             "context", "mnist-trajectory", "mnist-structure")
"""The paper's experiments that ``rsd reproduce`` runs by default."""

__all__ = [
    "REGISTRY",
    "REPRODUCE",
    "SIZES",
    "Outcome",
    "estimate_reproduction",
    "make_config",
    "prepare_output",
    "reproduce",
    "run_experiment",
    "alternatives",
    "atlas",
    "context",
    "depth",
    "final_distance",
    "mnist_structure",
    "mnist_trajectory",
    "predicted_rates",
    "theory_demo",
    "two_point_fit",
    "two_points",
    "xor",
]
