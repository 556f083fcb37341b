"""The training engine: batching never changes a seed, records are the quantities, failures stay local."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rsd.quantities as q
from rsd.data import two_points
from rsd.networks import make_network
from rsd.training import Run, Setting, Status, train
from rsd.training import _engine

from .helpers import assert_close

SMALL = Setting(width=16, depth=3, gain=1.0, lr=0.05, steps=40)
KEYS = ("h", "y", "w", "loss", "e0", "status", "diverged_step")


def _data(setting=SMALL):
    return two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim, out_dim=setting.out_dim)


def _network(setting, x, y):
    return make_network(setting.architecture, activation=setting.activation, width=setting.width,
                        depth=setting.depth, gain=setting.gain, in_dim=x.shape[1],
                        out_dim=y.shape[1], dropout_rate=setting.dropout_rate)


def _select(run, rows):
    return {k: np.asarray(getattr(run, k))[rows] for k in KEYS}


def _random_layers(network, seed, num_seeds=None, scale=1.0):
    """Xavier-normal (W, b) per layer drawn on the host (no compile), optionally per seed."""
    rng = np.random.default_rng(seed)
    lead = () if num_seeds is None else (num_seeds,)
    layers = []
    for w_shape, b_shape in network.layer_shapes:
        receptive = int(np.prod(w_shape[:-2]))
        std = network.gain * np.sqrt(2.0 / (receptive * (w_shape[-2] + w_shape[-1])))
        layers.append((scale * std * rng.standard_normal(lead + w_shape), np.zeros(lead + b_shape)))
    return layers


def test_run_shapes_and_pair_constants():
    x, y = _data()
    run = train(SMALL, x, y, seeds=[0, 1, 2])
    assert isinstance(run, Run)
    assert run.h.shape == (3, SMALL.steps, SMALL.depth) and run.layers == (0, 1, 2)
    for k in ("y", "w", "loss"):
        assert getattr(run, k).shape == (3, SMALL.steps)
    assert run.e0.shape == run.status.shape == run.diverged_step.shape == (3,)
    assert np.all(np.asarray(run.status) == Status.OK)
    assert np.all(np.asarray(run.diverged_step) == SMALL.steps)
    assert_close(run.dx2, 1.0, rtol=1e-6)
    assert_close(run.dy2, 0.5, rtol=1e-6)
    assert run.hidden_matrices is None and run.matrix_steps is None and run.params is None
    # Leaves are arrays, so a Run goes through jax.tree utilities like any pytree.
    assert all(isinstance(a, jax.Array) for a in jax.tree.leaves(run))


def test_vmap_over_seeds_equals_each_seed_alone():
    x, y = _data()
    seeds = [0, 1, 2, 3]
    together = train(SMALL, x, y, seeds=seeds)
    for row, seed in enumerate(seeds):
        alone = train(SMALL, x, y, seeds=[seed])
        assert_close(_select(together, [row]), _select(alone, [0]), rtol=1e-6, atol=1e-7,
                     err_msg=f"seed {seed}")


def test_seed_independent_of_chunking_and_neighbours():
    x, y = _data()
    a = train(SMALL, x, y, seeds=[5, 7, 9], chunk_size=2)  # 9 sits in a padded chunk
    b = train(SMALL, x, y, seeds=[1, 9, 3, 8], chunk_size=4)
    c = train(SMALL, x, y, seeds=[9, 5], chunk_size=1)
    assert_close(_select(a, [2]), _select(b, [1]), rtol=1e-6, atol=1e-7)
    assert_close(_select(a, [2]), _select(c, [0]), rtol=1e-6, atol=1e-7)
    assert_close(_select(a, [0]), _select(c, [1]), rtol=1e-6, atol=1e-7)
    # different seeds really are different networks
    assert not np.allclose(np.asarray(a.h[0]), np.asarray(a.h[1]))


def test_minibatches_and_dropout_are_seeded_per_seed():
    """Shuffled minibatches and dropout masks come from the seed's key alone."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    s = Setting(architecture="dropout", width=12, depth=2, lr=0.05, steps=12, batch_size=4,
                in_dim=3, out_dim=2, dx2=None, dy2=None)
    init = _random_layers(_network(s, x, y), 1)  # shared: the randomness under test is the rest
    a = train(s, x, y, seeds=[3, 4], pair=(2, 7), init_params=init)
    b = train(s, x, y, seeds=[4, 9], pair=(2, 7), init_params=init)
    assert_close(_select(a, [1]), _select(b, [0]), rtol=1e-6, atol=1e-7)
    assert not np.allclose(np.asarray(a.loss[0]), np.asarray(b.loss[1]))
    assert np.all(np.isfinite(np.asarray(a.loss)))
    assert_close(a.dx2, q.squared_distance(x[2], x[7]), rtol=1e-6)


