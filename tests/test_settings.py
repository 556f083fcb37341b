"""Settings: the paper's published hyperparameters, the conversions to rsd, validation."""

import math

import numpy as np
import pytest

from rsd.training import PAPER_TABLES, Setting, paper_layer_to_rsd, paper_names

# The paper's tables, as published with its code (model_type, nonlinearity, gain, lr,
# P, L, n_epochs, hidden_layer). Written out here on purpose: these are published
# facts, so a typo in rsd's registry must fail against them.
PUBLISHED = {
    "2_points": {
        "default": ("MLP", "leaky_relu", 1.0, 0.01, 500, 20, 3000, 10),
        "shallow": ("MLP", "leaky_relu", 0.35, 0.02, 500, 2, 3000, 1),
        "narrow": ("MLP", "leaky_relu", 1.05, 0.01, 50, 20, 3000, 10),
        "linear": ("MLP", "none", 0.85, 0.0025, 500, 20, 3000, 10),
        "elu": ("MLP", "elu", 0.95, 0.0009, 500, 20, 3000, 10),
        "tanh": ("MLP", "tanh", 0.85, 0.0025, 500, 20, 3000, 10),
        "relu": ("MLP", "relu", 1.0, 0.01, 500, 20, 3000, 10),
        "swish": ("MLP", "silu", 1.7, 0.005, 500, 20, 3000, 10),
        "skip": ("ResNet", "leaky_relu", 0.1, 0.02, 500, 20, 3000, 10),
        "cnn": ("CNN", "leaky_relu", 0.95, 0.004, 500, 10, 3000, 5),
        "dropout": ("Dropout", "leaky_relu", 1.0, 0.01, 500, 10, 3000, 5),
        "gain_0.9": ("MLP", "leaky_relu", 0.9, 0.03, 500, 20, 3000, 10),
        "gain_1.1": ("MLP", "leaky_relu", 1.1, 0.005, 500, 20, 3000, 10),
        "gain_1.2": ("MLP", "leaky_relu", 1.2, 0.0025, 500, 20, 3000, 10),
        "gain_1.3": ("MLP", "leaky_relu", 1.3, 0.0015, 500, 20, 3000, 10),
        "gain_1.4": ("MLP", "leaky_relu", 1.4, 0.0005, 500, 20, 3000, 10),
        "gain_1.6": ("MLP", "leaky_relu", 1.6, 0.000003, 500, 20, 3000, 10),
        "adam": ("MLP", "leaky_relu", 1.0, 0.000001, 500, 20, 3000, 10),
        "two_layer": ("MLP", "none", 0.1, 0.01, 500, 1, 3000, 0),
    },
    "xor": {
        "rich": ("MLP", "leaky_relu", 0.85, 0.015, 500, 20, 3000, 10),
        "intermediate": ("MLP", "leaky_relu", 1.25, 0.002, 500, 20, 1000, 10),
        "lazy": ("MLP", "leaky_relu", 2.0, 0.000000003, 500, 20, 1000, 10),
        "shallow": ("MLP", "leaky_relu", 0.0015, 0.03, 500, 1, 2000, 0),
    },
    "orthogonal": {
        "high_init": ("MLP", "tanh", 2.0, 0.0015, 100, 4, 750, 2),
        "low_init": ("MLP", "tanh", 0.5, 0.015, 100, 4, 1500, 2),
        "vlow_init": ("MLP", "tanh", 0.275, 0.05, 100, 4, 2000, 2),
    },
    "mnist": {
        "structure": ("MLP", "leaky_relu", 0.5, 0.005, 200, 4, 200, 2),
        "trajectories": ("MLP", "leaky_relu", 0.5, 0.003, 200, 4, 200, 2),
    },
}
ARCH = {"MLP": "mlp", "ResNet": "resnet", "CNN": "cnn", "Dropout": "dropout"}
ROWS = [(t, n) for t in PUBLISHED for n in PUBLISHED[t]]


def test_registry_covers_exactly_the_published_rows():
    assert set(PAPER_TABLES) == set(PUBLISHED)
    for table, rows in PUBLISHED.items():
        assert paper_names(table) == tuple(rows)


@pytest.mark.parametrize("table,name", ROWS)
def test_registry_numbers_are_the_published_ones(table, name):
    model, act, gain, lr, width, depth, epochs, layer = PUBLISHED[table][name]
    row = PAPER_TABLES[table][name]
    assert (row.model_type, row.nonlinearity, row.width, row.depth, row.n_epochs,
            row.hidden_layer) == (model, act, width, depth, epochs, layer)
    assert row.gain == gain and row.lr == lr
    if table in ("2_points", "xor"):
        assert (row.dx2, row.dy2, row.in_dim, row.out_dim) == (1, 0.5, 1, 1)


