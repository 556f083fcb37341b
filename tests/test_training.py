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
    assert run.stop_step.dtype == jnp.int32
    np.testing.assert_array_equal(run.stop_step, [SMALL.steps] * 3)  # no stop_loss: never
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


# ------------------------------------------------------------------ early stopping


def _first_below(loss, threshold):
    """Index of the first entry of ``loss`` below ``threshold`` (len(loss) if none)."""
    below = np.flatnonzero(np.asarray(loss) < threshold)
    return int(below[0]) if below.size else len(loss)


def _threshold_at(loss, t):
    """A threshold first crossed at step t, far (in ulps) from every recorded value:
    the geometric mean of loss[t] and the smallest loss before t."""
    loss = np.asarray(loss, np.float64)
    assert loss[:t].min() > 1.01 * loss[t], "pick a step where the loss reaches a new minimum"
    return float(np.sqrt(loss[t] * loss[:t].min()))


def _assert_frozen_from(run, k, t, reference):
    """Records of seed k equal ``reference`` (its run without stop_loss) before step t
    and repeat the reference's step-t values from t on."""
    for name in ("h", "y", "w", "loss"):
        got, ref = np.asarray(getattr(run, name)[k]), np.asarray(reference[name])
        assert_close(got[:t + 1], ref[:t + 1], rtol=2e-6, atol=1e-9, err_msg=name)
        np.testing.assert_array_equal(got[t:], np.broadcast_to(got[t], got[t:].shape),
                                      err_msg=name)


def test_early_stop_at_the_first_step_below_the_threshold_and_neighbours_run_on():
    """(a) a seed stops at exactly the first step whose recorded loss is below stop_loss,
    found in its run without stop_loss (identical before), and freezes there: later
    records, tracked matrices and the returned parameters are those of that step;
    (b) another seed of the chunk that never gets there runs all steps, equal to its
    run without stop_loss."""
    x, y = _data()
    net = _network(SMALL, x, y)
    # seed 1 starts with smaller weights: slower, it never reaches the threshold
    init = [(w * np.array([1.0, 0.3])[:, None, None], b)
            for w, b in _random_layers(net, 5, num_seeds=2)]
    common = dict(seeds=[0, 1], init_params=init, tracked=x, matrix_steps=(0, 35, 40))
    full = train(SMALL, x, y, **common)
    loss = np.asarray(full.loss)
    t = 30
    threshold = _threshold_at(loss[0], t)
    assert loss[1].min() > threshold * 1.01
    stop = train(SMALL, x, y, stop_loss=threshold, return_params=True, **common)

    assert _first_below(loss[0], threshold) == t
    np.testing.assert_array_equal(stop.stop_step, [t, SMALL.steps])
    np.testing.assert_array_equal(stop.status, [Status.OK, Status.OK])
    _assert_frozen_from(stop, 0, t, {k: getattr(full, k)[0] for k in ("h", "y", "w", "loss")})
    assert_close(stop.e0, full.e0, rtol=1e-6)
    # the frozen parameters are step t's: their loss is the recorded loss of step t
    final = jax.tree.map(lambda a: a[0], stop.params)
    assert_close(q.half_mse(net.apply(final, x)[0], y), full.loss[0, t], rtol=2e-6)
    # tracked = the data and pair (0, 1): the output matrix at a step >= t holds y of step t
    assert_close(stop.output_matrices[0, 1:, 0, 1], np.full(2, full.y[0, t]), rtol=2e-6)
    assert_close(stop.output_matrices[:, 0], full.output_matrices[:, 0], rtol=2e-6, atol=1e-9)
    # (b) the neighbour is untouched, tracked matrices included
    assert_close(_select(stop, [1]), _select(full, [1]), rtol=2e-6, atol=1e-9)
    assert_close(stop.output_matrices[1], full.output_matrices[1], rtol=2e-6, atol=1e-9)


def test_early_stop_steps_differ_per_data_set():
    """(c) per-seed data sets of different difficulty stop at different steps, each at the
    first step where its own run without stop_loss fell below the threshold; a set that
    never gets there runs to the end unchanged."""
    dy2s = (0.05, 0.5, 1.0, 4.0)
    xs, ys = zip(*(two_points(1.0, dy2) for dy2 in dy2s))
    x, y = jnp.stack(xs), jnp.stack(ys)
    init = _random_layers(_network(SMALL, xs[0], ys[0]), 6)
    full = train(SMALL, x, y, seeds=[0, 0, 0, 0], init_params=init)
    threshold = 0.044
    expected = [_first_below(row, threshold) for row in np.asarray(full.loss)]
    # the threshold sits > 1% away from every recorded loss, so round-off can't move a crossing
    assert np.min(np.abs(np.log(np.asarray(full.loss, np.float64) / threshold))) > 0.01
    assert len(set(expected)) >= 3 and SMALL.steps in expected, expected
    stop = train(SMALL, x, y, seeds=[0, 0, 0, 0], init_params=init, stop_loss=threshold)
    np.testing.assert_array_equal(stop.stop_step, expected)
    for k, t in enumerate(expected):
        if t < SMALL.steps:
            _assert_frozen_from(stop, k, t, {n: getattr(full, n)[k] for n in ("h", "y", "w", "loss")})
        else:
            assert_close(_select(stop, [k]), _select(full, [k]), rtol=2e-6, atol=1e-9)


