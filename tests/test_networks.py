"""rsd.networks: PyTorch conventions, hand-written forwards, init statistics, dropout, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rsd import quantities
from rsd.networks import ACTIVATIONS, ARCHITECTURES, activation, make_network, xavier_normal
from tests.helpers import assert_close

TWO_X = jnp.array([[-1.0], [0.0]])  # the paper's two points with dx2 = 1: the second input is exactly 0
TWO_Y = jnp.array([[0.6], [0.6 + np.sqrt(0.5)]])


def _net(architecture="mlp", **kw):
    settings = dict(activation="leaky_relu", width=16, depth=4, gain=1.0, in_dim=1, out_dim=1)
    if architecture == "cnn":
        settings.update(width=40, depth=2)
    settings.update(kw)
    return make_network(architecture, **settings)


# Compiling dominates these tests' runtime: one jitted init and apply with the network static
# (it is hashable), and parameters shared by networks that differ only in their activation.
_jit_init = jax.jit(lambda net, key: net.init(key), static_argnums=0)
_jit_apply = jax.jit(lambda net, params, x: net.apply(params, x), static_argnums=0)
_INIT_CACHE = {}


def _init(net, seed):
    """Parameters of ``net`` from seed ``seed`` (they depend on the shapes only, not the activation)."""
    family = "cnn" if net.architecture == "cnn" else "mlp"  # mlp, resnet and dropout share shapes
    shape_key = (family, net.width, net.depth, net.in_dim, net.out_dim, net.gain, seed)
    if shape_key not in _INIT_CACHE:
        _INIT_CACHE[shape_key] = _jit_init(_net(family, **_shape_settings(net)), jax.random.key(seed))
    return _INIT_CACHE[shape_key]


def _shape_settings(net):
    return dict(width=net.width, depth=net.depth, gain=net.gain, in_dim=net.in_dim, out_dim=net.out_dim)


def _seeds(net, seeds):
    """Parameters of several seeds stacked on a leading axis."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[_init(net, s) for s in seeds])


def _with_biases(params, seed, scale=0.3):
    """Init leaves biases at 0; hand-written forwards should also see nonzero ones."""
    rng = np.random.default_rng(seed)
    return tuple(
        {"kernel": p["kernel"], "bias": jnp.asarray(scale * rng.standard_normal(p["bias"].shape), jnp.float32)}
        for p in params
    )


# --- activations ---------------------------------------------------------------------------------

DERIVATIVE_AT_ZERO = {"none": 1.0, "linear": 1.0, "relu": 0.0, "leaky_relu": 0.01, "tanh": 1.0, "elu": 1.0, "silu": 0.5}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_derivative_at_exactly_zero_follows_pytorch(name):
    assert float(jax.grad(activation(name))(0.0)) == pytest.approx(DERIVATIVE_AT_ZERO[name], abs=1e-7)


def test_leaky_relu_is_pytorchs_not_jaxs():
    f = activation("leaky_relu")
    assert float(jax.grad(f)(0.0)) == pytest.approx(0.01)  # PyTorch: only x > 0 is positive
    assert float(jax.grad(jax.nn.leaky_relu)(0.0)) == 1.0  # JAX counts 0 as positive: the convention rsd avoids
    x = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    assert_close(f(x), jnp.where(x > 0, x, 0.01 * x))
    assert_close(jax.vmap(jax.grad(f))(x), jnp.array([0.01, 0.01, 0.01, 1.0, 1.0]))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_values_and_finite_gradients(name):
    x = jnp.array([-80.0, -1.5, -0.2, 0.3, 2.0, 80.0])
    xn = np.asarray(x, np.float64)
    expected = {
        "none": xn,
        "linear": xn,
        "relu": np.maximum(xn, 0),
        "leaky_relu": np.where(xn > 0, xn, 0.01 * xn),
        "tanh": np.tanh(xn),
        "elu": np.where(xn > 0, xn, np.expm1(np.minimum(xn, 0))),
        "silu": xn / (1 + np.exp(-xn)),
    }[name]
    f = activation(name)
    assert_close(f(x), expected.astype(np.float32), rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(jax.vmap(jax.grad(f))(x)))  # no NaN from an untaken branch


def test_unknown_activation_raises():
    with pytest.raises(ValueError, match="activation"):
        activation("gelu")


# --- initialisation ---------------------------------------------------------------------------------