@pytest.mark.parametrize("table,name", ROWS)
def test_from_paper_converts_every_row(table, name):
    model, act, gain, lr, width, depth, epochs, layer = PUBLISHED[table][name]
    s = Setting.from_paper(table, name)
    assert (s.architecture, s.activation, s.width, s.depth, s.gain) == (
        ARCH[model], act, width, depth, gain)
    assert s.batch_size is None and s.loss == "half_mse"
    assert s.optimizer == ("adam" if (table, name) in {("2_points", "adam"), ("mnist", "structure")} else "sgd")
    expected_layer = (layer - 1) // 2 if model == "Dropout" else layer
    assert s.layers == (expected_layer,)
    if table == "2_points":
        # Two points: half the table's lr, twice its epochs (one full-batch step each).
        assert s.lr == pytest.approx(lr / 2, rel=1e-15)
        assert s.steps == 2 * epochs
        assert (s.in_dim, s.out_dim, s.dx2, s.dy2) == (1, 1, 1.0, 0.5)
    else:
        assert s.lr == lr and s.steps == epochs
        assert (s.in_dim, s.out_dim, s.dx2, s.dy2) == (None, None, None, None)


def test_two_point_conversion_in_numbers():
    default = Setting.from_paper("2_points", "default")
    assert (default.lr, default.steps, default.layers) == (0.005, 6000, (10,))
    assert Setting.from_paper("2_points", "adam").lr == 5e-7
    assert Setting.from_paper("2_points", "gain_1.6").lr == pytest.approx(1.5e-6, rel=1e-15)


def test_layer_mapping():
    for arch in ("mlp", "resnet", "cnn"):
        assert [paper_layer_to_rsd(arch, i) for i in range(6)] == list(range(6))
    # dropout MLP: [dropout, linear, dropout, linear, ...]; index 5 = third linear layer.
    assert paper_layer_to_rsd("dropout", 5) == 2
    assert paper_layer_to_rsd("dropout", 1) == 0
    assert paper_layer_to_rsd("dropout", 3) == 1
    # an even index is a dropout output: the identity in eval mode of the hidden before it
    assert paper_layer_to_rsd("dropout", 6) == 2
    with pytest.raises(ValueError, match="index 0 of a dropout"):
        paper_layer_to_rsd("dropout", 0)
    with pytest.raises(ValueError, match="architecture"):
        paper_layer_to_rsd("transformer", 1)
    assert Setting.from_paper("2_points", "dropout").layers == (2,)
    assert Setting.from_paper("2_points", "cnn").layers == (5,)


def test_quirks_are_options_not_defaults():
    xor = Setting.from_paper("xor", "rich")
    assert (xor.activation, xor.loss) == ("leaky_relu", "half_mse")
    xor_q = Setting.from_paper("xor", "rich", quirks=True)
    assert (xor_q.activation, xor_q.loss, xor_q.batch_size) == ("relu", "mse", None)

    with pytest.raises(ValueError, match="n_train"):
        Setting.from_paper("orthogonal", "low_init", quirks=True)
    blob = Setting.from_paper("orthogonal", "low_init", quirks=True, n_train=1000)
    assert blob.activation == "leaky_relu"  # the table says tanh; the notebook never passed it
    assert blob.batch_size == 64 and blob.steps == 1500 * math.ceil(1000 / 64)
    assert Setting.from_paper("orthogonal", "low_init").activation == "tanh"

    mnist = Setting.from_paper("mnist", "structure", quirks=True, n_train=640)
    assert (mnist.batch_size, mnist.steps, mnist.activation) == (64, 2000, "leaky_relu")
    # DESIGN.md §6: the structure run uses Adam, the trajectory run SGD
    assert mnist.optimizer == "adam"
    assert Setting.from_paper("mnist", "trajectories", quirks=True, n_train=640).optimizer == "sgd"
    # two-point rows have no quirks
    assert Setting.from_paper("2_points", "default", quirks=True).replace(name="") == \
        Setting.from_paper("2_points", "default").replace(name="")


@pytest.mark.parametrize(
    "changes,field",
    [
        (dict(architecture="transformer"), "architecture"),
        (dict(activation="gelu"), "activation"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(loss="l1"), "loss"),
        (dict(width=0), "width"),
        (dict(depth=2.5), "depth"),
        (dict(steps=0), "steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(gain=-1.0), "gain"),
        (dict(gain=float("nan")), "gain"),
        (dict(lr=0.0), "lr"),
        (dict(lr="0.1"), "lr"),
        (dict(dx2=-1.0), "dx2"),
        (dict(dropout_rate=1.0), "dropout_rate"),
        (dict(layers=[1, 2]), "layers"),
        (dict(layers=(-1,)), "layers"),
        (dict(in_dim=0), "in_dim"),
        (dict(architecture="cnn", width=50, depth=10), "width"),
    ],
)
def test_bad_settings_raise_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=f"Setting.{field}"):
        Setting(**changes)


