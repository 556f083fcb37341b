"""Shared fixtures: float64 on demand and a PRNG key."""

import os
import tempfile

import jax
import pytest

# Commands run in subprocesses (`python -m rsd ...`) turn on JAX's persistent compilation
# cache: point it at one folder per test session, so they share compiled programs with
# each other and never write to the user's cache.
os.environ.setdefault("RSD_COMPILATION_CACHE", tempfile.mkdtemp(prefix="rsd-test-jax-cache-"))


def _persistent_cache_for_the_tests():
    """The test process uses that folder too. Each module's compiled programs are
    dropped after it (``_fresh_compilation_caches``), and many modules compile the same
    programs (a default ``solve``, a fit): later modules, and pytest-xdist's other
    worker, load them from disk instead of compiling them again. Set through JAX's own
    options, not ``rsd._compilation_cache.enable``, whose state tests/test_compilation_cache.py
    checks."""
    from rsd import _compilation_cache as cc

    setting = os.environ["RSD_COMPILATION_CACHE"]
    if setting.strip().lower() in cc._OFF:
        return
    folder = os.path.join(setting, cc._host_tag())
    os.makedirs(folder, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", cc.MIN_COMPILE_TIME_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


_persistent_cache_for_the_tests()


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


def _near_a_process_limit() -> bool:
    """Whether this process's memory mappings are past half the kernel's per-process
    limit (vm.max_map_count), or its resident memory past 4 GiB (two workers share the
    machine). Unknown (not Linux): True."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            limit = int(f.read())
        with open("/proc/self/maps") as f:
            mappings = sum(1 for _ in f)
        with open("/proc/self/statm") as f:
            resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return True
    return mappings > limit // 2 or resident > 4 << 30


@pytest.fixture(autouse=True, scope="module")
def _fresh_compilation_caches():
    """Drop every compiled program after a test module once the process nears a limit.
    The suite compiles thousands of programs; kept in one process, their code mappings
    approach the kernel's per-process limit (vm.max_map_count) and XLA aborts while
    compiling. Below it, later modules reuse the programs (and traces) of earlier ones."""
    yield
    if _near_a_process_limit():
        jax.clear_caches()


@pytest.fixture(scope="session")
def reproduced_tiny(tmp_path_factory):
    """One ``rsd reproduce`` of every paper experiment at the tiny size, shared by the
    experiment test modules (and the notebooks, which reuse its folders)."""
    from rsd import experiments

    folder = tmp_path_factory.mktemp("reproduce")
    report, _ = experiments.reproduce(size="tiny", out=folder, progress=False, log=lambda s: None)
    assert report == folder / "report.md"
    return folder


# Modules that share the session's ``reproduced_tiny`` run on one pytest-xdist worker, so
# that the tiny reproduction runs once.
_REPRODUCE_GROUP = ("test_experiments", "test_experiment_", "test_experiments_", "test_resume_experiments")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    # One xdist group per module (``--dist loadgroup``): a module's tests share compiled
    # programs, so splitting a module across workers would compile them twice.
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else item.nodeid
        group = "reproduce" if module.startswith(_REPRODUCE_GROUP) else module
        item.add_marker(pytest.mark.xdist_group(group))
    if os.environ.get("RSD_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="full-size check; set RSD_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# Hypothesis profiles shared by the property-based tests: "ci" (loaded by default:
# no deadline, since examples compile) and "slow" (RSD_SLOW=1: many more examples).
# Tests bound their own example counts under "ci" and take the "slow" profile's.
try:
    from hypothesis import HealthCheck as _HealthCheck
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # hypothesis is in the "test" extra
    pass
else:
    import os as _os

    # "ci" is derandomized: the same examples on every run, so CI is reproducible and a
    # failure is a regression; "slow" (RSD_SLOW=1) explores fresh random examples.
    _hypothesis_settings.register_profile(
        "ci", deadline=None, print_blob=True, derandomize=True,
        suppress_health_check=[_HealthCheck.too_slow, _HealthCheck.data_too_large,
                               _HealthCheck.filter_too_much])
    _hypothesis_settings.register_profile(
        "slow", _hypothesis_settings.get_profile("ci"), max_examples=200, derandomize=False)
    _hypothesis_settings.load_profile("slow" if _os.environ.get("RSD_SLOW") == "1" else "ci")

