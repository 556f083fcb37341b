"""The public init/step pair (``Trainer``, ``TrainState``) and optimizers as optax
transformations.

References: ``train`` (the established engine, pinned to PyTorch by the reference
tests) for the step itself, and a numpy hand loop for a momentum optimizer that
``train`` never had by name.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rsd import training
from rsd.training import Status, Trainer

from .helpers import setting_pair as _pair


def _narrow(**kw):
    return training.Setting.from_paper("2_points", "narrow").replace(
        **{"steps": 30, "width": 8, "depth": 4, "layers": (2,), **kw})


def _scan(trainer, state, steps):
    return jax.jit(lambda st: jax.lax.scan(lambda c, _: trainer.step(c), st, length=steps))(state)


def _blobs(n=10, in_dim=3, out_dim=2):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, in_dim)).astype(np.float32), \
        rng.normal(size=(n, out_dim)).astype(np.float32)


@pytest.mark.parametrize("kind", ["full_batch", "minibatch", "dropout"])
def test_scanning_step_reproduces_train(kind):
    if kind == "full_batch":
        s = _narrow()
        x, y = _pair(s)
    else:
        x, y = _blobs()
        s = training.Setting(architecture="mlp" if kind == "minibatch" else "dropout",
                             activation="tanh", width=6, depth=2, lr=0.05, steps=25,
                             batch_size=4 if kind == "minibatch" else None, in_dim=None,
                             out_dim=None, dx2=None, dy2=None, dropout_rate=0.3)
    pair = (0, 1) if kind == "full_batch" else (1, 3)
    trainer = Trainer(s, x, y, pair=pair)
    # The same initial weights on both sides (a random initialization made inside another
    # program may differ in the last bit: XLA's normal sampler is not bitwise stable
    # across fusions), so the steps themselves are compared bitwise.
    params0 = jax.jit(trainer.network.init)(jax.random.key(11))
    run = training.train(s, x, y, seeds=[5], return_params=True, pair=pair,
                         init_params=trainer.network.to_layers(params0))
    state, rec = _scan(trainer, trainer.init(5, params=params0), s.steps)
    for name in ("h", "y", "w", "loss"):
        np.testing.assert_array_equal(np.asarray(rec[name]), np.asarray(getattr(run, name))[0],
                                      err_msg=name)
    # The random initialization of seed 5 is train's (the same keys), to round-off.
    random_run = training.train(s, x, y, seeds=[5], pair=pair)
    _, rec0 = trainer.step(trainer.init(5))
    np.testing.assert_allclose(np.asarray(rec0["h"]), np.asarray(random_run.h)[0, 0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(run.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[0])
    assert int(state.step) == s.steps and int(state.status) == Status.OK


def test_vmapped_learning_rates_equal_train_per_seed_rates():
    s = _narrow(optimizer="adam", lr=1e-3)
    x, y = _pair(s)
    seeds, lrs = np.array([0, 1, 2, 3]), np.array([3e-4, 1e-3, 3e-3, 1e-2])
    trainer = Trainer(s, x, y)
    params0 = jax.jit(jax.vmap(trainer.network.init))(jax.random.split(jax.random.key(3), 4))
    state = jax.vmap(lambda sd, lr, p: trainer.init(sd, lr, params=p))(
        jnp.asarray(seeds), jnp.asarray(lrs, jnp.float32), params0)
    np.testing.assert_array_equal(np.asarray(state.opt_state.hyperparams["learning_rate"]),
                                  lrs.astype(np.float32))
    _, rec = jax.jit(jax.vmap(lambda st: jax.lax.scan(lambda c, _: trainer.step(c), st,
                                                      length=s.steps)))(state)
    run = training.train(s, x, y, seeds=seeds, lr=lrs,
                         init_params=trainer.network.to_layers(params0))
    np.testing.assert_array_equal(np.asarray(rec["h"]), np.asarray(run.h))
    np.testing.assert_array_equal(np.asarray(rec["loss"]), np.asarray(run.loss))


def test_momentum_optimizer_matches_a_numpy_hand_loop():
    """A one-hidden-layer linear network trained by optax SGD with momentum 0.9 through
    ``train(optimizer=...)``, against the same loop written out in numpy (float64)."""
    x, y = _blobs(n=6, in_dim=3, out_dim=2)
    s = training.Setting(activation="linear", width=4, depth=1, lr=0.05, steps=20,
                         in_dim=None, out_dim=None, dx2=None, dy2=None)
    rng = np.random.default_rng(1)
    w1, b1 = rng.normal(size=(3, 4)) * 0.5, rng.normal(size=4) * 0.1
    w2, b2 = rng.normal(size=(4, 2)) * 0.5, rng.normal(size=2) * 0.1
    init = [(w1.astype(np.float32), b1.astype(np.float32)),
            (w2.astype(np.float32), b2.astype(np.float32))]
    opt = optax.sgd(0.05, momentum=0.9)
    run = training.train(s, x, y, seeds=[0], init_params=init, optimizer=opt, pair=(0, 2))
    assert np.isnan(np.asarray(run.lr)).all()  # the optimizer's own rate stood

    params = [np.array(a, np.float64) for a in (w1, b1, w2, b2)]
    params = [p.astype(np.float32).astype(np.float64) for p in params]
    trace = [np.zeros_like(p) for p in params]
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    hs, losses = [], []
    for _ in range(s.steps):
        w1, b1, w2, b2 = params
        hid = xd @ w1 + b1
        out = hid @ w2 + b2
        hs.append(np.sum((hid[2] - hid[0]) ** 2))
        losses.append(0.5 * np.mean((out - yd) ** 2))
        g_out = (out - yd) / out.size
        grads = [xd.T @ (g_out @ w2.T), (g_out @ w2.T).sum(0), hid.T @ g_out, g_out.sum(0)]
        trace = [g + 0.9 * t for g, t in zip(grads, trace)]
        params = [p - 0.05 * t for p, t in zip(params, trace)]
    np.testing.assert_allclose(np.asarray(run.h)[0, :, 0], hs, rtol=2e-5)
    np.testing.assert_allclose(np.asarray(run.loss)[0], losses, rtol=2e-5)
    # Without momentum the trajectory is different (the transformation was used).
    plain = training.train(s.replace(lr=0.05), x, y, seeds=[0], init_params=init, pair=(0, 2))
    assert np.abs(np.asarray(plain.loss)[0, -1] - losses[-1]) > 1e-3


def test_a_diverging_state_freezes():
    s = _narrow(lr=50.0)
    x, y = _pair(s)
    trainer = Trainer(s, x, y)
    state, rec = _scan(trainer, trainer.init(0), 40)
    assert int(state.status) == Status.DIVERGED
    t = int(state.diverged_step)
    assert 0 < t < 40
    loss = np.asarray(rec["loss"])
    # Finite until step t, whose loss overflowed; the update of step t and all later
    # ones were skipped, so the kept parameters are the (finite) ones of step t.
    assert np.all(np.isfinite(loss[:t])) and not np.any(np.isfinite(loss[t:]))
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(state.params))
    state2, _ = trainer.step(state)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state2.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("call, words", [
    (lambda s, x, y: Trainer(s, x[None], y), "x and y must have shapes [n, in_dim]"),
    (lambda s, x, y: Trainer(s, x, y, optimizer="sgd"), "optimizer must be None or an optax"),
    (lambda s, x, y: Trainer(s, x, y, pair=(0, 0)), "pair must be two different indices"),
    (lambda s, x, y: Trainer(s, x, y, optimizer=optax.sgd(0.1)).init(0, lr=0.1),
     "lr needs an optimizer with an injected learning rate"),
    (lambda s, x, y: training.train(s, x, y, seeds=[0], optimizer=lambda g: g),
     "optimizer must be None or an optax.GradientTransformation"),
])
def test_bad_arguments_raise(call, words):
    s = _narrow()
    x, y = _pair(s)
    with pytest.raises(ValueError, match=__import__("re").escape(words)):
        call(s, x, y)


def test_structure_separates_hyperparameters():
    s = _narrow()
    assert s.structure() == s.replace(lr=0.3, gain=2.0, dx2=4.0, dy2=0.1, name="x").structure()
    assert s.structure() != s.replace(width=9).structure()
    assert s.hyperparameters() == {"lr": s.lr, "gain": s.gain, "dx2": s.dx2, "dy2": s.dy2}


@pytest.mark.parametrize("architecture, optimizer", [("mlp", "sgd"), ("resnet", "adam")])
def test_padded_width_trains_as_the_unpadded_network(architecture, optimizer):
    s = _narrow(architecture=architecture, optimizer=optimizer, lr=2e-3, width=6, depth=3,
                layers=(1,))
    x, y = _pair(s)
    net = s.network()
    params = jax.jit(jax.vmap(net.init))(jax.random.split(jax.random.key(0), 2))
    layers = net.to_layers(params)
    small = training.train(s, x, y, seeds=[0, 1], init_params=layers, return_params=True)
    wide = training.train(s.replace(width=10), x, y, seeds=[0, 1],
                          init_params=training.pad_hidden(layers, 10), return_params=True)
    for name in ("h", "y", "w", "loss"):
        np.testing.assert_allclose(np.asarray(getattr(wide, name)),
                                   np.asarray(getattr(small, name)), rtol=1e-5, atol=1e-9,
                                   err_msg=name)
    # The padded units never moved: exactly zero weights in and out after training.
    final = s.replace(width=10).network().to_layers(wide.params)
    for k, (w, b) in enumerate(final):
        w, b = np.asarray(w), np.asarray(b)
        if k > 0:
            assert np.all(w[:, 6:, :] == 0)
        if k < len(final) - 1:
            assert np.all(w[..., 6:] == 0) and np.all(b[:, 6:] == 0)
