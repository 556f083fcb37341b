"""Hyperparameters as data in ``train``: per-seed learning rates and gains, and the seed
axis sharded over several devices.

The reference for every per-seed run is the established path: a separate ``train`` of
``setting.replace(lr=..., gain=...)`` with the same seeds (the same chunk shape), which
the PyTorch reference tests pin down. Same shapes and the same per-seed arithmetic
must give bitwise equal records.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rsd import training

from .helpers import run_records as _records
from .helpers import setting_pair as _pair


def _setting(**kw):
    return training.Setting.from_paper("2_points", "narrow").replace(
        **{"steps": 40, "width": 8, "depth": 4, "layers": (2,), **kw})




@pytest.mark.parametrize("stop_loss", [None, 0.3])
def test_per_seed_lr_and_gain_equal_separate_runs(stop_loss):
    s = _setting()
    x, y = _pair(s)
    lrs = s.lr * np.array([0.5, 1.0, 3.0])
    gains = np.array([0.4, 1.0, 1.7])
    together = training.train(s, x, y, seeds=[0, 1, 2], lr=lrs, gain=gains, stop_loss=stop_loss)
    np.testing.assert_array_equal(np.asarray(together.lr), lrs.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(together.gain), gains.astype(np.float32))
    stopped = 0
    for k in range(3):
        alone = training.train(s.replace(lr=float(lrs[k]), gain=float(gains[k])), x, y,
                               seeds=[0, 1, 2], stop_loss=stop_loss)
        for name, a in _records(together).items():
            np.testing.assert_array_equal(a[k], _records(alone)[name][k], err_msg=name)
        np.testing.assert_array_equal(np.asarray(together.stop_step)[k],
                                      np.asarray(alone.stop_step)[k])
        stopped += int(np.asarray(alone.stop_step)[k] < s.steps)
    # The runs differ (the per-seed values are used, not the setting's), and with
    # early stopping at least one seed stops and one does not.
    assert not np.allclose(np.asarray(together.h)[0], np.asarray(together.h)[2])
    if stop_loss is not None:
        assert 0 < stopped < 3


def test_scalar_lr_and_gain_override_the_setting():
    s = _setting()
    x, y = _pair(s)
    a = training.train(s, x, y, seeds=[0, 1], lr=2 * s.lr, gain=0.7)
    b = training.train(s.replace(lr=2 * s.lr, gain=0.7), x, y, seeds=[0, 1])
    for name, v in _records(a).items():
        np.testing.assert_array_equal(v, _records(b)[name], err_msg=name)


def test_lr_scales_the_first_update_exactly(x64):
    """One SGD step from the same initialization (float64, so the change is resolved):
    the parameter change is lr·grad, so the change of h between record 0 and 1 is
    proportional to lr up to a second-order term of relative size ~lr."""
    s = _setting(steps=2)
    x, y = _pair(s)
    lrs = np.array([1e-6, 2e-6])
    run = training.train(s, x, y, seeds=[3, 3], lr=lrs)
    dh = np.asarray(run.h)[:, 1, 0] - np.asarray(run.h)[:, 0, 0]
    assert dh[0] != 0
    np.testing.assert_allclose(dh[1] / dh[0], 2.0, rtol=1e-4)


@pytest.mark.parametrize("kw, words", [
    (dict(lr=[0.1, 0.2]), "lr must be a number or one number per seed (shape [3])"),
    (dict(lr=-0.1), "lr must be finite and > 0"),
    (dict(lr=np.array([0.1, np.nan, 0.1])), "lr must be finite and > 0"),
    (dict(lr="fast"), "lr must be a number"),
    (dict(gain=[-1.0, 1.0, 1.0]), "gain must be finite and > 0"),
    (dict(gain=np.ones((3, 1))), "gain must be a number or one number per seed"),
    (dict(devices=0), "devices must be in [1, "),
    (dict(devices="gpu"), "devices must be None, 'all'"),
    (dict(devices=[]), "devices must be None, 'all'"),
])
def test_bad_hyperparameters_raise(kw, words):
    s = _setting()
    x, y = _pair(s)
    with pytest.raises(ValueError, match=__import__("re").escape(words)):
        training.train(s, x, y, seeds=[0, 1, 2], **kw)


def test_four_devices_give_the_one_device_numbers():
    """The seed axis sharded over 4 simulated CPU devices: bitwise the 1-device run
    (each device runs the same per-seed program on its share), with per-seed data,
    learning rates and gains, and with early stopping."""
    code = textwrap.dedent("""
        import jax, numpy as np
        from rsd import data, training
        assert len(jax.devices()) == 4
        s = training.Setting.from_paper("2_points", "narrow").replace(steps=40, width=8, depth=4,
                                                                         layers=(2,))
        x, y = data.two_points(s.dx2, s.dy2, in_dim=s.in_dim, out_dim=s.out_dim)
        xs = np.stack([x * c for c in np.linspace(0.8, 1.2, 6)])
        kw = dict(seeds=range(6), lr=np.linspace(0.5, 2, 6) * s.lr,
                  gain=np.linspace(0.5, 1.5, 6))
        for stop in (None, 0.3):
            one = training.train(s, xs, y, stop_loss=stop, **kw)
            four = training.train(s, xs, y, stop_loss=stop, devices="all", **kw)
            assert len(four.h.sharding.device_set) == 4, four.h.sharding
            for k in ("h", "y", "w", "loss", "status", "stop_step"):
                a, b = np.asarray(getattr(one, k)), np.asarray(getattr(four, k))
                assert a.shape == b.shape and np.array_equal(a, b), (stop, k)
        # use_devices: train(devices=None) inside the block is train(devices="all").
        with training.use_devices("all"):
            inside = training.train(s, xs, y, **kw)
        outside = training.train(s, xs, y, **kw)
        assert len(inside.h.sharding.device_set) == 4, inside.h.sharding
        assert len(outside.h.sharding.device_set) == 1, outside.h.sharding
        assert np.array_equal(np.asarray(inside.h), np.asarray(outside.h))
        print("OK")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-3000:]


