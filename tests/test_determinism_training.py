"""The determinism promise of ``train`` (issue 12, item 2).

* The same call gives bitwise identical results.
* Across chunk sizes, seed batchings and ``unroll`` a seed's records agree to float32
  round-off: each compiled program may round its sums differently (XLA chooses
  fusions, FMAs and convolution/matmul algorithms per shape), so single operations
  differ by about an ulp.

What "an ulp" means for the records: h, y and w are squared norms of *differences*
(φ(x_j) − φ(x_i), ŷ_j − ŷ_i) of vectors that are often nearly equal, so an error of one
ulp of the operands is many ulps of the result (measured: up to ~460 ulps relative in
y of the CNN when y ≈ 1e-7 while ŷ ≈ 1). The round-off model used here is one
error δ of a few ulps of the operand norm S in the difference vector d:
|δ(‖d‖²)| ≤ 2‖d‖·δ + δ², δ = K·eps·S, with S the largest norm of the operands (a
hidden representation or the targets) at the start or the end of the run. The
measured K over the first 20 steps is ≤ 2 for all four settings below; the tests
allow K = 4.
"""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsd.data import two_points, xor
from rsd.networks import make_network
from rsd.training import Setting, train

EPS = float(np.finfo(np.float32).eps)
K = 4.0  # allowed round-off, in ulps of the operands (measured ≤ 2)
SEEDS = [0, 1, 2]
STEPS = 20

SETTINGS = {
    "mlp": (Setting(width=16, depth=3, lr=0.05, steps=STEPS), lambda: two_points(1.0, 0.5)),
    "resnet_adam": (Setting(architecture="resnet", width=16, depth=4, optimizer="adam",
                            lr=0.01, steps=STEPS), lambda: two_points(1.0, 0.5)),
    "cnn": (Setting(architecture="cnn", width=40, depth=2, lr=0.05, steps=STEPS),
            lambda: two_points(1.0, 0.5)),
    "xor_width_32": (Setting(width=32, depth=2, activation="relu", loss="mse", lr=0.05,
                             steps=STEPS, in_dim=2, out_dim=1, dx2=None, dy2=None), xor),
}


def _network(setting, x, y):
    return make_network(setting.architecture, activation=setting.activation,
                        width=setting.width, depth=setting.depth, gain=setting.gain,
                        in_dim=x.shape[1], out_dim=y.shape[1])


def _init(network, num_seeds, seed=11):
    """Xavier-normal float32 weights per seed, drawn on the host."""
    rng = np.random.default_rng(seed)
    layers = []
    for w_shape, b_shape in network.layer_shapes:
        std = np.sqrt(2.0 / (int(np.prod(w_shape[:-2])) * (w_shape[-2] + w_shape[-1])))
        layers.append((np.float32(std * rng.standard_normal((num_seeds,) + w_shape)),
                       np.zeros((num_seeds,) + b_shape, np.float32)))
    return layers


def _hidden_norms(network, params, x):
    """[K] largest ‖φ_k(x_n)‖ over the data points n."""
    _, hid = network.apply(params, x)
    return np.array([float(jnp.max(jnp.linalg.norm(h, axis=-1))) for h in hid])


def _assert_within_roundoff(got, ref, x, y, network, init, name):
    """Every record of ``got`` within K ulps of the operands of ``ref`` (see the module doc)."""
    eps_s = K * EPS * float(np.max(np.linalg.norm(np.asarray(y), axis=-1)))
    i, j = ref.pair
    dy = float(np.linalg.norm(np.asarray(y)[j] - np.asarray(y)[i]))
    n = x.shape[0]
    y_ref = np.asarray(ref.y, np.float64)
    d_out = np.sqrt(y_ref)
    bounds = {
        "y": eps_s * (2 * d_out + eps_s),
        "w": eps_s * (2 * d_out + dy + eps_s),
        # δL = mean((ŷ − y*)·δŷ) ≤ sqrt(2·n·L)·δ
        "loss": eps_s * (np.sqrt(2 * n * np.asarray(ref.loss, np.float64)) + eps_s),
    }
    h_ref = np.asarray(ref.h, np.float64)
    scales = []
    for s in range(len(SEEDS)):
        start = network.from_layers([(w[s], b[s]) for w, b in init])
        end = jax.tree.map(lambda a: a[s], ref.params)
        scales.append(np.maximum(_hidden_norms(network, start, x), _hidden_norms(network, end, x)))
    eps_h = K * EPS * np.maximum(np.array(scales), np.sqrt(h_ref.max(axis=1)))[:, None, :]
    bounds["h"] = eps_h * (2 * np.sqrt(h_ref) + eps_h)
    for q, bound in bounds.items():
        err = np.abs(np.asarray(getattr(got, q), np.float64) - np.asarray(getattr(ref, q),
                                                                          np.float64))
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        assert np.all(err <= bound), (
            f"{name}: {q} differs by {err[worst]:.3g} at {worst}, more than round-off "
            f"({bound[worst]:.3g})")


@pytest.mark.parametrize("setting_name", list(SETTINGS))
def test_same_call_is_bitwise_and_batchings_agree_to_roundoff(setting_name):
    setting, data = SETTINGS[setting_name]
    x, y = data()
    network = _network(setting, x, y)
    init = _init(network, len(SEEDS))
    common = dict(init_params=init, return_params=True, progress=False)
    ref = train(setting, x, y, seeds=SEEDS, chunk_size=4, **common)
    again = train(setting, x, y, seeds=SEEDS, chunk_size=4, **common)
    for leaf_ref, leaf_again in zip(jax.tree.leaves(ref), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(leaf_again), np.asarray(leaf_ref))
    assert np.all(np.asarray(ref.ok))

    variants = {
        "one seed per chunk": dict(chunk_size=1),
        "chunks of 2, unroll 2": dict(chunk_size=2, unroll=2),
    }
    for label, kwargs in variants.items():
        got = train(setting, x, y, seeds=SEEDS, **common, **kwargs)
        _assert_within_roundoff(got, ref, x, y, network, init, f"{setting_name}, {label}")
    # Other neighbours in the same program: seeds 2, 0 with the weights they had above.
    order = [2, 0, 1]
    shuffled = [(w[order], b[order]) for w, b in init]
    got = train(setting, x, y, seeds=[SEEDS[k] for k in order], chunk_size=4,
                init_params=shuffled, progress=False)
    inverse = np.argsort(order)
    back = SimpleNamespace(**{q: np.asarray(getattr(got, q))[inverse] for q in ("h", "y", "w", "loss")})
    _assert_within_roundoff(back, ref, x, y, network, init, f"{setting_name}, reordered")


def test_roundoff_bound_catches_a_real_difference():
    """The tolerance is tight enough to see one changed learning rate in the 6th digit."""
    setting, data = SETTINGS["mlp"]
    x, y = data()
    network = _network(setting, x, y)
    init = _init(network, len(SEEDS))
    ref = train(setting, x, y, seeds=SEEDS, init_params=init, return_params=True)
    nudged = train(setting.replace(lr=setting.lr * (1 + 1e-5)), x, y, seeds=SEEDS,
                   init_params=init)
    with pytest.raises(AssertionError, match="more than round-off"):
        _assert_within_roundoff(nudged, ref, x, y, network, init, "nudged lr")