def test_minibatch_as_large_as_the_data_is_full_batch():
    x, y = _data()
    full = train(SMALL, x, y, seeds=[2])
    batched = train(SMALL.replace(batch_size=2), x, y, seeds=[2])
    assert_close(_select(batched, [0]), _select(full, [0]), rtol=1e-6, atol=1e-7)


def test_diverging_seed_is_flagged_and_neighbours_unchanged():
    x, y = _data()
    net = _network(SMALL, x, y)
    layers = _random_layers(net, 3, num_seeds=3)
    # Seed 1 starts with weights 60× too large: its loss and updates overflow.
    blown = [(w * np.array([1.0, 60.0, 1.0])[:, None, None], b) for w, b in layers]
    run = train(SMALL, x, y, seeds=[10, 11, 12], init_params=blown)
    status = np.asarray(run.status)
    assert list(status) == [Status.OK, Status.DIVERGED, Status.OK]
    t = int(run.diverged_step[1])
    assert 0 <= t < SMALL.steps
    assert np.all(np.isfinite(np.asarray(run.loss[1, :t])))
    # Frozen before the failing update: from step t on, every record repeats step t's.
    for name in ("h", "y", "w", "loss"):
        frozen = np.asarray(getattr(run, name)[1, t:])
        np.testing.assert_array_equal(frozen, np.broadcast_to(frozen[:1], frozen.shape))
    neighbours = [(w[[0, 2]], b[[0, 2]]) for w, b in layers]
    ref = train(SMALL, x, y, seeds=[10, 12], init_params=neighbours)
    assert_close(_select(run, [0, 2]), _select(ref, [0, 1]), rtol=1e-6, atol=1e-7)


_COMPILES = {"active": False, "count": 0}


def _count_compiles(event, duration, **_):
    if _COMPILES["active"] and event == "/jax/core/compile/backend_compile_duration":
        _COMPILES["count"] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compiles)


def test_second_call_with_same_shapes_does_not_recompile():
    x, y = _data()
    setting = SMALL
    first = train(setting, x, y, seeds=[0, 1, 2], chunk_size=2)
    jax.block_until_ready(first.h)
    traces = _engine._TRACES
    y_other = jax.block_until_ready(2 * y)
    _COMPILES.update(active=True, count=0)
    try:
        # other seeds, another lr, other data of the same shape: same compiled program
        second = train(setting.replace(lr=0.01), x, y_other, seeds=[7, 8, 9], chunk_size=2)
        jax.block_until_ready(second.h)
    finally:
        _COMPILES["active"] = False
    assert _engine._TRACES == traces
    assert _COMPILES["count"] == 0
    # A new gain or new pair distances change the initialization, not the training program.
    third = train(setting.replace(gain=1.3, dx2=4.0, dy2=2.0), x, y, seeds=[7, 8, 9], chunk_size=2)
    jax.block_until_ready(third.h)
    assert _engine._TRACES == traces


ARCHITECTURES = ("mlp", "resnet", "cnn", "dropout")
ACTIVATIONS = ("none", "linear", "relu", "leaky_relu", "tanh", "elu", "silu")