def test_early_stop_of_every_seed_ends_the_run():
    """(d) when every seed stops early the run ends (here at most one 128-step block
    past the last stop of 2,000 steps) with every record after the stop frozen."""
    x, y = _data()
    s = SMALL.replace(steps=2000)
    run = train(s, x, y, seeds=[0, 1, 2], stop_loss=0.05)
    stop = np.asarray(run.stop_step)
    assert np.all(stop < 200), stop
    loss = np.asarray(run.loss)
    for k, t in enumerate(stop):
        assert loss[k, t] < 0.05 and np.all(loss[k, :t] >= 0.05)
        np.testing.assert_array_equal(loss[k, t:], loss[k, t])


def test_early_stop_and_divergence_in_one_chunk():
    """A seed that diverges is frozen at its divergence step, not counted as stopped."""
    x, y = _data()
    layers = _random_layers(_network(SMALL, x, y), 3, num_seeds=2)
    blown = [(w * np.array([1.0, 60.0])[:, None, None], b) for w, b in layers]
    full = train(SMALL, x, y, seeds=[10, 11], init_params=blown)
    stop = train(SMALL, x, y, seeds=[10, 11], init_params=blown, stop_loss=1e-12)
    assert list(np.asarray(stop.status)) == [Status.OK, Status.DIVERGED]
    np.testing.assert_array_equal(stop.stop_step, [SMALL.steps] * 2)
    np.testing.assert_array_equal(stop.diverged_step, full.diverged_step)
    assert_close(_select(stop, [0, 1]), _select(full, [0, 1]), rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize("stop_loss", [0.0, -1e-4, float("nan"), float("inf"), "1e-4", True])
def test_bad_stop_loss_raise(stop_loss):
    x, y = _data()
    with pytest.raises(ValueError, match="stop_loss"):
        train(SMALL, x, y, seeds=[0], stop_loss=stop_loss)


# ------------------------------------------- host checks of training, network and data (issue 12)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(pair=(0.7, 1.2)), "pair must be two integer point indices"),
        (dict(pair=(0, True)), "pair must be two integer point indices"),
        (dict(layers=(True,)), "layers must be a non-empty sequence of hidden-layer indices"),
        (dict(layers=1.0), "layers must be"),
        (dict(tracked=np.zeros((3, 1)), matrix_layers=(False,)), "matrix_layers must be"),
        (dict(root_key=jax.random.split(jax.random.key(0), 2)), "root_key must be one JAX PRNG key"),
        (dict(root_key="key"), "root_key"),
        (dict(dropout_masks=3), "dropout_masks"),
    ],
)
def test_non_integer_indices_and_wrong_types_raise(kwargs, match):
    x, y = _data()
    s = SMALL.replace(architecture="dropout") if "dropout_masks" in kwargs else SMALL
    with pytest.raises(ValueError, match=match):
        train(s, x, y, seeds=[0], **kwargs)


def test_setting_replace_with_an_unknown_field_names_it():
    with pytest.raises(ValueError, match="Setting has no field 'foo'"):
        SMALL.replace(foo=1)
    with pytest.raises(ValueError, match="Setting.width"):
        SMALL.replace(width="16")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_propagate_nan_like_pytorch(name):
    from rsd.networks import activation

    phi = activation(name)
    out = np.asarray(phi(jnp.array([np.nan, 1.5, -1.5], jnp.float32)))
    assert np.isnan(out[0]), f"{name}(NaN) = {out[0]}"
    assert np.all(np.isfinite(out[1:]))


@pytest.mark.parametrize(
    "name,at_zero,left,right",
    # PyTorch: relu'(0) = 0, leaky_relu'(0) = 0.01 (only x > 0 counts as positive);
    # elu and tanh are smooth with slope 1 at 0, silu'(0) = σ(0) = 1/2.
    [("relu", 0.0, 0.0, 1.0), ("leaky_relu", 0.01, 0.01, 1.0), ("elu", 1.0, np.exp(-0.5), 1.0),
     ("tanh", 1.0, 1 - np.tanh(-0.5) ** 2, 1 - np.tanh(0.5) ** 2), ("silu", 0.5, None, None)],
)
def test_activation_derivatives_at_zero_follow_pytorch(name, at_zero, left, right):
    from rsd.networks import activation

    grad = jax.grad(activation(name))
    assert float(grad(jnp.float32(0.0))) == pytest.approx(at_zero, abs=1e-7)
    if left is not None:
        assert float(grad(jnp.float32(-0.5))) == pytest.approx(left, rel=1e-6)
        assert float(grad(jnp.float32(0.5))) == pytest.approx(right, rel=1e-6)
    # relu and -inf / +inf as PyTorch: 0 and inf
    if name == "relu":
        np.testing.assert_array_equal(activation(name)(jnp.array([-np.inf, np.inf])), [0, np.inf])


