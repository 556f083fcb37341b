"""rsd: representation learning dynamics, theory next to real networks, in JAX."""

from . import data, networks, quantities, theory, training

__version__ = "0.1.0"
__all__ = ["data", "networks", "quantities", "theory", "training", "__version__"]