def _lowers_the_loss(architecture, activation):
    x, y = _data()
    s = Setting(architecture=architecture, activation=activation,
                width=40 if architecture == "cnn" else 12, depth=2, gain=1.0, lr=0.05, steps=60)
    run = train(s, x, y, seeds=[0], init_params=_random_layers(_network(s, x, y), 0))
    loss = np.asarray(run.loss[0])
    assert run.status[0] == Status.OK, (architecture, activation)
    assert loss[-1] < 0.5 * loss[0], (architecture, activation, loss[0], loss[-1])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_lowers_the_loss(architecture):
    _lowers_the_loss(architecture, "leaky_relu")


@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if a != "leaky_relu"])
def test_every_activation_lowers_the_loss(activation):
    _lowers_the_loss("mlp", activation)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_architecture_with_every_activation_lowers_the_loss(architecture, activation):
    # 28 programs to compile (~1-3 s each on a shared 2-core CPU): the full product runs
    # with RSD_SLOW=1; by default each architecture and each activation run once above.
    _lowers_the_loss(architecture, activation)


def _direct_records(network, params, x, y, pair, layers):
    out, hid = network.apply(params, x)
    i, j = pair
    return dict(
        h=jnp.stack([q.representation_distance(hid[k][i], hid[k][j]) for k in layers]),
        y=q.output_distance(out[i], out[j]),
        w=q.alignment(out[i], out[j], y[i], y[j]),
        loss=q.half_mse(out, y),
    )


