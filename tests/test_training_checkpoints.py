"""Parameter checkpoints (``train(..., checkpoint_steps=...)``), the ``network=`` argument
and the option records (``Recording``, ``Placement``).

Expected checkpoints come from an independent hand loop: plain optax, the network's
``apply`` and ``jax.grad`` of the half-MSE, written here step by step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rsd import data, training
from rsd.training import Placement, Recording, Setting, Status, train

STEPS = 10


def _setting(**kw):
    base = dict(architecture="mlp", activation="tanh", width=8, depth=2, gain=1.0,
                lr=0.05, steps=STEPS, in_dim=3, out_dim=2)
    base.update(kw)
    return Setting(**base)


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 3)), rng.normal(size=(6, 2))


def _initial_layers(network, num_seeds):
    """Per-seed (W, b) layers drawn here, with a leading seed axis."""
    per_seed = [network.to_layers(network.init(jax.random.key(100 + s))) for s in range(num_seeds)]
    return [tuple(np.stack([np.asarray(p[k][m]) for p in per_seed]) for m in range(2))
            for k in range(len(per_seed[0]))]


def _hand_loop(network, layers, x, y, optimizer, steps):
    """Parameters after every step 0 … steps of full-batch training, one seed."""
    dtype = jnp.result_type(float)  # the working precision, as train's
    params = network.from_layers([(jnp.asarray(w, dtype), jnp.asarray(b, dtype))
                                  for w, b in layers])

    def loss(p):
        out, _ = network.apply(p, x, train=False)
        return 0.5 * jnp.mean((out - y) ** 2)

    opt_state = optimizer.init(params)
    history = [params]
    for _ in range(steps):
        grads = jax.grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        history.append(params)
    return history


def _assert_params_close(actual, expected, **tol):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), **tol)


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.05), ("adam", 0.01)])
def test_checkpoints_match_a_hand_loop(optimizer, lr, x64):
    s = _setting(optimizer=optimizer, lr=lr)
    x, y = _data()
    network = s.network()
    init = _initial_layers(network, 2)
    ckpts = (3, 7)
    run = train(s, x, y, seeds=[0, 1], init_params=init, checkpoint_steps=ckpts,
                return_params=True)
    assert run.checkpoint_steps.tolist() == list(ckpts)
    hand_opt = {"sgd": optax.sgd(lr), "adam": optax.adam(lr)}[optimizer]
    for s_idx in range(2):
        history = _hand_loop(network, [(w[s_idx], b[s_idx]) for w, b in init], jnp.asarray(x),
                             jnp.asarray(y), hand_opt, STEPS)
        for k, t in enumerate(ckpts):
            got = jax.tree.map(lambda a: a[s_idx, k], run.checkpoints)
            _assert_params_close(got, history[t], rtol=1e-10, atol=1e-12)
        final = jax.tree.map(lambda a: a[s_idx], run.params)
        _assert_params_close(final, history[STEPS], rtol=1e-10, atol=1e-12)


def test_step_zero_is_the_initial_parameters_and_step_T_the_final_ones():
    s = _setting()
    x, y = _data()
    network = s.network()
    init = _initial_layers(network, 3)
    run = train(s, x, y, seeds=range(3), init_params=init, checkpoint_steps=(0, 4, STEPS),
                return_params=True, record_every=3)
    first = jax.tree.map(lambda a: a[:, 0], run.checkpoints)
    for (w, b), layer in zip(init, network.to_layers(first)):
        np.testing.assert_array_equal(np.asarray(layer[0]), np.float32(w))
        np.testing.assert_array_equal(np.asarray(layer[1]), np.float32(b))
    last = jax.tree.map(lambda a: a[:, 2], run.checkpoints)
    for a, b in zip(jax.tree.leaves(last), jax.tree.leaves(run.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The checkpoints change nothing else.
    plain = train(s, x, y, seeds=range(3), init_params=init, record_every=3)
    for name in ("h", "y", "w", "loss", "status"):
        np.testing.assert_array_equal(np.asarray(getattr(run, name)),
                                      np.asarray(getattr(plain, name)))


@pytest.mark.parametrize("optimizer, lr, stop", [("sgd", 0.2, 0.12), ("adam", 0.05, 0.12)])
def test_checkpoints_after_an_early_stop_are_the_frozen_parameters(optimizer, lr, stop, x64):
    s = _setting(optimizer=optimizer, lr=lr, steps=40)
    x, y = _data()
    network = s.network()
    init = _initial_layers(network, 2)
    ckpts = (2, 10, 25, 40)
    run = train(s, x, y, seeds=[0, 1], init_params=init, checkpoint_steps=ckpts,
                stop_loss=stop, return_params=True)
    hand_opt = {"sgd": optax.sgd(lr), "adam": optax.adam(lr)}[optimizer]
    stopped = 0
    for s_idx in range(2):
        t_stop = int(run.stop_step[s_idx])
        assert int(run.status[s_idx]) == Status.OK
        stopped += t_stop < 40
        history = _hand_loop(network, [(w[s_idx], b[s_idx]) for w, b in init], jnp.asarray(x),
                             jnp.asarray(y), hand_opt, 40)
        for k, t in enumerate(ckpts):
            got = jax.tree.map(lambda a: a[s_idx, k], run.checkpoints)
            _assert_params_close(got, history[min(t, t_stop)], rtol=1e-9, atol=1e-12)
    assert stopped == 2  # the stop_loss is reached by both seeds within the run


def test_a_diverged_seed_keeps_its_last_finite_parameters():
    s = _setting(lr=1e3, activation="leaky_relu")
    x, y = _data()
    run = train(s, x, y, seeds=[0], checkpoint_steps=(STEPS,), return_params=True)
    assert int(run.status[0]) == Status.DIVERGED
    for a, b in zip(jax.tree.leaves(run.checkpoints), jax.tree.leaves(run.params)):
        assert np.all(np.isfinite(np.asarray(a)))
        np.testing.assert_array_equal(np.asarray(a)[:, 0], np.asarray(b))


@pytest.mark.parametrize("bad", [(3, 2), (1, 1), (-1, 2), (0, STEPS + 1), (1.5,), (), "a",
                                 [[1, 2]], (True,)])
def test_bad_checkpoint_steps_raise_value_error_naming_the_field(bad):
    s = _setting()
    x, y = _data()
    with pytest.raises(ValueError, match=rf"checkpoint_steps .*\[0, steps={STEPS}\]"):
        train(s, x, y, seeds=[0], checkpoint_steps=bad)


def test_a_given_network_trains_as_the_settings_own():
    s = _setting(architecture="dropout", dropout_rate=0.2, batch_size=4)
    x, y = _data()
    own = train(s, x, y, seeds=range(2), return_params=True)
    given = train(s, x, y, seeds=range(2), return_params=True, network=s.network())
    for name in ("h", "y", "w", "loss", "e0", "status"):
        np.testing.assert_array_equal(np.asarray(getattr(given, name)),
                                      np.asarray(getattr(own, name)), err_msg=name)
    assert np.all(np.isnan(np.asarray(given.gain)))
    with pytest.raises(ValueError, match="gain must be None"):
        train(s, x, y, seeds=[0], network=s.network(), gain=2.0)
    with pytest.raises(ValueError, match="network.in_dim=3"):
        train(s.replace(in_dim=None), x[:, :2], y, seeds=[0], network=s.network())
    with pytest.raises(ValueError, match="network must follow"):
        train(s, x, y, seeds=[0], network=object())


def test_option_records_equal_the_keywords():
    s = _setting()
    x, y = _data()
    loose = train(s, x, y, seeds=range(3), pair=(1, 4), record_every=2, tracked=x[:3],
                  checkpoint_steps=(5,), chunk_size=2, progress=False)
    records = train(s, x, y, seeds=range(3),
                    recording=Recording(pair=(1, 4), record_every=2, tracked=x[:3],
                                        checkpoint_steps=(5,)),
                    placement=Placement(chunk_size=2, progress=False))
    for a, b in zip(jax.tree.leaves(loose), jax.tree.leaves(records)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="record_every was given both"):
        train(s, x, y, seeds=[0], record_every=2, recording=Recording(record_every=2))
    with pytest.raises(ValueError, match="placement must be None or an rsd.training.Placement"):
        train(s, x, y, seeds=[0], placement={"chunk_size": 2})


def test_the_trainer_takes_a_network():
    s = _setting()
    x, y = _data()
    a, b = training.Trainer(s, x, y), training.Trainer(s, x, y, network=s.network())
    sa, ra = a.step(a.init(3))
    sb, rb = b.step(b.init(3))
    for u, v in zip(jax.tree.leaves((sa.params, ra)), jax.tree.leaves((sb.params, rb))):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