def test_xavier_normal_std_dense_and_zero_biases():
    gain, width = 1.3, 400
    net = _net(width=width, depth=2, gain=gain)
    params = _init(net, 1)
    w = np.asarray(params[1]["kernel"])  # 160,000 weights: the sample std is within ~0.2% of the truth
    assert w.shape == (width, width)
    assert np.std(w) == pytest.approx(gain * np.sqrt(2.0 / (2 * width)), rel=0.02)
    assert abs(np.mean(w)) < 0.02 * np.std(w)
    w0 = np.asarray(params[0]["kernel"])  # fan_in 1, fan_out 400
    assert np.std(w0) == pytest.approx(gain * np.sqrt(2.0 / (1 + width)), rel=0.2)
    assert all(np.all(np.asarray(p["bias"]) == 0) for p in params)


def test_xavier_normal_std_conv_uses_pytorch_fans():
    gain, k = 0.7, 11
    # the initializer on a large conv kernel [k, in, out]: fans in·k and out·k (220,000 weights)
    w = np.asarray(jax.jit(lambda key: xavier_normal(gain)(key, (k, 100, 200)))(jax.random.key(2)))
    assert np.std(w) == pytest.approx(gain * np.sqrt(2.0 / (100 * k + 200 * k)), rel=0.02)
    # and the network's convs use it: 4,400 weights in the 20→20 conv, standard error of the std ~1.1%
    net = _net("cnn")  # gain 1
    params = _init(net, 2)
    for n, (cin, cout), rel in zip((1, 2, 3), ((1, 20), (20, 20), (20, 1)), (0.2, 0.06, 0.2)):
        w = np.asarray(params[n]["kernel"])
        assert w.shape == (k, cin, cout)
        assert np.std(w) == pytest.approx(np.sqrt(2.0 / (cin * k + cout * k)), rel=rel), n
    assert all(np.all(np.asarray(p["bias"]) == 0) for p in params)


def test_init_is_deterministic_given_key_and_differs_between_keys():
    net = _net()
    a, b, c = (_jit_init(net, jax.random.key(k)) for k in (3, 3, 4))
    assert_close(a, b, rtol=0)
    assert not np.allclose(a[1]["kernel"], c[1]["kernel"])


# --- forward passes against hand-written ones ------------------------------------------------------


def _numpy_dense_forward(params, x, act, skip=False):
    a, hiddens = np.asarray(x, np.float64), []
    for n, p in enumerate(params):
        z = a @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)
        if n == len(params) - 1:
            return z, hiddens
        a = act(z)
        if skip and n >= 2:
            a = a + hiddens[n - 2]
        hiddens.append(a)


def _np_leaky(z):
    return np.where(z > 0, z, 0.01 * z)


@pytest.mark.parametrize("architecture", ["mlp", "resnet", "dropout"])
def test_dense_architectures_match_handwritten_forward(architecture):
    net = _net(architecture, depth=4, in_dim=3, out_dim=2)
    params = _with_biases(_init(net, 5), 6)
    x = np.random.default_rng(7).standard_normal((6, 3)).astype(np.float32)
    out, hiddens = _jit_apply(net, params, x)
    ref_out, ref_hiddens = _numpy_dense_forward(params, x, _np_leaky, skip=architecture == "resnet")
    assert len(hiddens) == net.num_hidden == 4
    assert_close(out, ref_out.astype(np.float32), rtol=1e-5, atol=1e-6)
    for h, r in zip(hiddens, ref_hiddens):
        assert_close(h, r.astype(np.float32), rtol=1e-5, atol=1e-6)


