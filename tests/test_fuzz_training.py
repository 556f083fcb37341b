"""Property-based fuzzing of the public settings, training, data and network entry points.

The property (DESIGN.md §5, issue 12), for every entry point and every argument: either a
result that keeps its contract (for ``train``: one status per seed, OK or DIVERGED, and
never OK for a seed with a non-finite record), or a ``ValueError`` whose message names the
offending argument; never another exception type.

Examples are bounded so the file runs in about a minute on two CPU cores; ``RSD_SLOW=1``
runs many more (the shared "slow" hypothesis profile if conftest registers one, else ten
times as many examples). ``train`` draws from a small fixed set of network shapes so its
few compiled programs are shared by all examples.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

from rsd.data import context_blobs, read_idx, two_points, xor
from rsd.networks import make_network
from rsd.networks import ACTIVATIONS as NET_ACTIVATIONS
from rsd.networks import ARCHITECTURES as NET_ARCHITECTURES
from rsd.networks import PRECISIONS
from rsd.training import ACTIVATIONS, ARCHITECTURES, LOSSES, OPTIMIZERS, PAPER_TABLES, Run, Setting, Status, train
from rsd.training._settings import MAX_STEPS

# Overflow and dtype warnings are expected on junk input; the property is about exceptions.
pytestmark = pytest.mark.filterwarnings("ignore")

# --- profiles -------------------------------------------------------------------------------

_SLOW = os.environ.get("RSD_SLOW") == "1"


def _profile(name):
    try:
        return settings.get_profile(name)
    except InvalidArgument:
        return None


# conftest registers the shared "ci" and "slow" profiles; this fallback keeps the file usable alone.
_CI = _profile("ci") or settings(deadline=None, print_blob=True, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def _fuzz(examples):
    """``examples`` examples by default; under RSD_SLOW=1 the shared "slow" profile's (or 10×)."""
    if _SLOW:
        slow = _profile("slow")
        return slow if slow is not None else settings(_CI, max_examples=10 * examples)
    return settings(_CI, max_examples=examples)


# --- strategies -----------------------------------------------------------------------------

_DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint32, np.bool_,
           np.complex64]


def _arrays(max_dims=3, max_side=3, dtypes=_DTYPES):
    """numpy arrays of any listed dtype and shape; floats include NaN, ±inf and subnormals."""
    return hnp.arrays(st.sampled_from(dtypes), hnp.array_shapes(min_dims=0, max_dims=max_dims,
                                                                min_side=0, max_side=max_side))


_EXTREME = st.sampled_from([0.0, -0.0, 5e-324, 1e-45, 1e-300, 1e-8, 0.5, 1.0, 3.0, 1e8, 1e30,
                            3.4e38, 1e39, 1e300, math.inf, -math.inf, math.nan])

# Anything a careless caller might pass: wrong types, NaN/inf, huge integers, arrays, keys.
_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2**70, 2**70),
    st.floats(),
    _EXTREME.map(lambda v: -v),
    st.complex_numbers(max_magnitude=10),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.integers(-3, 3), max_size=3),
    st.tuples(st.integers(-3, 3), st.floats()),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    _arrays(),
    _arrays(max_side=2).map(jnp.asarray),
    st.sampled_from([np.float32(math.nan), np.int64(-3), np.float64(1e300), np.bool_(True),
                     object(), float, np.float32, "float32"]),
    st.integers(0, 3).map(jax.random.key),
)


def _mostly(valid, junk=_JUNK):
    """A valid value three times in four, else junk (so several arguments are often all valid)."""
    return st.integers(0, 3).flatmap(lambda k: junk if k == 0 else valid)


_JUNK_COUNT = st.sampled_from([0, 0, 0, 1, 1, 2, 3])

# Junk for a size argument: never a valid size this machine could not allocate or loop over
# (a MemoryError or a hang there is no validation bug), but sizes no array can have, yes.
_NOT_A_SIZE = st.one_of(_JUNK.filter(lambda v: not _is_int(v, 1)), st.integers(-5, 0))
_SIZE_JUNK = st.one_of(_NOT_A_SIZE, st.integers(2**62, 2**70))


def _names_one_of(message, names):
    """True when ``message`` names one of ``names`` as a word (``x`` is not in ``max``)."""
    return any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", message) for n in names)