@pytest.mark.parametrize(
    "architecture,activation,optimizer,lr",
    [("resnet", "tanh", "sgd", 0.05), ("mlp", "leaky_relu", "adam", 0.01)],
)
def test_records_are_the_quantities_of_a_plain_optax_loop(x64, architecture, activation,
                                                          optimizer, lr):
    """Every step's h, y, w, loss equal rsd.quantities on a direct forward pass of the
    parameters of an independent, unbatched jax.grad + optax loop (float64)."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((5, 2)), rng.standard_normal((5, 3))
    s = Setting(architecture=architecture, activation=activation, width=10, depth=3,
                optimizer=optimizer, lr=lr, steps=30, in_dim=2, out_dim=3, dx2=None, dy2=None)
    pair, layers = (3, 1), (2, 0)
    net = _network(s, x, y)
    init = _random_layers(net, 7)
    run = train(s, x, y, seeds=[0], init_params=init, pair=pair, layers=layers)
    assert run.h.dtype == jnp.float64

    params = net.from_layers(init)
    out0, _ = net.apply(params, x)
    assert_close(run.e0[0], q.mean_output_error(out0[3], out0[1], y[3], y[1]), rtol=1e-12)
    opt = optax.sgd(lr) if optimizer == "sgd" else optax.adam(lr)
    state = opt.init(params)
    grad_fn = jax.jit(jax.grad(lambda p: q.half_mse(net.apply(p, x)[0], y)))
    records = jax.jit(lambda p: _direct_records(net, p, x, y, pair, layers))
    for t in range(s.steps):
        got = {name: getattr(run, name)[0, t] for name in ("h", "y", "w", "loss")}
        assert_close(got, records(params), rtol=1e-10, atol=1e-14, err_msg=f"step {t}")
        updates, state = opt.update(grad_fn(params), state, params)
        params = optax.apply_updates(params, updates)


def test_mse_quirk_doubles_the_sgd_step():
    x, y = _data()
    init = _random_layers(_network(SMALL, x, y), 8)
    a = train(SMALL.replace(loss="mse"), x, y, seeds=[0], init_params=init)
    b = train(SMALL.replace(lr=2 * SMALL.lr), x, y, seeds=[0], init_params=init)
    assert_close(_select(a, [0]), _select(b, [0]), rtol=1e-5, atol=1e-7)


def test_tracked_distance_matrices():
    x = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = jnp.array([[0.0], [1.0], [1.0], [0.0]])
    s = Setting(width=12, depth=2, lr=0.1, steps=20, in_dim=2, out_dim=1, dx2=None, dy2=None)
    tracked = jnp.concatenate([x, 0.5 * x])
    net = _network(s, x, y)
    run = train(s, x, y, seeds=[0, 1], tracked=tracked, matrix_steps=(0, 7, 20),
                matrix_layers=(1,), return_params=True,
                init_params=_random_layers(net, 2, num_seeds=2))
    assert [p["kernel"].shape for p in run.params] == [(2, 2, 12), (2, 12, 12), (2, 12, 1)]
    assert run.hidden_matrices.shape == (2, 3, 1, 8, 8)
    assert run.output_matrices.shape == (2, 3, 8, 8)
    assert list(np.asarray(run.matrix_steps)) == [0, 7, 20]
    # step 20 = after the last update
    final = jax.tree.map(lambda a: a[1], run.params)
    out, hid = net.apply(final, tracked)
    assert_close(run.hidden_matrices[1, 2, 0], q.pairwise_squared_distances(hid[1]),
                 rtol=1e-5, atol=1e-6)
    assert_close(run.output_matrices[1, 2], q.pairwise_squared_distances(out), rtol=1e-5,
                 atol=1e-6)
    # step 0 = the given initialization
    init1 = net.from_layers([(w[1], b[1]) for w, b in _random_layers(net, 2, num_seeds=2)])
    out, hid = net.apply(init1, tracked)
    assert_close(run.hidden_matrices[1, 0, 0], q.pairwise_squared_distances(hid[1]),
                 rtol=1e-5, atol=1e-6)
    # tracked points 0 and 1 are the recorded pair: at steps 0 and 7 the matrices hold
    # the recorded h (layer 1) and y of those steps
    for m, t in ((0, 0), (1, 7)):
        assert_close(run.output_matrices[:, m, 0, 1], run.y[:, t], rtol=1e-5, atol=1e-7)
        assert_close(run.hidden_matrices[:, m, 0, 0, 1], run.h[:, t, 1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(seeds=[]), "seeds"),
        (dict(seeds=[1.5]), "seeds"),
        (dict(seeds=[-1]), "seeds"),
        (dict(seeds=[0], pair=(0, 0)), "pair"),
        (dict(seeds=[0], pair=(0, 2)), "pair"),
        (dict(seeds=[0], layers=(3,)), "layers"),
        (dict(seeds=[0], chunk_size=0), "chunk_size"),
        (dict(seeds=[0], matrix_steps=(0, 5)), "tracked"),
        (dict(seeds=[0], tracked=np.zeros((3, 1)), matrix_steps=(5, 2)), "matrix_steps"),
        (dict(seeds=[0], tracked=np.zeros((3, 1)), matrix_steps=(0, 41)), "matrix_steps"),
        (dict(seeds=[0], tracked=np.zeros((3, 2))), "tracked"),
        (dict(seeds=[0], init_params=[(np.zeros((1, 16)), np.zeros(16))]), "init_params"),
        (dict(seeds=[0, 1], init_params="per_seed_wrong"), "init_params"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    x, y = _data()
    if kwargs.get("init_params") == "per_seed_wrong":
        layers = _random_layers(_network(SMALL, x, y), 0, num_seeds=3)
        kwargs = dict(kwargs, init_params=layers)
    with pytest.raises(ValueError, match=match):
        train(SMALL, x, y, **kwargs)


def test_dropout_masks_are_checked():
    x, y = _data()
    with pytest.raises(ValueError, match="dropout_masks need the 'dropout' architecture"):
        train(SMALL, x, y, seeds=[0], dropout_masks=(np.ones((40, 2, 1), bool),))
    s = SMALL.replace(architecture="dropout")
    with pytest.raises(ValueError, match=r"dropout_masks must be 4 boolean arrays"):
        train(s, x, y, seeds=[0], dropout_masks=(np.ones((40, 2, 1), bool),))


def test_bad_data_raise():
    x, y = _data()
    with pytest.raises(ValueError, match="in_dim"):
        train(SMALL, np.zeros((2, 3)), y, seeds=[0])
    with pytest.raises(ValueError, match="same n"):
        train(SMALL, x, np.zeros((3, 1)), seeds=[0])
    with pytest.raises(ValueError, match="finite"):
        train(SMALL, x.at[0, 0].set(np.nan), y, seeds=[0])
    with pytest.raises(ValueError, match="Setting"):
        train({"lr": 0.1}, x, y, seeds=[0])