def test_resnet_skip_connections_change_layers_two_and_up_only():
    mlp, res = _net("mlp"), _net("resnet")
    params = _with_biases(_init(mlp, 8), 9)
    _, h_mlp = _jit_apply(mlp, params, TWO_X)
    _, h_res = _jit_apply(res, params, TWO_X)
    assert_close(h_res[0], h_mlp[0], rtol=0)
    assert_close(h_res[1], h_mlp[1], rtol=0)
    # layer 2 is act(W2 a1 + b2) + a0 with the same a1, so its skip is exactly a0
    assert_close(h_res[2] - h_mlp[2], h_mlp[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(h_res[3], h_mlp[3])


def _numpy_conv1d_torch_layout(a, w, b):
    """out[n, o, t] = b[o] + Σ_{i,k} w[o, i, k]·a[n, i, t + k] (PyTorch's Conv1d, no padding)."""
    k = w.shape[-1]
    length = a.shape[-1] - k + 1
    windows = np.stack([a[:, :, t : t + k] for t in range(length)], axis=2)  # [n, i, t, k]
    return np.einsum("nitk,oik->not", windows, w) + b[None, :, None]


def test_cnn_shapes_and_handwritten_forward():
    net = _net("cnn", width=45, in_dim=3, out_dim=2)
    params = _with_biases(_init(net, 10), 11, scale=0.1)
    x = np.random.default_rng(12).standard_normal((4, 3)).astype(np.float32).astype(np.float64)
    out, hiddens = _jit_apply(net, params, jnp.asarray(x, jnp.float32))
    # 45 → convs of kernel 11 shorten by 10 each: 35, 25, 15
    assert net.num_hidden == 4 and net.num_layers == 5
    assert net.hidden_sizes == (45, 20 * 35, 20 * 25, 15)
    assert [h.shape for h in hiddens] == [(4, 45), (4, 700), (4, 500), (4, 15)]
    assert out.shape == (4, 2)
    layers = [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in net.to_torch(params)]
    assert [w.shape for w, _ in layers] == [(45, 3), (20, 1, 11), (20, 20, 11), (1, 20, 11), (2, 15)]
    a = _np_leaky(x @ layers[0][0].T + layers[0][1])
    ref = [a]
    a = a[:, None, :]
    for w, b in layers[1:-1]:
        a = _np_leaky(_numpy_conv1d_torch_layout(a, w, b))
        ref.append(a.reshape(len(x), -1))  # channel-major, like torch's .reshape(batch, -1)
    ref_out = a.reshape(len(x), -1) @ layers[-1][0].T + layers[-1][1]
    for h, r in zip(hiddens, ref):
        assert_close(h, r.astype(np.float32), rtol=1e-5, atol=1e-6)
    assert_close(out, ref_out.astype(np.float32), rtol=1e-5, atol=1e-6)


def test_cnn_matches_lax_conv_on_channel_major_flattening():
    net = _net("cnn")
    params = _with_biases(_init(net, 13), 14, scale=0.1)
    _, hiddens = _jit_apply(net, params, TWO_X)
    w_torch, b = net.to_torch(params)[1]
    a0 = hiddens[0][:, None, :]  # [batch, 1 channel, length]
    z = jax.lax.conv_general_dilated(a0, w_torch, (1,), "VALID", dimension_numbers=("NCH", "OIH", "NCH"))
    ref = activation("leaky_relu")(z + b[None, :, None])
    assert_close(hiddens[1], ref.reshape(2, -1), rtol=1e-5, atol=1e-6)


# --- dropout -----------------------------------------------------------------------------------------


def test_dropout_eval_is_deterministic_and_equals_the_mlp():
    drop, mlp = _net("dropout"), _net("mlp")
    params = _init(drop, 15)
    out_eval, h_eval = _jit_apply(drop, params, TWO_X)
    out_mlp, h_mlp = _jit_apply(mlp, params, TWO_X)
    assert_close(out_eval, out_mlp, rtol=0)
    assert_close(h_eval, h_mlp, rtol=0)
    out_again, _ = drop.apply(params, TWO_X, key=jax.random.key(99))  # eval ignores keys
    assert_close(out_again, out_eval, rtol=0)


def test_dropout_train_drops_fraction_p_and_rescales():
    p, batch = 0.1, 2048
    net = _net("dropout", dropout_rate=p)
    masks = jax.jit(net.dropout_masks, static_argnums=1)(jax.random.key(16), batch)
    assert [m.shape for m in masks] == [(batch, 1)] + [(batch, 16)] * 4
    dropped = 1 - np.mean(np.concatenate([np.ravel(m) for m in masks]))
    assert dropped == pytest.approx(p, abs=0.005)  # 133,120 draws: standard error 0.0008
    params = _with_biases(_init(net, 17), 18)
    x = np.random.default_rng(19).standard_normal((batch, 1)).astype(np.float32)
    train_apply = jax.jit(net.apply, static_argnames="train")
    out, hiddens = train_apply(params, x, train=True, masks=masks)
    # by hand: inverted dropout x·keep/(1−p) before every linear layer
    a, ref_h = np.asarray(x, np.float64), []
    for n, q in enumerate(params):
        a = a * np.asarray(masks[n]) / (1 - p)
        z = a @ np.asarray(q["kernel"], np.float64) + np.asarray(q["bias"], np.float64)
        if n == len(params) - 1:
            break
        a = _np_leaky(z)
        ref_h.append(a)
    assert_close(out, z.astype(np.float32), rtol=1e-5, atol=1e-6)
    assert_close(hiddens, tuple(r.astype(np.float32) for r in ref_h), rtol=1e-5, atol=1e-6)
    by_key, _ = train_apply(params, x, train=True, key=jax.random.key(16))
    assert_close(by_key, out, rtol=0)  # a key draws the same masks as dropout_masks(key)
    other, _ = train_apply(params, x, train=True, key=jax.random.key(17))
    assert not np.allclose(other, out)


def test_dropout_argument_errors():
    drop, mlp = _net("dropout"), _net("mlp")
    params = _init(drop, 0)
    with pytest.raises(ValueError, match="key"):
        drop.apply(params, TWO_X, train=True)
    with pytest.raises(ValueError, match="masks"):
        mlp.apply(params, TWO_X, train=True, masks=drop.dropout_masks(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="masks"):
        drop.apply(params, TWO_X, masks=drop.dropout_masks(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="x must have shape"):
        mlp.apply(params, jnp.zeros((2, 3)))


# --- every architecture × activation learns --------------------------------------------------------


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_activation_runs_and_one_sgd_step_lowers_the_loss(architecture):
    # one compile per architecture; depth 3 is the shallowest ResNet with a skip connection
    depth = 3 if architecture == "resnet" else 1
    # "none" and "linear" name the same function, so one of them covers both
    assert activation("none") is activation("linear")
    names = [n for n in ACTIVATIONS if n != "none"]
    nets = {name: _net(architecture, activation=name, depth=depth) for name in names}
    params = _init(nets["relu"], 21)
    sgd = optax.sgd(1e-3)

    def step(net, p):
        def loss(q):  # eval mode: the deterministic objective a small step must lower
            out, hiddens = net.apply(q, TWO_X)
            return quantities.half_mse(out, TWO_Y), (out, hiddens)

        (value, (out, hiddens)), grads = jax.value_and_grad(loss, has_aux=True)(p)
        updates, _ = sgd.update(grads, sgd.init(p))
        return out, hiddens, value, loss(optax.apply_updates(p, updates))[0]

    results = jax.jit(lambda p: {name: step(net, p) for name, net in nets.items()})(params)
    for name, (out, hiddens, before, after) in results.items():
        net = nets[name]
        assert out.shape == (2, 1) and len(hiddens) == net.num_hidden, name
        assert all(h.shape == (2, s) for h, s in zip(hiddens, net.hidden_sizes)), name
        assert np.isfinite(before) and after < before, name


def test_dropout_train_mode_gradients_are_finite():
    net = _net("dropout")
    params = _init(net, 21)

    def loss(p):
        return quantities.half_mse(net.apply(p, TWO_X, train=True, key=jax.random.key(1))[0], TWO_Y)

    g = jax.jit(jax.grad(loss))(params)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(g))
    assert any(np.any(leaf != 0) for leaf in jax.tree_util.tree_leaves(g))


# --- weights in and out, vmap -------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_layers_round_trip_with_a_seed_axis(architecture):
    net = _net(architecture)
    params = _seeds(net, (0, 1, 2))
    assert_close(net.from_layers(net.to_layers(params)), params, rtol=0)
    torch_layers = net.to_torch(params)
    assert_close(net.from_torch(torch_layers), params, rtol=0)
    w0, _ = torch_layers[0]
    assert w0.shape == (3, net.width, 1)  # PyTorch's Linear weight is [out, in]
    if architecture == "cnn":
        assert torch_layers[1][0].shape == (3, 20, 1, 11)  # Conv1d weight [out_ch, in_ch, k]
    # one seed's PyTorch layers give that seed's params
    single = net.from_torch([(w[1], b[1]) for w, b in torch_layers])
    assert_close(single, _init(net, 1), rtol=0)


def test_from_layers_rejects_bad_shapes():
    net = _net()
    layers = net.to_layers(_init(net, 0))
    with pytest.raises(ValueError, match="layers must hold"):
        net.from_layers(layers[:-1])
    bad = list(layers)
    bad[1] = (jnp.zeros((16, 15)), bad[1][1])
    with pytest.raises(ValueError, match=r"layers\[1\] W"):
        net.from_layers(bad)
    bad = list(layers)
    bad[2] = (bad[2][0][None], bad[2][1][None])
    with pytest.raises(ValueError, match="leading axes"):
        net.from_layers(bad)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_vmap_over_seeds_equals_a_loop(architecture):
    net = _net(architecture)
    params = _seeds(net, (0, 1, 2))
    batched = jax.jit(jax.vmap(lambda p: net.apply(p, TWO_X)))(params)
    for i in range(3):
        single = _jit_apply(net, _init(net, i), TWO_X)
        assert_close(jax.tree_util.tree_map(lambda a: a[i], batched), single, rtol=1e-6, atol=1e-7)


def test_jitted_apply_does_not_recompile_for_new_params():
    net = _net()
    f = jax.jit(net.apply)
    params = _init(net, 0)
    f(params, TWO_X)
    f(jax.tree_util.tree_map(lambda a: a + 1.0, params), TWO_X)
    assert f._cache_size() == 1


# --- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("architecture", dict(architecture="transformer")),
        ("activation", dict(activation="gelu")),
        ("width", dict(width=0)),
        ("width", dict(width=2.5)),
        ("depth", dict(depth=0)),
        ("gain", dict(gain=-1.0)),
        ("gain", dict(gain=float("nan"))),
        ("in_dim", dict(in_dim=0)),
        ("out_dim", dict(out_dim=-3)),
        ("dropout_rate", dict(dropout_rate=1.0)),
        ("precision", dict(precision="bf16")),
        ("width", dict(architecture="cnn", width=30, depth=2)),
    ],
)
def test_bad_settings_raise_value_error_naming_the_field(field, kwargs):
    settings = dict(architecture="mlp", activation="relu", width=8, depth=2, gain=1.0, in_dim=1, out_dim=1)
    settings.update(kwargs)
    with pytest.raises(ValueError, match=field):
        make_network(settings.pop("architecture"), **settings)


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 8, 9])
def test_dense_layer_derivatives_equal_a_plain_dot(rows, x64):
    """The fused-update dense layer has the derivatives of x·W + b, in both modes."""
    from rsd.networks._layers import dense

    k1, k2, k3, k4 = jax.random.split(jax.random.key(rows), 4)
    x = jax.random.normal(k1, (rows, 5))
    kernel = jax.random.normal(k2, (5, 4))
    bias = jax.random.normal(k3, (4,))
    cot = jax.random.normal(k4, (rows, 4))
    plain = lambda x, k, b: x @ k + b
    np.testing.assert_allclose(dense(x, kernel, bias), plain(x, kernel, bias), rtol=1e-12, atol=1e-12)
    # reverse mode: the kernel gradient Σ_b x_b ⊗ δ_b and the input gradient δ·Wᵀ
    ours = jax.vjp(lambda *a: dense(*a), x, kernel, bias)[1](cot)
    ref = jax.vjp(plain, x, kernel, bias)[1](cot)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # forward mode agrees with reverse mode: <cot, J t> = <Jᵀ cot, t>
    tangents = (jax.random.normal(k1, x.shape), jax.random.normal(k2, kernel.shape), jax.random.normal(k3, bias.shape))
    jt = jax.jvp(lambda *a: dense(*a), (x, kernel, bias), tangents)[1]
    lhs = jnp.sum(cot * jt)
    rhs = sum(jnp.sum(g * t) for g, t in zip(ours, tangents))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-12)


