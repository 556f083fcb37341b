"""Accelerator checks (marker ``gpu``; skipped without a GPU or TPU): the accelerator's
numbers against the CPU's for the same programs. Run by ``benchmarks/gpu_check.sh``."""

import jax
import numpy as np
import pytest

from rsd import data, theory, training

ACCELERATOR = jax.default_backend() in ("gpu", "tpu")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not ACCELERATOR, reason="needs a GPU or TPU")]


def test_training_on_the_accelerator_matches_the_cpu():
    s = training.Setting.from_paper("2_points", "narrow").replace(steps=200)
    x, y = data.two_points(s.dx2, s.dy2, in_dim=s.in_dim, out_dim=s.out_dim)
    acc = training.train(s, x, y, seeds=range(8))
    with jax.default_device(jax.devices("cpu")[0]):
        cpu = training.train(s, x, y, seeds=range(8))
    # float32 sums in another order: round-off, amplified a little over 200 steps
    np.testing.assert_allclose(np.asarray(acc.h), np.asarray(cpu.h), rtol=1e-3)
    np.testing.assert_array_equal(np.asarray(acc.status), np.asarray(cpu.status))


def test_theory_on_the_accelerator_matches_the_cpu():
    z0 = np.array([[1e-3, 1e-4, -0.5], [1.0, 0.5, 0.1]])
    ts = np.linspace(0, 5000, 11)
    acc = theory.solve(z0, ts, 2e-3, 1e-3, 1.0, 0.5)
    with jax.default_device(jax.devices("cpu")[0]):
        cpu = theory.solve(z0, ts, 2e-3, 1e-3, 1.0, 0.5)
    np.testing.assert_allclose(np.asarray(acc.zs), np.asarray(cpu.zs), rtol=1e-4, atol=1e-9)
