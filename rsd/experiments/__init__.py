"""Experiments: each module has ``Config``, ``run(config) -> result``, ``plot(result) -> figure``
and ``summary(result) -> str``; the CLI reads ``REGISTRY``."""

from . import theory_demo

REGISTRY = {
    "theory-demo": theory_demo,
}

__all__ = ["REGISTRY", "theory_demo"]
