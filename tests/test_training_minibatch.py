"""Minibatch training and sparse recording (``train(..., record_every=k)``).

Minibatch SGD is checked against a hand-written loop (its own MLP forward in jnp, the
documented per-epoch permutation, a hand SGD update); ``record_every=k`` against
slicing a per-step run, also with a diverging seed and with early stopping.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsd.training import Setting, Status, _engine, train

N, IN, OUT, WIDTH, DEPTH, BATCH = 37, 5, 3, 16, 3, 8  # 5 minibatches per epoch, the last of 5
PER_EPOCH = math.ceil(N / BATCH)
SLOPE = 0.01  # leaky_relu's negative slope (PyTorch's)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(N, IN)).astype(np.float32),
            rng.normal(size=(N, OUT)).astype(np.float32))


def _setting(**kw):
    base = dict(architecture="mlp", activation="leaky_relu", width=WIDTH, depth=DEPTH,
                gain=1.0, lr=0.05, steps=4 * PER_EPOCH + 3, batch_size=BATCH, in_dim=None,
                out_dim=None, dx2=None, dy2=None)
    base.update(kw)
    return Setting(**base)


def _init_layers(seed):
    """Random (W [in, out], b [out]) per layer, drawn with numpy (not rsd.networks)."""
    rng = np.random.default_rng(seed)
    dims = [IN] + [WIDTH] * DEPTH + [OUT]
    return [(rng.normal(size=(a, b)).astype(np.float32) * np.float32(1.2 / np.sqrt(a)),
             rng.normal(size=(b,)).astype(np.float32) * np.float32(0.1))
            for a, b in zip(dims[:-1], dims[1:])]


def _mlp(layers, x):
    """(output, hidden activations) of the leaky-relu MLP, written out in jnp."""
    hiddens = []
    a = x
    for w, b in layers[:-1]:
        z = a @ w + b
        a = jnp.where(z > 0, z, SLOPE * z)
        hiddens.append(a)
    w, b = layers[-1]
    return a @ w + b, hiddens


def _hand_loop(layers, x, y, k_shuffle, *, lr, steps, pair, layer):
    """Minibatch SGD step by step: per-epoch order permutation(fold_in(k_shuffle, e), n),
    minibatches of BATCH in that order (the last one smaller), loss ½·mean over the
    batch's rows and outputs; returns per-step records (before each update) and the
    final layers."""
    i, j = pair

    def batch_loss(ls, xb, yb):
        out, _ = _mlp(ls, xb)
        return 0.5 * jnp.mean((out - yb) ** 2)

    grad = jax.jit(jax.grad(batch_loss))
    layers = [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers]
    rec = {"h": [], "y": [], "w": [], "loss": []}
    t = 0
    for epoch in range(math.ceil(steps / PER_EPOCH)):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_shuffle, epoch), N))
        for start in range(0, N, BATCH):
            if t == steps:
                break
            out, hid = _mlp(layers, x)
            dout = out[j] - out[i]
            rec["h"].append(float(jnp.sum((hid[layer][j] - hid[layer][i]) ** 2)))
            rec["y"].append(float(jnp.sum(dout ** 2)))
            rec["w"].append(float(jnp.dot(dout, dout - (y[j] - y[i]))))
            rec["loss"].append(float(0.5 * jnp.mean((out - y) ** 2)))
            idx = perm[start:start + BATCH]
            g = grad(layers, x[idx], y[idx])
            layers = [(w - lr * gw, b - lr * gb) for (w, b), (gw, gb) in zip(layers, g)]
            t += 1
    return {k: np.asarray(v) for k, v in rec.items()}, layers


def test_minibatch_sgd_matches_a_hand_written_loop():
    x, y = _data()
    setting = _setting()
    root, seed, pair, layer = jax.random.key(7), 3, (4, 11), 1
    init = _init_layers(0)
    run = train(setting, x, y, seeds=[seed], init_params=init, pair=pair, layers=(layer,),
                root_key=root, record_every=PER_EPOCH, return_params=True)
    # The documented keys: (init, minibatch order, dropout) = split(fold_in(root, seed), 3).
    k_shuffle = jax.random.split(jax.random.fold_in(root, seed), 3)[1]
    rec, final = _hand_loop(init, jnp.asarray(x), jnp.asarray(y), k_shuffle, lr=setting.lr,
                            steps=setting.steps, pair=pair, layer=layer)
    assert run.status[0] == Status.OK
    np.testing.assert_array_equal(run.record_steps, np.arange(0, setting.steps, PER_EPOCH))
    # Records once per epoch (5 records over 23 steps), to float32 round-off of ~20 SGD
    # steps (measured: <= 4e-7 relative); the loss falls by 20% over the run, so a wrong
    # minibatch or order would show.
    assert rec["loss"][0] - rec["loss"][-1] > 0.05
    for name, ref in rec.items():
        got = np.asarray(getattr(run, name))[0]
        got = got[:, 0] if name == "h" else got
        np.testing.assert_allclose(got, ref[::PER_EPOCH], rtol=2e-6, atol=1e-7, err_msg=name)
    for (w, b), layer_params in zip(final, run.params):
        np.testing.assert_allclose(layer_params["kernel"][0], w, rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(layer_params["bias"][0], b, rtol=2e-6, atol=1e-6)


def test_the_last_minibatch_of_an_epoch_counts_its_rows_once():
    """With one step per epoch beyond the full minibatches (n = 2·8 + 1), the third
    step trains on ONE point: its update is lr·∇(½·mean over that point's outputs)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(17, IN)).astype(np.float32)
    y = rng.normal(size=(17, OUT)).astype(np.float32)
    setting = _setting(steps=3)
    init = _init_layers(2)
    run = train(setting, x, y, seeds=[0], init_params=init, return_params=True,
                root_key=jax.random.key(1))
    k_shuffle = jax.random.split(jax.random.fold_in(jax.random.key(1), 0), 3)[1]
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_shuffle, 0), 17))
    layers = [(jnp.asarray(w), jnp.asarray(b)) for w, b in init]

    def loss(ls, xb, yb):
        return 0.5 * jnp.mean((_mlp(ls, xb)[0] - yb) ** 2)

    for idx in (perm[:8], perm[8:16], perm[16:]):
        g = jax.grad(loss)(layers, x[idx], y[idx])
        layers = [(w - setting.lr * gw, b - setting.lr * gb) for (w, b), (gw, gb) in zip(layers, g)]
    for (w, b), p in zip(layers, run.params):
        np.testing.assert_allclose(p["kernel"][0], w, rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(p["bias"][0], b, rtol=2e-6, atol=1e-6)


def _per_seed_data():
    """Three data sets; the third, 40× larger, makes its seed diverge within a few steps."""
    x, y = _data()
    xs = np.stack([x, _data(1)[0], 40 * x])
    return xs, y


def _assert_sliced(every, ref, k, *, stop_record=None):
    """Records of the ``every``-step run equal the per-step run's at steps 0, k, 2k, ...;
    ``stop_record``: per seed, the record index from which the seed stopped (or None)."""
    steps = ref.setting.steps
    np.testing.assert_array_equal(every.record_steps, np.arange(0, steps, k, dtype=np.int32))
    assert every.record_steps.dtype == np.int32
    for name in ("h", "y", "w", "loss"):
        expected = np.asarray(getattr(ref, name))[:, ::k].copy()
        if stop_record is not None:
            for s, r in enumerate(stop_record):
                if r is not None:
                    expected[s, r:] = expected[s, r]
        got = np.asarray(getattr(every, name))
        assert got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected, err_msg=f"{name}, record_every={k}")
    np.testing.assert_array_equal(every.e0, ref.e0)
    np.testing.assert_array_equal(every.status, ref.status)
    np.testing.assert_array_equal(every.diverged_step, ref.diverged_step)


