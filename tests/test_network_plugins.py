"""rsd.networks as plug-ins: the interface, the registry, paper-layer maps and FlaxNetwork."""

import inspect
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsd.networks import (
    ARCHITECTURES,
    CNN,
    MLP,
    AbstractNetwork,
    DropoutMLP,
    FlaxNetwork,
    Network,
    ResNet,
    cnn_min_width,
    make_network,
    register_network,
)

SETTINGS = dict(activation="tanh", width=8, depth=3, gain=1.0, in_dim=2, out_dim=1)
CLASSES = {"mlp": MLP, "resnet": ResNet, "cnn": CNN, "dropout": DropoutMLP}


def _paper(architecture, **kw):
    settings = dict(SETTINGS, **kw)
    if architecture == "cnn":
        settings.update(width=cnn_min_width(settings["depth"]) + 5)
    return make_network(architecture, **settings)


class TwoLayer(nn.Module):
    """A user's own network: tanh hidden layer, linear output."""

    width: int = 5
    out: int = 2

    @nn.compact
    def __call__(self, x):
        h = jnp.tanh(nn.Dense(self.width, name="hidden")(x))
        return nn.Dense(self.out, name="readout")(h), (h,)


# --- the registry -------------------------------------------------------------------------------


def test_every_architecture_name_builds_its_own_class():
    assert set(ARCHITECTURES) == set(CLASSES)
    for name in ARCHITECTURES:
        net = _paper(name)
        assert type(net) is CLASSES[name]
        assert net.architecture == name
        assert isinstance(net, Network) and isinstance(net, AbstractNetwork)
        assert net.has_dropout == (name == "dropout")


def test_a_registered_class_is_built_by_make_network(monkeypatch):
    from rsd.networks import _registry

    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))  # leave no trace

    class Shallow(MLP):
        architecture: ClassVar[str] = "shallow_test"

    register_network("shallow_test", Shallow)
    register_network("shallow_test", Shallow)  # the same class again: nothing happens
    net = make_network("shallow_test", **SETTINGS)
    assert type(net) is Shallow and net.architecture == "shallow_test"
    ref = make_network("mlp", **SETTINGS)
    key, x = jax.random.key(0), jnp.ones((3, 2))
    for a, b in zip(jax.tree.leaves(net.apply(net.init(key), x)), jax.tree.leaves(ref.apply(ref.init(key), x))):
        np.testing.assert_array_equal(a, b)
    assert net != ref  # same fields, another class

    class Other(MLP):
        architecture: ClassVar[str] = "other_test"

    for field, args in [("name", ("shallow_test", Other)),  # taken by another class
                        ("name", ("", Other)),
                        ("cls", ("other_test", dict)),
                        ("cls", ("other_test", Network)),  # abstract
                        ("cls", ("other_test", FlaxNetwork)),
                        ("cls.architecture", ("other_name", Other))]:
        with pytest.raises(ValueError, match=field):
            register_network(*args)
    with pytest.raises(ValueError, match="architecture"):
        make_network("other_test", **SETTINGS)


def test_direct_construction_checks_the_fields_like_make_network():
    assert MLP(**SETTINGS) == make_network("mlp", **SETTINGS)
    for field, kw in [("width", dict(width=0)), ("activation", dict(activation="gelu")),
                      ("gain", dict(gain=-1.0)), ("width", dict(width=cnn_min_width(3) - 1))]:
        with pytest.raises(ValueError, match=field):
            CNN(**dict(SETTINGS, **kw))


def test_cnn_width_rule_is_the_shortest_width_that_builds():
    for depth in (1, 2, 4):
        shortest = cnn_min_width(depth)
        net = make_network("cnn", **dict(SETTINGS, width=shortest, depth=depth))
        assert net.hidden_sizes[-1] == 1  # one position left after the last convolution
        out, _ = net.apply(net.init(jax.random.key(0)), jnp.ones((2, 2)))
        assert out.shape == (2, 1)
        with pytest.raises(ValueError, match="width"):
            make_network("cnn", **dict(SETTINGS, width=shortest - 1, depth=depth))