def _expect_named_value_error(err, names):
    assert isinstance(err, ValueError), f"{type(err).__name__} instead of ValueError: {err}"
    assert _names_one_of(str(err), names), f"message names none of {sorted(names)}: {err}"


def _call(f, *args, **kwargs):
    """(result, None) or (None, exception): every exception is captured for the property check."""
    try:
        result = f(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - the property is about which exception
        event(f"{getattr(f, '__name__', f)}: {type(err).__name__}")
        return None, err
    event(f"{getattr(f, '__name__', f)}: result")
    return result, None


# --- Setting ----------------------------------------------------------------------------------

_VALID_FIELDS = dict(
    architecture=st.sampled_from(ARCHITECTURES),
    activation=st.sampled_from(ACTIVATIONS),
    width=st.integers(1, 64),
    depth=st.integers(1, 8),
    gain=st.floats(1e-3, 10.0),
    optimizer=st.sampled_from(OPTIMIZERS),
    lr=st.floats(1e-6, 1.0),
    steps=st.integers(1, 10**6),
    batch_size=st.none() | st.integers(1, 100),
    layers=st.none() | st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple),
    dropout_rate=st.floats(0.0, 0.99),
    in_dim=st.none() | st.integers(1, 8),
    out_dim=st.none() | st.integers(1, 8),
    dx2=st.none() | st.floats(0.0, 10.0),
    dy2=st.none() | st.floats(0.0, 10.0),
    loss=st.sampled_from(LOSSES),
    name=st.text(max_size=8),
)
_FIELDS = tuple(_VALID_FIELDS)
_UNKNOWN = st.sampled_from(["foo", "widht", "seed", "lr_", "key"])


@st.composite
def _setting_changes(draw, all_fields=False):
    """A dict of Setting fields: valid values, some replaced by junk, maybe an unknown name."""
    names = _FIELDS if all_fields else draw(st.lists(st.sampled_from(_FIELDS), max_size=6, unique=True))
    changes = {f: draw(_VALID_FIELDS[f]) for f in names}
    for f in draw(st.lists(st.sampled_from(_FIELDS), min_size=(k := draw(_JUNK_COUNT)), max_size=k,
                           unique=True)):
        changes[f] = draw(_JUNK)
    if draw(st.integers(0, 9)) == 0:
        changes[draw(_UNKNOWN)] = draw(_JUNK)
    return changes


def _is_int(v, lo, hi=None):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= lo and \
        (hi is None or v <= hi)