@pytest.mark.parametrize("k", [2, PER_EPOCH, 7, 1000])
def test_record_every_equals_slicing_a_per_step_run(k):
    xs, y = _per_seed_data()
    setting = _setting(steps=41)
    tracked = xs[0, :6]
    kw = dict(seeds=[0, 1, 2], tracked=tracked, matrix_steps=(0, 3, 19, 41), layers=(0, 2))
    ref = train(setting, xs, y, **kw)
    assert list(np.asarray(ref.status)) == [Status.OK, Status.OK, Status.DIVERGED]
    assert 0 < int(ref.diverged_step[2]) < 10
    every = train(setting, xs, y, record_every=k, **kw)
    _assert_sliced(every, ref, min(k, setting.steps))
    np.testing.assert_array_equal(every.stop_step, ref.stop_step)
    # Matrices are taken at their own steps (3 and 19 are not record steps).
    np.testing.assert_array_equal(every.hidden_matrices, ref.hidden_matrices)
    np.testing.assert_array_equal(every.output_matrices, ref.output_matrices)


def test_record_every_one_is_the_default():
    x, y = _data()
    setting = _setting(steps=12)
    a = train(setting, x, y, seeds=[0, 5])
    b = train(setting, x, y, seeds=[0, 5], record_every=1)
    np.testing.assert_array_equal(a.record_steps, np.arange(12))
    for name in ("h", "y", "w", "loss", "e0", "status", "diverged_step", "stop_step"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("k", [1, 3, PER_EPOCH, 16])
def test_record_every_with_stop_loss_stops_at_the_first_record_below_it(k):
    xs, y = _per_seed_data()
    setting = _setting(steps=200)
    free = train(setting, xs, y, seeds=[0, 1, 2])  # no early stopping
    loss = np.asarray(free.loss)
    ell = float(np.quantile(loss[0], 0.3))  # reached by seed 0 after a while
    run = train(setting, xs, y, seeds=[0, 1, 2], record_every=k, stop_loss=ell)
    stop_record, stop_step = [], []
    for s in range(3):
        below = np.flatnonzero(loss[s, ::k] < ell)
        r = int(below[0]) if below.size and below[0] * k < int(free.diverged_step[s]) else None
        stop_record.append(r)
        stop_step.append(setting.steps if r is None else r * k)
    assert stop_record[0] is not None and stop_record[2] is None  # seed 2 diverges first
    np.testing.assert_array_equal(run.stop_step, stop_step)
    _assert_sliced(run, free, k, stop_record=stop_record)


def test_a_seed_frozen_between_records_repeats_its_frozen_records():
    """Every seed diverges within the first record unit, so the early-stopping loop
    ends there; the later records come from the frozen parameters."""
    x, y = _data()
    setting = _setting(steps=600, lr=12.0)
    ref = train(setting, x, y, seeds=[0, 1, 2])
    assert np.all(np.asarray(ref.status) == Status.DIVERGED)
    assert np.all(np.asarray(ref.diverged_step) % 150 != 0)
    run = train(setting, x, y, seeds=[0, 1, 2], record_every=150, stop_loss=1e-12)
    _assert_sliced(run, ref, 150)


def test_a_second_call_reuses_the_compiled_program():
    x, y = _data()
    setting = _setting(steps=20)
    for kw in ({}, dict(stop_loss=0.01)):
        first = train(setting, x, y, seeds=[0, 1, 2], record_every=PER_EPOCH, **kw)
        jax.block_until_ready(first.h)
        traces = _engine._TRACES
        # Other seeds, another lr, other data of the same shapes: the same program.
        second = train(setting.replace(lr=0.02), 2 * x, y, seeds=[4, 5, 6],
                       record_every=PER_EPOCH, **kw)
        jax.block_until_ready(second.h)
        assert _engine._TRACES == traces
        assert second.h.shape == first.h.shape == (3, 4, DEPTH)


@pytest.mark.parametrize("bad", [0, -3, 1.5, 2.0, True, "4", None])
def test_record_every_must_be_a_positive_integer(bad):
    x, y = _data()
    with pytest.raises(ValueError, match="record_every"):
        train(_setting(steps=5), x, y, seeds=[0], record_every=bad)
