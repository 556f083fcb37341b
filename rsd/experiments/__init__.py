"""Experiments: each module has ``Config``, ``run(config) -> result``, ``plot(result) -> figure``
and ``summary(result) -> str``; the CLI reads ``REGISTRY``."""

from . import theory_demo, two_point_fit

REGISTRY = {
    "two-point-fit": two_point_fit,
    "theory-demo": theory_demo,
}

__all__ = ["REGISTRY", "theory_demo", "two_point_fit"]