def _is_finite_real(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(float(v))


def _assert_valid_setting(s):
    """Every field of a constructed Setting is in its documented range, and it is a static pytree."""
    assert isinstance(s.architecture, str) and s.architecture in ARCHITECTURES
    assert isinstance(s.activation, str) and s.activation in ACTIVATIONS
    assert isinstance(s.optimizer, str) and s.optimizer in OPTIMIZERS
    assert isinstance(s.loss, str) and s.loss in LOSSES
    assert _is_int(s.width, 1) and _is_int(s.depth, 1) and _is_int(s.steps, 1, MAX_STEPS)
    assert s.batch_size is None or _is_int(s.batch_size, 1)
    assert s.in_dim is None or _is_int(s.in_dim, 1)
    assert s.out_dim is None or _is_int(s.out_dim, 1)
    assert _is_finite_real(s.gain) and s.gain > 0
    assert _is_finite_real(s.lr) and s.lr > 0
    for v in (s.dx2, s.dy2):
        assert v is None or (_is_finite_real(v) and v >= 0)
    assert _is_finite_real(s.dropout_rate) and 0 <= s.dropout_rate < 1
    assert s.layers is None or (isinstance(s.layers, tuple) and s.layers and all(_is_int(k, 0) for k in s.layers))
    assert isinstance(s.name, str)
    if s.architecture == "cnn":
        assert s.width > 10 * (s.depth + 1)
    hash(s)
    assert jax.tree.leaves(s) == []


def _setting_error_names(changes):
    return [f"Setting.{f}" for f in changes] + ["Setting has no field", "Setting takes at most"]


@_fuzz(300)
@given(_setting_changes())
def test_setting_constructor_validates_every_field(changes):
    s, err = _call(Setting, **changes)
    if err is not None:
        _expect_named_value_error(err, _setting_error_names(changes))
        unknown = set(changes) - set(_FIELDS)
        if unknown and "has no field" in str(err):
            assert _names_one_of(str(err), unknown)
        return
    assert not set(changes) - set(_FIELDS), "an unknown field was accepted"
    _assert_valid_setting(s)
    for f, v in changes.items():
        assert getattr(s, f) is v


_ROWS = [(t, n) for t in PAPER_TABLES for n in PAPER_TABLES[t]]


@_fuzz(200)
@given(st.sampled_from(_ROWS), _setting_changes())
def test_setting_replace_validates_and_keeps_other_fields(row, changes):
    base = Setting.from_paper(*row)
    s, err = _call(base.replace, **changes)
    if err is not None:
        _expect_named_value_error(err, _setting_error_names(changes))
        return
    _assert_valid_setting(s)
    for f in _FIELDS:
        assert getattr(s, f) is (changes[f] if f in changes else getattr(base, f))


_ALL_ROW_NAMES = sorted({n for _, n in _ROWS})


@_fuzz(200)
@given(
    row=st.sampled_from(_ROWS),
    table=_mostly(st.none()),
    name=_mostly(st.none(), st.one_of(st.sampled_from(_ALL_ROW_NAMES), _JUNK)),
    quirks=_mostly(st.booleans()),
    n_train=st.one_of(st.none(), st.integers(-3, 10**12), st.integers(10**12, 2**80), _JUNK),
)
def test_from_paper_gives_a_valid_setting_or_names_the_argument(row, table, name, quirks, n_train):
    table = row[0] if table is None else table
    name = row[1] if name is None else name
    s, err = _call(Setting.from_paper, table, name, quirks=quirks, n_train=n_train)
    if err is not None:
        assert isinstance(err, ValueError), f"{type(err).__name__}: {err}"
        assert re.match(r"(table|name|quirks|n_train)\b", str(err)), str(err)
        return
    _assert_valid_setting(s)
    assert (table, name) in _ROWS and isinstance(quirks, bool)


# --- train ------------------------------------------------------------------------------------

# (setting fields, n points, in_dim, out_dim): a fixed set, so each compiles once per file.
_SHAPES = (
    (dict(architecture="mlp", activation="relu", width=4, depth=1, steps=3), 2, 1, 1),
    (dict(architecture="resnet", activation="tanh", width=8, depth=2, steps=5, optimizer="adam"), 4, 2, 1),
    (dict(architecture="dropout", activation="leaky_relu", width=4, depth=2, steps=4), 2, 1, 2),
    (dict(architecture="mlp", activation="elu", width=8, depth=2, steps=5, batch_size=2, loss="mse"), 4, 2, 1),
)
_MAGNITUDES = st.one_of(st.sampled_from([1e-3, 0.05, 0.5, 1.0, 4.0]),
                        st.sampled_from([1e-40, 1e-6, 1e3, 1e10, 1e20, 1e38]))


def _values(shape, finite=True):
    """Data of ``shape``, mostly of order one, with any sign; NaN/inf (in float32) only when not ``finite``."""
    extremes = [0.0, 1e-30, -1e10, 1e20, -3e38, 3e38] if finite else [math.nan, math.inf, -math.inf, 1e39]
    elements = st.integers(0, 5).flatmap(lambda k: st.sampled_from(extremes) if k == 0 else st.floats(-3.0, 3.0))
    return hnp.arrays(np.float64, shape, elements=elements)


def _assert_run_keeps_its_contract(run, num_seeds, steps):
    """One status per seed, OK or DIVERGED, and never OK for a seed with a non-finite record."""
    assert isinstance(run, Run)
    status = np.asarray(run.status)
    diverged = np.asarray(run.diverged_step)
    assert status.shape == (num_seeds,) and set(status.tolist()) <= {Status.OK, Status.DIVERGED}
    records = {k: np.asarray(getattr(run, k)) for k in ("h", "y", "w", "loss")}
    e0 = np.asarray(run.e0)
    for k, a in records.items():
        assert a.shape[:2] == (num_seeds, steps), k
    event("statuses: " + ",".join(Status(v).name for v in sorted(set(status.tolist()))))
    for s in range(num_seeds):
        finite = all(np.all(np.isfinite(a[s])) for a in records.values()) and np.isfinite(e0[s])
        if status[s] == Status.OK:
            assert finite, f"seed {s} is OK but has a non-finite record"
            assert diverged[s] == steps
        else:
            assert 0 <= diverged[s] < steps


@st.composite
def _train_case(draw):
    fields, n, in_dim, out_dim = draw(st.sampled_from(_SHAPES))
    setting = Setting(**fields, in_dim=None, out_dim=None, gain=draw(_MAGNITUDES), lr=draw(_MAGNITUDES),
                      dropout_rate=draw(st.sampled_from([0.0, 0.1, 0.5])))
    finite = draw(st.integers(0, 7)) > 0
    x = draw(_values((n, in_dim), finite))
    y = draw(_values((n, out_dim), finite))
    seeds = draw(st.lists(st.integers(0, 2**31 - 1), min_size=2, max_size=2))
    pair = tuple(draw(st.permutations(range(n)))[:2])
    stop_loss = draw(st.none() | st.none() | st.floats(1e-6, 10.0)) if n == 2 else None
    init_params = None
    if draw(st.booleans()):
        # Given weights, one scale per layer: huge early layers under a tiny last one keep the
        # loss finite while the hidden records grow without bound.
        network = make_network(fields["architecture"], activation=fields["activation"], width=fields["width"],
                               depth=fields["depth"], gain=1.0, in_dim=in_dim, out_dim=out_dim)
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        init_params = [(draw(_LAYER_SCALES) * rng.standard_normal(w), np.zeros(b)) for w, b in network.layer_shapes]
    return setting, x, y, seeds, pair, stop_loss, init_params


_LAYER_SCALES = st.sampled_from([0.0, 1e-3, 1.0, 1e10, 1e20])


@_fuzz(80)
@given(_train_case())
def test_train_statuses_are_ok_or_diverged_and_ok_means_finite(case):
    setting, x, y, seeds, pair, stop_loss, init_params = case
    run, err = _call(train, setting, x, y, seeds=seeds, pair=pair, stop_loss=stop_loss, init_params=init_params)
    if err is not None:
        _expect_named_value_error(err, ["x", "y"])
        assert not (np.all(np.isfinite(np.float32(x))) and np.all(np.isfinite(np.float32(y))))
        return
    _assert_run_keeps_its_contract(run, len(seeds), setting.steps)


_BASE_FIELDS, _BASE_N, _BASE_IN, _BASE_OUT = _SHAPES[0]
_BASE = Setting(**_BASE_FIELDS, in_dim=None, out_dim=None, lr=0.05)
_BASE_NET = make_network(_BASE.architecture, activation=_BASE.activation, width=_BASE.width,
                         depth=_BASE.depth, gain=1.0, in_dim=_BASE_IN, out_dim=_BASE_OUT)


@st.composite
def _init_params(draw):
    """Near-valid init_params for the base network: right or wrong shapes, finite or not."""
    layers = [(draw(_values(w, finite=draw(st.integers(0, 3)) > 0)), np.zeros(b)) for w, b in _BASE_NET.layer_shapes]
    kind = draw(st.sampled_from(["as is", "as is", "drop", "reshape", "seed axis", "list"]))
    if kind == "drop":
        layers = layers[:-1]
    elif kind == "reshape":
        w, b = layers[0]
        layers[0] = (w.reshape(-1), b)
    elif kind == "seed axis":
        layers = [(np.stack([w, w]), np.stack([b, b])) for w, b in layers]
    elif kind == "list":
        layers = [list(map(np.ndarray.tolist, p)) for p in layers]
    return layers


# Per argument: junk plus near misses. Integers that would be valid are kept small so that
# valid draws reuse the compiled programs (unroll is static, tracked changes shapes).
_SMALL_INTS = st.integers(-3, 3)
_TRAIN_JUNK = dict(
    setting=st.one_of(_JUNK, st.just(_BASE_FIELDS)),
    x=st.one_of(_JUNK, _arrays(max_dims=3, max_side=3), _values((_BASE_N, _BASE_IN), finite=False)),
    y=st.one_of(_JUNK, _arrays(max_dims=3, max_side=3), _values((_BASE_N, _BASE_OUT), finite=False)),
    seeds=st.one_of(_JUNK, st.lists(st.integers(-2, 2**31 + 2), max_size=2),
                    st.lists(st.floats(), min_size=1, max_size=2)),
    pair=st.one_of(_JUNK, st.tuples(_SMALL_INTS, _SMALL_INTS), st.tuples(_SMALL_INTS, _SMALL_INTS, _SMALL_INTS)),
    layers=st.one_of(_JUNK, st.lists(_SMALL_INTS, max_size=2), _SMALL_INTS),
    chunk_size=st.one_of(_JUNK, _SMALL_INTS),
    unroll=st.one_of(_JUNK.filter(lambda v: not _is_int(v, 1)), _SMALL_INTS),
    root_key=st.one_of(_JUNK, st.integers(0, 3).map(lambda k: jax.random.key_data(jax.random.key(k)))),
    return_params=_JUNK,
    stop_loss=st.one_of(_JUNK, _EXTREME),
    init_params=st.one_of(_JUNK, _init_params()),
    tracked=st.one_of(_JUNK, _arrays(max_dims=3, max_side=3)),
    matrix_steps=st.one_of(_JUNK, st.lists(_SMALL_INTS, max_size=3)),
    matrix_layers=st.one_of(_JUNK, st.lists(_SMALL_INTS, max_size=2)),
    dropout_masks=_JUNK,
)


@_fuzz(300)
@given(st.data())
def test_train_with_any_argument_wrong_names_it(data):
    arg = data.draw(st.sampled_from(sorted(_TRAIN_JUNK)), label="argument")
    value = data.draw(_TRAIN_JUNK[arg], label=arg)
    x, y = two_points(1.0, 0.5)
    call = dict(setting=_BASE, x=x, y=y, seeds=[0, 1])
    call[arg] = value
    run, err = _call(train, call.pop("setting"), call.pop("x"), call.pop("y"), **call)
    if err is not None:
        # Data shapes are checked together: a message about "x and y" names both.
        names = {arg} | ({"x", "y"} if arg in ("x", "y") else set())
        _expect_named_value_error(err, names)
        return
    num_seeds = len(np.atleast_1d(np.asarray(call["seeds"])))
    _assert_run_keeps_its_contract(run, num_seeds, _BASE.steps)


# --- networks ---------------------------------------------------------------------------------

_NET_VALID = dict(
    architecture=st.sampled_from(NET_ARCHITECTURES),
    activation=st.sampled_from(NET_ACTIVATIONS),
    width=st.one_of(st.integers(1, 8), st.integers(21, 23)),  # the cnn of depth 1 needs >= 21
    depth=st.integers(1, 2),
    gain=st.one_of(st.floats(0.0, 4.0), _MAGNITUDES),
    in_dim=st.integers(1, 3),
    out_dim=st.integers(1, 3),
    dropout_rate=st.floats(0.0, 0.9),
    precision=st.sampled_from(PRECISIONS),
)


@st.composite
def _network_args(draw):
    args = {k: draw(v) for k, v in _NET_VALID.items()}
    for k in draw(st.lists(st.sampled_from(sorted(args)), min_size=(n := draw(_JUNK_COUNT)), max_size=n,
                           unique=True)):
        # a depth of 2**62 is valid and would just run (unrolled) for ever
        args[k] = draw(_NOT_A_SIZE if k == "depth" else _SIZE_JUNK if k in ("width", "in_dim", "out_dim") else _JUNK)
    return args


_KEYS = st.one_of(st.integers(0, 3).map(jax.random.key),
                  st.integers(0, 3).map(jax.random.PRNGKey),
                  st.integers(0, 3).map(lambda k: np.asarray(jax.random.PRNGKey(k))),
                  st.just(jax.random.split(jax.random.key(0), 2)),
                  st.just(jax.random.PRNGKey(0).astype(jnp.int32)),
                  st.just(jnp.zeros(3, jnp.uint32)),
                  _JUNK)


def _is_key(key):
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.shape == ()
    return isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,)


