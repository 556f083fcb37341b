"""Assertions shared by the tests."""

import chex
import numpy as np


def assert_close(actual, expected, *, rtol=1e-7, atol=0.0, err_msg=""):
    """Elementwise closeness of arrays or pytrees (chex underneath)."""
    chex.assert_trees_all_close(actual, expected, rtol=rtol, atol=atol, custom_message=err_msg)


def relative_error(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    return np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-300))
