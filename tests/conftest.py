"""Shared fixtures: float64 on demand and a PRNG key."""

import jax
import pytest


@pytest.fixture
def x64():
    """Run a test in float64; restore the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def key():
    return jax.random.key(0)


def pytest_collection_modifyitems(config, items):
    import os

    if os.environ.get("RSD_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="full-size check; set RSD_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