@st.composite
def _apply_params(draw, network, params):
    kind = draw(st.sampled_from(["as is", "as is", "nan", "drop layer", "transpose", "no bias", "junk"]))
    params = list(params)
    if kind == "nan":
        params[0] = dict(params[0], kernel=params[0]["kernel"] * np.nan)
    elif kind == "drop layer":
        params = params[1:]
    elif kind == "transpose":
        params[-1] = dict(params[-1], kernel=params[-1]["kernel"][..., None])
    elif kind == "no bias":
        params[0] = {"kernel": params[0]["kernel"]}
    elif kind == "junk":
        return draw(_JUNK)
    return tuple(params)


@_fuzz(120)
@given(_network_args(), _KEYS, st.data())
def test_make_network_init_apply_give_results_or_name_the_argument(args, key, data):
    network, err = _call(make_network, args.pop("architecture"), **args)
    if err is not None:
        _expect_named_value_error(err, list(_NET_VALID))
        return
    params, err = _call(network.init, key)
    if err is not None:
        _expect_named_value_error(err, ["key"])
        assert not _is_key(key)
        return
    assert _is_key(key)
    assert [(p["kernel"].shape, p["bias"].shape) for p in params] == list(network.layer_shapes)
    assert all(np.all(np.asarray(p["bias"]) == 0) for p in params)

    batch = data.draw(st.integers(0, 3), label="batch")
    x = data.draw(st.one_of(_values((batch, network.in_dim), finite=data.draw(st.booleans())),
                            _arrays(), _JUNK), label="x")
    params = data.draw(_apply_params(network, params), label="params")
    train_mode = data.draw(st.one_of(st.just(False), st.just(True), _JUNK), label="train")
    apply_key = data.draw(st.one_of(st.none(), st.just(jax.random.key(1)), _JUNK), label="apply key")
    result, err = _call(network.apply, params, x, train=train_mode, key=apply_key)
    if err is not None:
        _expect_named_value_error(err, ["x", "params", "key", "train", "masks"])
        return
    out, hiddens = result
    assert out.shape == (np.shape(x)[0], network.out_dim)
    assert len(hiddens) == network.num_hidden
    assert [h.shape for h in hiddens] == [(np.shape(x)[0], k) for k in network.hidden_sizes]