# --- memory-aware chunking ---------------------------------------------------------------

def _spy_chunks(monkeypatch, fail_above=None):
    """Record the seed count of every chunk program call; optionally make every call with
    more than ``fail_above`` seeds fail as a device out-of-memory error does."""
    from rsd.training import _engine

    sizes = []
    real = _engine._chunk_program

    def spying(**kw):
        program = real(**kw)

        def call(params, k_shuffle, *rest):
            size = k_shuffle.shape[0]
            sizes.append(size)
            if fail_above is not None and size > fail_above:
                raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
                                   "1234567 bytes.")
            return program(params, k_shuffle, *rest)
        return call

    monkeypatch.setattr(_engine, "_chunk_program", spying)
    return sizes


def test_a_small_memory_budget_gives_several_identical_chunks(monkeypatch):
    s = _setting()
    x, y = _pair(s)
    whole = training.train(s, x, y, seeds=range(6), chunk_size=8)
    # The footprint per seed, by hand: parameters ×4 (params, gradient, update, new
    # params; SGD has no moments), 3 activations per hidden unit and point, T records of
    # (1 layer + 4) values, float32.
    p, depth = s.width, s.depth
    n_params = 1 * p + p + (depth - 1) * (p * p + p) + p * 1 + 1
    per_seed = 4 * (4 * n_params + 3 * 2 * p * depth + s.steps * 5)
    sizes = _spy_chunks(monkeypatch)
    small = training.train(s, x, y, seeds=range(6), memory_budget=2 * per_seed + 1)
    assert sizes == [2, 2, 2]
    for name, a in _records(small).items():
        np.testing.assert_array_equal(a, _records(whole)[name], err_msg=name)
    sizes.clear()
    training.train(s, x, y, seeds=range(6), memory_budget=2 * per_seed - 1)
    assert sizes == [1] * 6


def test_a_chunk_out_of_memory_is_halved_and_retried(monkeypatch):
    s = _setting()
    x, y = _pair(s)
    whole = training.train(s, x, y, seeds=range(5), chunk_size=8)
    sizes = _spy_chunks(monkeypatch, fail_above=2)
    with pytest.warns(RuntimeWarning, match="ran out of device memory; retrying with 4"):
        retried = training.train(s, x, y, seeds=range(5), chunk_size=8)
    assert sizes == [8, 4, 2, 2, 2]
    for name, a in _records(retried).items():
        np.testing.assert_array_equal(a, _records(whole)[name], err_msg=name)
    # Other errors are not retried.
    monkeypatch.undo()
    from rsd.training import _placement
    monkeypatch.setattr(_placement, "_is_out_of_memory", lambda e: False)
    _spy_chunks(monkeypatch, fail_above=2)
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
        training.train(s, x, y, seeds=range(5), chunk_size=8)


def test_memory_budget_from_the_environment(monkeypatch):
    s = _setting()
    x, y = _pair(s)
    sizes = _spy_chunks(monkeypatch)
    monkeypatch.setenv("RSD_MEMORY_BUDGET", "1")
    training.train(s, x, y, seeds=range(3))
    assert sizes == [1, 1, 1]
    monkeypatch.setenv("RSD_MEMORY_BUDGET", "lots")
    with pytest.raises(ValueError, match="RSD_MEMORY_BUDGET must be a number of bytes"):
        training.train(s, x, y, seeds=range(3))