def test_bad_paper_lookups_raise():
    with pytest.raises(ValueError, match="table must be one of"):
        Setting.from_paper("cifar", "default")
    with pytest.raises(ValueError, match="name must be one of"):
        Setting.from_paper("2_points", "huge")
    with pytest.raises(ValueError, match="quirks"):
        Setting.from_paper("xor", "rich", quirks="yes")


def test_settings_are_hashable_static_pytrees():
    import jax

    s = Setting.from_paper("2_points", "narrow")
    assert hash(s) == hash(Setting.from_paper("2_points", "narrow"))
    assert jax.tree.leaves(s) == []
    assert s.replace(lr=0.1).lr == 0.1
    with pytest.raises(ValueError, match="Setting.lr"):
        s.replace(lr=-0.1)


@pytest.mark.parametrize(
    "changes,field",
    [
        (dict(architecture=np.array(["mlp", "cnn"])), "architecture"),  # was numpy's "truth value" error
        (dict(loss=np.array(["mse", "half_mse"])), "loss"),
        (dict(gain=10**400), "gain"),  # was an OverflowError in float()
        (dict(lr=-(10**400)), "lr"),
        (dict(dropout_rate=10**400), "dropout_rate"),
        (dict(dropout_rate=np.bool_(False)), "dropout_rate"),
        (dict(steps=2**31), "steps"),  # training counts steps in int32
        (dict(name=["a"]), "name"),  # would make the setting unhashable
    ],
)
def test_wrong_types_raise_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=f"Setting.{field}"):
        Setting(**changes)


def test_cnn_width_error_names_every_field_involved():
    """replace(architecture="cnn") on a narrow row failed naming only width, which it did not change."""
    with pytest.raises(ValueError, match=r"Setting.width must be > 210 for Setting.architecture='cnn' with Setting.depth=20"):
        Setting.from_paper("2_points", "narrow").replace(architecture="cnn")


def test_unknown_or_doubled_fields_raise_value_error():
    """The dataclass constructor raised TypeError for these; every way of building a Setting names the field."""
    with pytest.raises(ValueError, match="Setting has no field 'foo'"):
        Setting(foo=1)
    with pytest.raises(ValueError, match="Setting has no field 'widht'"):
        Setting(width=8, widht=8)
    with pytest.raises(ValueError, match="Setting has no field 'foo'"):
        Setting().replace(foo=1)
    with pytest.raises(ValueError, match="at most 17 positional"):
        Setting(*["mlp"] * 18)
    with pytest.raises(ValueError, match="'architecture' given both"):
        Setting("mlp", architecture="resnet")
    # the check sits in __new__: positional construction, copies and pickles are unchanged
    import copy
    import pickle

    s = Setting("resnet", "tanh", 8, 2, name="x")
    assert (s.architecture, s.activation, s.width, s.depth) == ("resnet", "tanh", 8, 2)
    assert copy.deepcopy(s) == s and pickle.loads(pickle.dumps(s)) == s
    assert hash(copy.copy(s)) == hash(s)


def test_from_paper_checks_n_train_whenever_given():
    with pytest.raises(ValueError, match="n_train"):
        Setting.from_paper("2_points", "default", n_train="many")  # was ignored without quirks
    with pytest.raises(ValueError, match="n_train"):
        Setting.from_paper("mnist", "structure", quirks=True, n_train=10**400)  # was an OverflowError
    with pytest.raises(ValueError, match="table"):
        Setting.from_paper(np.array(["xor", "mnist"]), "rich")
    # 200 epochs of ceil(n_train / 64) steps must fit the int32 step counter
    largest = (2**31 - 1) // 200 * 64
    assert Setting.from_paper("mnist", "structure", quirks=True, n_train=largest).steps == (2**31 - 1) // 200 * 200
    with pytest.raises(ValueError, match="n_train must be at most"):
        Setting.from_paper("mnist", "structure", quirks=True, n_train=largest + 1)


def test_network_of_a_setting_needs_its_dims():
    s = Setting.from_paper("mnist", "trajectories")
    with pytest.raises(ValueError, match="in_dim"):
        s.network()
    net = s.network(784, 10)
    shapes = [w for w, _ in net.layer_shapes]
    assert shapes[0] == (784, 200) and shapes[-1] == (200, 10) and len(shapes) == 5