# --- data -------------------------------------------------------------------------------------

_FLOAT_DTYPES = st.sampled_from([None, np.float16, np.float32, np.float64, jnp.bfloat16, "float32", "f8"])
_ANY_DTYPE = _mostly(_FLOAT_DTYPES, st.one_of(st.sampled_from([np.int32, np.uint8, bool, np.complex64, "int8",
                                                                "nope"]), _JUNK))
_DISTANCES = _mostly(st.one_of(st.floats(0, 10), st.floats(0, 1e40), st.integers(0, 10**40),
                               st.floats(0, 10).map(np.float32), st.floats(0, 10).map(np.asarray)),
                     st.one_of(st.floats(), _EXTREME, st.integers(-5, 5), _JUNK))


def _is_float_dtype(dtype):
    """None or a floating dtype that JAX has (numpy's float128 is not one)."""
    try:
        return dtype is None or jnp.issubdtype(jnp.zeros((), jnp.dtype(dtype)).dtype, jnp.floating)
    except Exception:  # noqa: BLE001
        return False


@_fuzz(300)
@given(_DISTANCES, _DISTANCES, _mostly(st.integers(1, 16), _SIZE_JUNK), _mostly(st.integers(1, 16), _SIZE_JUNK),
       _ANY_DTYPE)