def test_relu_network_propagates_a_nan_weight():
    """A NaN weight makes its unit's pre-activation NaN for every input; relu must pass it
    on (as PyTorch does) so the output, and the divergence check, see it — not map it to 0."""
    x, y = _data()
    net = _network(SMALL.replace(activation="relu"), x, y)
    layers = _random_layers(net, 4)
    w0 = layers[0][0].copy()
    w0[0, 0] = np.nan
    out, hid = net.apply(net.from_layers([(w0, layers[0][1])] + layers[1:]), x)
    assert np.all(np.isnan(np.asarray(hid[0])[:, 0]))
    assert np.all(np.isnan(np.asarray(out)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(dx2=1e80, dy2=0.5), "dx2 is too large for float32"),
        (dict(dx2=1.0, dy2=1e80), "dy2 is too large for float32"),
        (dict(dx2=1e77, dy2=0.5), "dx2 is too large"),  # points finite, dx2 itself overflows
        (dict(dx2=1.0, dy2=0.5, dtype=jnp.int32), "dtype must be a floating-point dtype"),
        (dict(dx2=1.0, dy2=0.5, dtype="no such dtype"), "dtype must be a floating-point"),
        (dict(dx2="1.0", dy2=0.5), "dx2 must be a real number"),
        (dict(dx2=1.0, dy2=[0.5, 1.0]), "dy2 must be a real number"),
    ],
)
def test_two_points_rejects_overflow_and_integer_dtypes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        two_points(**kwargs)


def test_idx_header_too_large_for_int64_is_reported_exactly(tmp_path):
    import struct

    from rsd.data import read_idx

    path = tmp_path / "huge-idx4-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 4]) + struct.pack(">4I", *[2**32 - 1] * 4) + bytes(16))
    # (2^32 − 1)^4 bytes: more than int64 holds (it used to wrap to a negative size)
    with pytest.raises(ValueError, match=rf"truncated: .* needs {(2**32 - 1) ** 4} data bytes"):
        read_idx(path)
    with pytest.raises(ValueError, match="path must be a file-system path"):
        read_idx(5)


def test_mnist_directory_without_images_raises(tmp_path):
    from rsd.data import mnist, write_idx

    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((0,), np.uint8))
    with pytest.raises(ValueError, match="holds 0 images"):
        mnist(tmp_path)
    with pytest.raises(ValueError, match="directory must be a file-system path"):
        mnist(123)


def test_context_blobs_check_key_and_sigma_and_survive_a_tiny_sigma():
    from rsd.data import context_blobs

    with pytest.raises(ValueError, match="key must be one JAX PRNG key"):
        context_blobs(n_centers=2, key=5)
    with pytest.raises(ValueError, match="key must be one JAX PRNG key"):
        context_blobs(n_centers=2, key=jax.random.split(jax.random.key(0), 3))
    with pytest.raises(ValueError, match="sigma must be a real number"):
        context_blobs(n_centers=2, sigma="wide")
    # sigma → 0: each normalised blob tends to a one-hot on the pixel nearest its centre
    # (exp underflow used to give 0/0 = NaN)
    key = jax.random.key(3)
    x, y = context_blobs(n_centers=3, n_pixels=5, sigma=1e-30, key=key)
    mu = np.asarray(jax.random.uniform(key, (9, 2), jnp.float32, -1.0, 1.0), np.float64)
    axis = np.linspace(-1.0, 1.0, 5)
    nearest = 5 * np.argmin(np.abs(axis - mu[:, 1:2]), 1) + np.argmin(np.abs(axis - mu[:, 0:1]), 1)
    np.testing.assert_array_equal(np.asarray(x)[:9, :25], np.eye(25)[nearest])


def test_seed_with_overflowing_records_is_diverged_not_ok():
    """Finite activations whose squared distance overflows: the seed must not be OK."""
    s = Setting(architecture="mlp", activation="relu", width=4, depth=1, steps=3, in_dim=None,
                out_dim=None)
    x, y = np.array([[0.0], [1.0]]), np.zeros((2, 1))
    init = [(np.full((1, 4), 1e20), np.zeros(4)), (np.zeros((4, 1)), np.zeros(1))]
    for kwargs in ({}, {"stop_loss": 1.0}):
        run = train(s, x, y, seeds=[0], init_params=init, **kwargs)
        assert int(run.status[0]) == Status.DIVERGED and int(run.diverged_step[0]) == 0


@pytest.mark.parametrize("kwargs, name", [
    ({"seeds": jax.random.key(0)}, "seeds"),
    ({"root_key": 2**70}, "root_key"),
    ({"x": np.zeros((2, 0))}, "x must have at least one column"),
    ({"y": np.zeros((2, 0))}, "y must have at least one column"),
])
def test_more_wrong_arguments_name_themselves(kwargs, name):
    s = Setting(width=4, depth=1, steps=3, in_dim=None, out_dim=None)
    args = {"x": np.array([[0.0], [1.0]]), "y": np.zeros((2, 1)), "seeds": [0], **kwargs}
    with pytest.raises(ValueError, match=name):
        train(s, args.pop("x"), args.pop("y"), **args)