# --- argument checks of make_network, init and apply (DESIGN.md §5) ------------------------------


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("architecture", dict(architecture=np.array(["mlp", "cnn"]))),  # was numpy's "truth value" error
        ("activation", dict(activation=np.array(["relu", "tanh"]))),
        ("precision", dict(precision=np.array(["high", "highest"]))),
        ("width", dict(width="8")),
        ("depth", dict(depth=2.0)),
        ("in_dim", dict(in_dim=None)),
        ("in_dim", dict(in_dim=2**62)),  # XLA aborted the whole process on this kernel size
        ("gain", dict(gain="1.0")),
        ("gain", dict(gain=10**400)),  # was an OverflowError/TypeError on the way to float
        ("gain", dict(gain=-(10**30))),  # beyond int64: was numpy's TypeError in the finiteness check
        ("gain", dict(gain=True)),
        ("dropout_rate", dict(dropout_rate=False)),
        ("dropout_rate", dict(dropout_rate="0.1")),
    ],
)
def test_wrong_types_raise_value_error_naming_the_argument(field, kwargs):
    settings = dict(architecture="mlp", activation="relu", width=8, depth=2, gain=1.0, in_dim=1, out_dim=1)
    settings.update(kwargs)
    with pytest.raises(ValueError, match=field):
        make_network(settings.pop("architecture"), **settings)