def test_two_points_have_the_distances_asked_for_or_name_the_argument(dx2, dy2, in_dim, out_dim, dtype):
    result, err = _call(two_points, dx2, dy2, in_dim=in_dim, out_dim=out_dim, dtype=dtype)
    if err is not None:
        _expect_named_value_error(err, ["dx2", "dy2", "in_dim", "out_dim", "dtype"])
        return
    assert _is_float_dtype(dtype)
    x, y = (np.asarray(a, np.float64) for a in result)
    assert x.shape == (2, in_dim) and y.shape == (2, out_dim)
    assert result[0].dtype == result[1].dtype and jnp.issubdtype(result[0].dtype, jnp.floating)
    eps = float(jnp.finfo(result[0].dtype).eps)
    for points, d2 in ((x, float(dx2)), (y, float(dy2))):
        assert np.all(np.isfinite(points))
        measured = np.sum((points[1] - points[0]) ** 2)
        # each coordinate is rounded once to the dtype: an error of a few ulp of the coordinates
        scale = 1.0 + d2 + 2 * math.sqrt(d2)
        assert abs(measured - d2) <= 16 * eps * scale, (measured, d2)


@_fuzz(30)
@given(_ANY_DTYPE)
def test_xor_is_xor_in_any_float_dtype_or_names_dtype(dtype):
    result, err = _call(xor, dtype=dtype)
    if err is not None:
        _expect_named_value_error(err, ["dtype"])
        assert not _is_float_dtype(dtype)
        return
    x, y = (np.asarray(a) for a in result)
    np.testing.assert_array_equal(y[:, 0], np.logical_xor(x[:, 0], x[:, 1]))


