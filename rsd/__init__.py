"""rsd: representation learning dynamics, theory next to real networks, in JAX."""

from . import quantities, theory

__version__ = "0.1.0"
__all__ = ["quantities", "theory", "__version__"]
