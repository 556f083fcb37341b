"""Assertions shared by the tests, and the scipy references they compare against.

The paper's fitting procedure in scipy (``scipy_fit``, ``scipy_objective``,
``reference_loss``, ``three_d_field``), independent of rsd's JAX code, lives in
:mod:`rsd.bench._scipy_fit` (the fit baselines of ``rsd bench``) and is imported
here under the names the tests use.
"""

import chex
import numpy as np

from rsd.bench._scipy_fit import (
    paper_fit as scipy_fit,
    reference_loss,
    scipy_objective,
    three_d_field,
)

__all__ = ["assert_close", "relative_error", "scipy_fit", "reference_loss", "scipy_objective",
           "three_d_field"]


class Compiles:
    """Counts XLA compilations while active (``with Compiles() as c: ...; c.names``)."""

    def __enter__(self):
        from jax import monitoring

        self.names = []
        self._listener = lambda name, *a, **k: (self.names.append(name)
                                                if "backend_compile" in name else None)
        monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc):
        from jax import monitoring

        monitoring.unregister_event_duration_listener(self._listener)


def assert_close(actual, expected, *, rtol=1e-7, atol=0.0, err_msg=""):
    """Elementwise closeness of arrays or pytrees (chex underneath)."""
    chex.assert_trees_all_close(actual, expected, rtol=rtol, atol=atol, custom_message=err_msg)


def relative_error(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    return np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-300))


def setting_pair(setting):
    """The two points (x, y*) of a two-point ``Setting`` (its dx2, dy2 and dimensions)."""
    from rsd import data

    return data.two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim,
                           out_dim=setting.out_dim)


def run_records(run):
    """A training ``Run``'s per-step records as numpy arrays, by name."""
    return {k: np.asarray(getattr(run, k)) for k in ("h", "y", "w", "loss", "status")}
