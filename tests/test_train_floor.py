"""``train``'s default chunk size on CPU devices: chunks whose weights stay in cache.

A training step streams every weight several times (DESIGN.md §4), so on a CPU the
chunk size (seeds per compiled program) decides whether those passes run from cache or
from memory. ``chunk_size=None`` caps a chunk's parameters and optimizer state at
``AUTO_CHUNK_CACHE_BYTES`` per device, inside the memory budget. The expected chunk
sizes here come from parameter counts worked out by hand.
"""

import types

import jax
import numpy as np
import pytest

from rsd import data, training

from .helpers import run_records as _records
from .helpers import setting_pair as _pair
from rsd.training import _engine, _placement


def _setting(**kw):
    return training.Setting.from_paper("2_points", "narrow").replace(
        **{"steps": 12, "width": 8, "depth": 4, "layers": (2,), **kw})




def _mlp_params(width, depth, in_dim=1, out_dim=1):
    """Parameters of an MLP in→P, (depth − 1)×(P→P), P→out, biases included."""
    return (in_dim * width + width) + (depth - 1) * (width * width + width) + \
        (width * out_dim + out_dim)


class _Stop(Exception):
    pass


def _spy_chunks(monkeypatch, *, run=True):
    """Record the seed count of every chunk program call (``run=False``: stop at the
    first call, before anything compiles)."""
    sizes = []
    real = _engine._chunk_program

    def spying(**kw):
        program = real(**kw) if run else None

        def call(params, k_shuffle, *rest):
            sizes.append(k_shuffle.shape[0])
            if not run:
                raise _Stop
            return program(params, k_shuffle, *rest)
        return call

    monkeypatch.setattr(_engine, "_chunk_program", spying)
    return sizes


@pytest.mark.parametrize("optimizer, copies", [("sgd", 1), ("adam", 3)])
def test_the_cache_cap_sets_the_chunk_and_changes_no_result(monkeypatch, optimizer, copies):
    s = _setting(optimizer=optimizer)
    x, y = _pair(s)
    whole = training.train(s, x, y, seeds=range(4), chunk_size=4)
    # float32 parameters (and Adam's two moments): room for exactly 2 seeds.
    state = 4 * _mlp_params(s.width, s.depth) * copies
    monkeypatch.setattr(_placement, "AUTO_CHUNK_CACHE_BYTES", 2 * state + 1)
    sizes = _spy_chunks(monkeypatch)
    capped = training.train(s, x, y, seeds=range(4))
    assert sizes == [2, 2]
    for name, a in _records(capped).items():
        np.testing.assert_array_equal(a, _records(whole)[name], err_msg=name)
    # One byte less: one seed per chunk.
    monkeypatch.undo()
    monkeypatch.setattr(_placement, "AUTO_CHUNK_CACHE_BYTES", 2 * state - 1)
    sizes = _spy_chunks(monkeypatch, run=False)
    with pytest.raises(_Stop):
        training.train(s, x, y, seeds=range(3))
    assert sizes == [1]


def test_the_memory_budget_still_bounds_the_chunk(monkeypatch):
    s = _setting()
    x, y = _pair(s)
    monkeypatch.setattr(_placement, "AUTO_CHUNK_CACHE_BYTES", 2**40)
    sizes = _spy_chunks(monkeypatch)
    training.train(s, x, y, seeds=range(5))
    assert sizes == [8]  # 5 seeds: the power-of-two bucket of 8, under AUTO_CHUNK_MAX
    sizes.clear()
    training.train(s, x, y, seeds=range(3), memory_budget=1)
    assert sizes == [1, 1, 1]
    # A given chunk_size is used as given, whatever the cache.
    sizes.clear()
    monkeypatch.setattr(_placement, "AUTO_CHUNK_CACHE_BYTES", 1)
    training.train(s, x, y, seeds=range(4), chunk_size=4)
    assert sizes == [4]


def test_the_paper_settings_get_cache_sized_chunks(monkeypatch):
    """Default MLP (P=500, L=20): 4,761,001 float32 parameters = 19 MB, more than the
    16 MiB cap: one seed per chunk. Narrow (P=50): 48,601 parameters = 194 kB: 86 fit,
    so the largest power of two, 64 (also AUTO_CHUNK_MAX)."""
    assert _mlp_params(500, 20) == 4_761_001 and _mlp_params(50, 20) == 48_601
    assert _placement.AUTO_CHUNK_CACHE_BYTES == 16 * 2**20
    x, y = data.two_points(1.0, 0.5)
    for width, expected in ((500, 1), (50, 64)):
        s = training.Setting(architecture="mlp", activation="leaky_relu", width=width,
                             depth=20, gain=1.0, lr=0.005, steps=3, layers=(10,))
        dims = [1] + [width] * 20 + [1]
        init = [(np.zeros((a, b), np.float32), np.zeros(b, np.float32))
                for a, b in zip(dims[:-1], dims[1:])]  # no random draws to compile
        sizes = _spy_chunks(monkeypatch, run=False)
        with pytest.raises(_Stop):
            training.train(s, x, y, seeds=range(100), init_params=init)
        assert sizes == [expected], width
        monkeypatch.undo()


def test_no_cache_cap_on_accelerators():
    gpu = types.SimpleNamespace(devices=np.array([types.SimpleNamespace(platform="gpu")]))
    assert _placement._cache_chunk(10**9, gpu) is None
    cpus = types.SimpleNamespace(devices=np.array([types.SimpleNamespace(platform="cpu")] * 2))
    # Per device: 16 MiB / 5 MiB -> 3 fit -> 2 seeds each, 4 over both devices.
    assert _placement._cache_chunk(5 * 2**20, cpus) == 4
    assert _placement._cache_chunk(10**9, cpus) == 2  # at least one seed per device
    assert _placement._auto_chunk(1, 2**40, cache_chunk=None) == _placement.AUTO_CHUNK_MAX
    assert _placement._auto_chunk(1, 2**40, cache_chunk=4) == 4
    assert _placement._auto_chunk(100, 250, cache_chunk=4) == 2


@pytest.mark.parametrize("return_params", [False, True])
def test_shared_initial_parameters_start_every_chunk(return_params):
    """One broadcast of shared init_params serves every chunk (or, when the program
    donates its parameters, a fresh one per chunk): full batch, no dropout, so every seed
    starts from the same weights and must record the same trajectory, in any chunk."""
    s = _setting()
    x, y = _pair(s)
    dims = [x.shape[1]] + [s.width] * s.depth + [y.shape[1]]
    rng = np.random.default_rng(0)
    init = [(0.5 * rng.standard_normal((a, b)).astype(np.float32),
             0.1 * rng.standard_normal(b).astype(np.float32)) for a, b in zip(dims[:-1], dims[1:])]
    kept = [(w.copy(), b.copy()) for w, b in init]
    run = training.train(s, x, y, seeds=range(3), init_params=init, chunk_size=1,
                         return_params=return_params)
    rec = _records(run)
    for name, a in rec.items():
        for k in (1, 2):
            np.testing.assert_array_equal(a[k], a[0], err_msg=name)
    if return_params:
        for leaf in jax.tree.leaves(run.params):
            np.testing.assert_array_equal(np.asarray(leaf)[2], np.asarray(leaf)[0])
    # The training moved the weights away from the start, and the caller's arrays are intact.
    assert not np.allclose(rec["loss"][0, -1], rec["loss"][0, 0])
    for (w, b), (w0, b0) in zip(init, kept):
        np.testing.assert_array_equal(w, w0)
        np.testing.assert_array_equal(b, b0)