# --- the interface ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ARCHITECTURES + ("flax",))
def test_every_network_has_the_interface_training_uses(name):
    net = FlaxNetwork(TwoLayer(), in_dim=3, out_dim=2) if name == "flax" else _paper(name)
    apply = inspect.signature(net.apply).parameters
    assert list(apply)[:2] == ["params", "x"]
    for arg in ("train", "key", "masks"):
        assert apply[arg].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(inspect.signature(net.dropout_masks).parameters) == ["key", "batch"]
    params = net.init(jax.random.key(1))
    x = jnp.ones((4, net.in_dim))
    out, hiddens = net.apply(params, x, train=False, key=None, masks=None)
    assert out.shape == (4, net.out_dim)
    assert isinstance(hiddens, tuple) and len(hiddens) == net.num_hidden
    assert [h.shape for h in hiddens] == [(4, k) for k in net.hidden_sizes]
    assert net.num_params == sum(a.size for a in jax.tree.leaves(params))
    masks = net.dropout_masks(jax.random.key(2), 4)
    assert (masks is not None) == (name in ARCHITECTURES)  # the paper's nets give all-True masks
    if net.has_dropout:
        out, _ = net.apply(params, x, train=True, masks=masks)
        assert out.shape == (4, net.out_dim)
    layers = net.to_layers(params)
    for a, b in zip(jax.tree.leaves(net.from_layers(layers)), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)


def test_an_abstract_network_subclass_gets_the_defaults():
    """A network written without Flax: only in_dim, out_dim, init and apply."""

    class Linear(AbstractNetwork):
        in_dim: int = 3
        out_dim: int = 2

        def init(self, key):
            return {"w": jax.random.normal(key, (self.in_dim, 4)), "v": jnp.zeros((4, self.out_dim))}

        def apply(self, params, x, *, train=False, key=None, masks=None):
            h = x @ params["w"]
            return h @ params["v"], (h, 2 * h)

    net = Linear()
    assert net.hidden_sizes == (4, 4) and net.num_hidden == 2 and net.num_params == 20
    assert not net.has_dropout and net.dropout_masks(jax.random.key(0), 5) is None
    assert net.paper_layer(1) == 1
    with pytest.raises(ValueError, match="index"):
        net.paper_layer(2)
    params = net.init(jax.random.key(0))
    assert net.from_layers(net.to_layers(params)) is params
    with pytest.raises(TypeError):
        AbstractNetwork()


# --- paper layer indices ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_dropout_paper_layers_follow_the_module_count(depth):
    """The tables count [dropout, linear, dropout, linear, …]: odd j = 2k+1 is hidden layer k,
    even j = 2k ≥ 2 the (eval-mode identity) dropout after hidden layer k − 1."""
    net = _paper("dropout", depth=depth)
    for j in range(1, 2 * depth + 1):
        expected = (j - 1) // 2 if j % 2 else j // 2 - 1
        assert net.paper_layer(j) == expected
        assert 0 <= expected < net.num_hidden
    assert net.paper_layer(5 if depth >= 3 else 1) == (2 if depth >= 3 else 0)
    for bad in (0, 2 * depth + 1, -1, 1.0):
        with pytest.raises(ValueError, match="index"):
            net.paper_layer(bad)


@pytest.mark.parametrize("name", ["mlp", "resnet", "cnn"])
def test_other_paper_layers_are_rsd_hidden_records(name):
    net = _paper(name)
    assert [net.paper_layer(j) for j in range(net.num_hidden)] == list(range(net.num_hidden))
    with pytest.raises(ValueError, match="index"):
        net.paper_layer(net.num_hidden)


# --- FlaxNetwork ----------------------------------------------------------------------------------


