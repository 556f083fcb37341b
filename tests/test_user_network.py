"""A network rsd does not ship, written by a user in Flax, trained and fitted through the
public API: rsd.networks.FlaxNetwork → rsd.training.train(network=...) → fitting.

The expected records come from a hand-written loop (the Flax module, optax SGD and
jax.grad, with h, y, w written out in numpy), not from rsd's training code.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import rsd
from rsd import fitting
from rsd.networks import FlaxNetwork


class GatedTwoLayer(nn.Module):
    """Two hidden layers, the second multiplied by a learned sigmoid gate (no rsd network
    has gates), and a linear read-out."""

    width: int

    @nn.compact
    def __call__(self, x):
        h1 = jnp.tanh(nn.Dense(self.width)(x))
        h2 = jnp.tanh(nn.Dense(self.width)(h1)) * nn.sigmoid(nn.Dense(self.width)(h1))
        return nn.Dense(1)(h2), (h1, h2)


STEPS = 400
LR = 0.05


def _setting():
    base = rsd.training.Setting.from_paper("2_points", "default")
    return base.replace(steps=STEPS, lr=LR, layers=(1,), width=16, depth=2)


def _hand_loop(module, x, y, seed):
    """Plain optax SGD on ½·mean (ŷ − y*)², recording before each update."""
    k_init = jax.random.split(jax.random.fold_in(jax.random.key(0), seed), 3)[0]
    params = module.init(k_init, jnp.zeros((1, x.shape[1]), jnp.float32))
    opt = optax.sgd(LR)
    state = opt.init(params)

    def loss(p):
        out, _ = module.apply(p, x)
        return 0.5 * jnp.mean((out - y) ** 2)

    step = jax.jit(lambda p, s: opt.update(jax.grad(loss)(p), s, p))
    forward = jax.jit(lambda p: module.apply(p, x))
    dy = np.asarray(y[1] - y[0], np.float64)
    records = []
    for _ in range(STEPS):
        out, hidden = forward(params)
        phi, yhat = np.asarray(hidden[1], np.float64), np.asarray(out, np.float64)
        d_out = yhat[1] - yhat[0]
        h = np.sum((phi[1] - phi[0]) ** 2)
        yy = np.sum(d_out ** 2)
        records.append((h, yy, yy - np.dot(dy, d_out)))
        updates, state = step(params, state)
        params = optax.apply_updates(params, updates)
    return np.array(records)


def test_a_user_flax_network_trains_like_a_hand_loop_and_is_fitted():
    setting = _setting()
    x, y = rsd.data.two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim, out_dim=1)
    module = GatedTwoLayer(width=16)
    network = FlaxNetwork(module, in_dim=setting.in_dim, out_dim=1)
    run = rsd.training.train(setting, x, y, seeds=[0, 3], network=network)
    assert np.all(np.asarray(run.status) == rsd.training.Status.OK)
    for s, seed in enumerate((0, 3)):
        want = _hand_loop(module, x, y, seed)
        got = np.stack([np.asarray(run.h[s, :, 0]), np.asarray(run.y[s]), np.asarray(run.w[s])], -1)
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)

    fit = fitting.fit_rates(run.h[..., 0], run.y, run.w, run.dx2, run.dy2)
    assert np.all(np.asarray(fit.status) == fitting.FitStatus.OK)
    # The fitted rates are a minimum of the fit objective: every ±10% move of a rate
    # fits this network's trajectory worse (R² of each seed is in fit.r2).
    for s in range(2):
        h, yy, w = (np.asarray(a[s], np.float64) for a in (run.h[..., 0], run.y, run.w))
        best = np.log([float(fit.eta_h[s]), float(fit.eta_y[s])])
        at = lambda log_rates: float(fitting.fit_objective(log_rates, h, yy, w, float(run.dx2),
                                                           float(run.dy2)))
        for move in ([0.1, 0], [-0.1, 0], [0, 0.1], [0, -0.1]):
            assert at(best + np.log1p(move)) > at(best)