@pytest.mark.parametrize(
    "key",
    [0, 1.5, "key", None, jax.random.split(jax.random.key(0), 2), jnp.zeros(3, jnp.uint32),
     jax.random.PRNGKey(0).astype(jnp.int32), 2**70],
    ids=["int", "float", "str", "None", "two keys", "3 words", "int32 data", "huge int"],
)
def test_init_refuses_anything_but_one_key(key):
    """init(0) used to raise flax's InvalidRngError; now a ValueError naming key."""
    net = _net(width=4, depth=1)
    with pytest.raises(ValueError, match="key must be one JAX PRNG key"):
        net.init(key)


def test_init_takes_a_typed_key_or_its_raw_data_alike():
    net = _net(width=4, depth=1)
    typed = net.init(jax.random.key(3))
    raw = net.init(jax.random.PRNGKey(3))
    host = net.init(np.asarray(jax.random.key_data(jax.random.key(3))))
    for a, b, c in zip(jax.tree.leaves(typed), jax.tree.leaves(raw), jax.tree.leaves(host)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    keys = jax.random.split(jax.random.key(3), 2)
    batched = jax.vmap(net.init)(keys)  # one key per vmapped element
    np.testing.assert_allclose(batched[0]["kernel"][1], net.init(keys[1])[0]["kernel"], rtol=1e-6)


def test_apply_checks_its_arguments_and_names_them():
    drop = _net("dropout", width=4, depth=1)
    params = drop.init(jax.random.key(0))
    x = jnp.zeros((2, 1))
    bad = [
        ("x", dict(x="abc")),  # was a TypeError from jnp.asarray
        ("x", dict(x=np.zeros((2, 1), np.complex64))),  # was silently accepted
        ("x", dict(x=np.zeros((2, 1), bool))),
        ("x", dict(x=jax.random.split(jax.random.key(0), 2).reshape(2, 1))),  # keys: was numpy's TypeError
        ("params", dict(params=None)),  # was a TypeError (len of None)
        ("params", dict(params=params[:-1])),
        ("params", dict(params=(params[0], 3))),  # was a TypeError (int not subscriptable)
        (r"params\[0\]", dict(params=({"kernel": params[0]["kernel"]},) + params[1:])),
        (r"params\[1\]\['kernel'\]", dict(params=(params[0], dict(params[1], kernel=params[1]["kernel"].T)))),
        (r"params\[0\]\['bias'\]", dict(params=(dict(params[0], bias="zeros"),) + params[1:])),
        ("train", dict(train="yes")),  # was taken as True
        ("train", dict(train=np.bool_(True))),
        ("key", dict(train=True, key=0)),
        ("masks", dict(train=True, masks=(jnp.ones((2, 1), bool),))),
        ("masks", dict(train=True, masks=(jnp.ones((2, 1), bool), jnp.ones((3, 4), bool)))),
    ]
    for field, kwargs in bad:
        call = dict(params=params, x=x)
        call.update(kwargs)
        with pytest.raises(ValueError, match=field):
            drop.apply(call.pop("params"), call.pop("x"), **call)
    # the checks are on shapes and dtypes only, so apply still traces under jit and vmap
    out, _ = jax.jit(drop.apply, static_argnames="train")(params, x, train=True, key=jax.random.key(1))
    assert out.shape == (2, 1)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_apply_on_an_empty_batch_gives_empty_records(architecture):
    """The CNN reshaped its hidden records with -1, which fails for 0 rows (found by fuzzing)."""
    net = _net(architecture)
    out, hiddens = _jit_apply(net, _init(net, 0), jnp.zeros((0, 1)))
    assert out.shape == (0, 1)
    assert [h.shape for h in hiddens] == [(0, k) for k in net.hidden_sizes]