def test_flax_network_matches_a_hand_written_forward():
    net = FlaxNetwork(TwoLayer(), in_dim=3, out_dim=2)
    key = jax.random.key(4)
    params = net.init(key)
    reference = TwoLayer().init(key, jnp.zeros((1, 3)))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(a, b)
    p = params["params"]
    x = jax.random.normal(jax.random.key(5), (6, 3))
    h = jnp.tanh(jnp.dot(x, p["hidden"]["kernel"]) + p["hidden"]["bias"])
    out = jnp.dot(h, p["readout"]["kernel"]) + p["readout"]["bias"]
    got_out, (got_h,) = net.apply(params, x)
    np.testing.assert_allclose(got_out, out, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_h, h, rtol=1e-6, atol=1e-6)
    assert net.hidden_sizes == (5,) and net.num_hidden == 1
    assert net.num_params == 3 * 5 + 5 + 5 * 2 + 2
    assert net.paper_layer(0) == 0 and not net.has_dropout
    # pure: jit, vmap over seeds and grad go through it
    seeds = jax.vmap(net.init)(jax.random.split(key, 3))
    outs = jax.vmap(lambda q: net.apply(q, x)[0])(seeds)
    for i in range(3):
        one = jax.tree.map(lambda a: a[i], seeds)
        np.testing.assert_allclose(outs[i], net.apply(one, x)[0], rtol=1e-6, atol=1e-6)
    grad = jax.grad(lambda q: jnp.sum(jax.jit(net.apply)(q, x)[0] ** 2))(params)
    assert jax.tree.structure(grad) == jax.tree.structure(params)


class NoHiddens(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(x)


class ThreeOutputs(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(x), (x,), x


class EmptyHiddens(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(x), ()


class FixedInput(nn.Module):
    """Works on 3 inputs only."""

    @nn.compact
    def __call__(self, x):
        w = self.param("w", nn.initializers.normal(), (3, 4))
        h = jnp.dot(x, w)
        return h[:, :1], (h,)


@pytest.mark.parametrize(
    "field, module, in_dim, out_dim",
    [
        ("module", NoHiddens(), 3, 1),  # returns an array, not (output, hiddens)
        ("module", ThreeOutputs(), 3, 1),
        ("module", EmptyHiddens(), 3, 1),
        ("module", jnp.tanh, 3, 1),  # not a Flax module
        ("out_dim", TwoLayer(), 3, 1),  # TwoLayer gives 2 outputs
        ("in_dim", FixedInput(), 4, 1),
        ("in_dim", TwoLayer(), 0, 2),
        ("in_dim", TwoLayer(), 2.0, 2),
        ("out_dim", TwoLayer(), 3, None),
    ],
)
def test_flax_network_rejects_modules_off_contract(field, module, in_dim, out_dim):
    with pytest.raises(ValueError, match=field):
        FlaxNetwork(module, in_dim=in_dim, out_dim=out_dim)


def test_flax_network_checks_apply_arguments():
    net = FlaxNetwork(TwoLayer(), in_dim=3, out_dim=2)
    params = net.init(jax.random.key(0))
    x = jnp.ones((2, 3))
    for field, kw in [("x", dict(x=jnp.ones((2, 4)))), ("x", dict(x="abc")),
                      ("masks", dict(masks=(jnp.ones((2, 3), bool),))), ("train", dict(train=1)),
                      ("key", dict(key=0))]:
        call = dict(x=x)
        call.update(kw)
        with pytest.raises(ValueError, match=field):
            net.apply(params, call.pop("x"), **call)
    with pytest.raises(ValueError, match="key"):
        net.init(0)


# --- hashable, equal by value, static under jit --------------------------------------------------


def test_networks_are_hashable_and_equal_by_value():
    for name in ARCHITECTURES:
        a, b = _paper(name), _paper(name)
        assert a == b and hash(a) == hash(b) and a is not b
        assert a != _paper(name, gain=2.0)
    assert _paper("mlp") != _paper("resnet")
    f, g = FlaxNetwork(TwoLayer(), in_dim=3, out_dim=2), FlaxNetwork(TwoLayer(), in_dim=3, out_dim=2)
    assert f == g and hash(f) == hash(g)
    assert f != FlaxNetwork(TwoLayer(width=6), in_dim=3, out_dim=2)
    assert len({f, g, _paper("mlp"), _paper("mlp")}) == 2


def test_equal_networks_share_one_compiled_program():
    traces = []
    forward = jax.jit(lambda params, x, net: (traces.append(net), net.apply(params, x)[0])[1],
                      static_argnums=2)
    for make in (lambda: _paper("cnn"), lambda: FlaxNetwork(TwoLayer(), in_dim=2, out_dim=2)):
        traces.clear()
        first = make()
        params = first.init(jax.random.key(0))
        forward(params, jnp.ones((2, 2)), first)
        forward(params, jnp.ones((2, 2)), make())  # an equal network, built again
        assert len(traces) == 1