@_fuzz(150)
@given(
    n_centers=_mostly(st.integers(1, 4), _SIZE_JUNK),
    n_pixels=_mostly(st.integers(1, 4), _SIZE_JUNK),
    sigma=_mostly(st.one_of(st.floats(0.01, 10), st.floats(0, 1e300), st.sampled_from([5e-324, 1e-160, 1e300])),
                  st.one_of(st.floats(), _EXTREME, _JUNK)),
    key=_mostly(st.none(), _KEYS),
    dtype=_ANY_DTYPE,
)
def test_context_blobs_are_normalised_blobs_or_name_the_argument(n_centers, n_pixels, sigma, key, dtype):
    result, err = _call(context_blobs, n_centers=n_centers, n_pixels=n_pixels, sigma=sigma, key=key, dtype=dtype)
    if err is not None:
        _expect_named_value_error(err, ["n_centers", "n_pixels", "sigma", "key", "dtype"])
        return
    assert key is None or _is_key(key)
    x, y = (np.asarray(a, np.float64) for a in result)
    m, p = n_centers**2, n_pixels**2
    assert x.shape == (2 * m, p + 2) and y.shape == (2 * m, 1)
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))
    assert np.all(x >= 0) and np.all(np.abs(y) <= 1)
    eps = float(jnp.finfo(result[0].dtype).eps)
    np.testing.assert_allclose(x[:, :p].sum(1), 1.0, rtol=0, atol=4 * p * eps + 1e-6)
    np.testing.assert_array_equal(x[:m, :p], x[m:, :p])


# --- IDX files --------------------------------------------------------------------------------

_IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@st.composite
def _idx_blobs(draw):
    """Random bytes, or an IDX header with random type, axes and sizes and a payload of about the right length."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=64))
    code = draw(st.one_of(st.sampled_from(sorted(_IDX_CODES)), st.integers(0, 255)))
    dims = draw(st.one_of(st.lists(st.integers(0, 3), max_size=4),
                          st.lists(st.sampled_from([0, 1, 2**16, 2**32 - 1]), max_size=4),
                          st.integers(60, 80).map(lambda k: [1] * k)))
    ndim = draw(st.one_of(st.just(len(dims)), st.integers(0, 255)))
    magic = draw(st.one_of(st.just(b"\x00\x00"), st.binary(min_size=2, max_size=2)))
    header = magic + bytes([code, ndim]) + struct.pack(f">{len(dims)}I", *dims)
    itemsize = np.dtype(_IDX_CODES.get(code, ">u1")).itemsize
    size = math.prod(dims) * itemsize if math.prod(dims) * itemsize < 256 else draw(st.integers(0, 64))
    size = max(0, size + draw(st.sampled_from([0, 0, 0, -1, 1, -itemsize, itemsize])))
    blob = header + draw(st.binary(min_size=size, max_size=size))
    how = draw(st.sampled_from(["plain", "plain", "gzip", "truncated gzip", "gzip magic"]))
    if how == "gzip":
        blob = gzip.compress(blob)
    elif how == "truncated gzip":
        blob = gzip.compress(blob)[: draw(st.integers(2, 30))]
    elif how == "gzip magic":
        blob = b"\x1f\x8b" + draw(st.binary(max_size=40))
    return blob


@pytest.fixture(scope="module")
def idx_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_idx") / "random-idx1-ubyte"


@_fuzz(300)
@given(blob=_idx_blobs())
def test_read_idx_returns_the_header_shape_or_names_the_file(idx_path, blob):
    idx_path.write_bytes(blob)
    a, err = _call(read_idx, idx_path)
    if err is not None:
        assert isinstance(err, ValueError), f"{type(err).__name__}: {err}"
        assert str(idx_path) in str(err), str(err)
        return
    data = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    assert data[:2] == b"\x00\x00" and a.shape == shape
    assert a.dtype == np.dtype(_IDX_CODES[data[2]]).newbyteorder("=")
    np.testing.assert_array_equal(a.astype(np.dtype(_IDX_CODES[data[2]])).tobytes(), data[4 + 4 * ndim :])
