"""Pairwise predictions: two-point end state on every pair, the MNIST structure heuristic, correlation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from rsd import quantities, theory

from .helpers import assert_close

ETA_H, ETA_Y = 0.3, 0.7


def _data(seed=0, n=6, d_in=4, hidden=5, d_out=3, scale=1.0):
    """Distance matrices of n random points, their targets, and a random linear network's h0, y0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in))
    targets = rng.normal(size=(n, d_out))
    enc = scale * rng.normal(size=(d_in, hidden))
    dec = scale * rng.normal(size=(hidden, d_out))
    d = lambda p: np.asarray(quantities.pairwise_squared_distances(p))  # noqa: E731
    return d(x), d(targets), d(x @ enc), d(x @ enc @ dec)


def test_equals_loop_over_final_distance(x64):
    dx2, dy2, h0, y0 = _data()
    predicted = np.asarray(theory.predicted_distance_matrix(dx2, dy2, h0, y0, ETA_H, ETA_Y))
    n = dx2.shape[0]
    expected = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                expected[i, j] = theory.final_distance(h0[i, j], y0[i, j], ETA_H, ETA_Y,
                                                       dx2[i, j], dy2[i, j])
    assert_close(predicted, expected, rtol=1e-13)
    assert np.all(np.diag(predicted) == 0.0)
    assert_close(predicted, predicted.T, rtol=0.0)
    # and the closed form of DESIGN.md §1 written out in numpy, pair by pair
    off = ~np.eye(n, dtype=bool)
    k = ETA_H * dx2[off] / ETA_Y
    c = h0[off] - k * y0[off] / h0[off]
    assert_close(predicted[off], c / 2 + np.sqrt(c**2 / 4 + k * dy2[off]), rtol=1e-9)


def test_rich_limit_is_the_geometric_mean(x64):
    """Small weights (scale s): h0 ~ s², y0 ~ s⁴; the prediction tends to sqrt(η_h/η_y·DX·DY)."""
    dx2, dy2, h0, y0 = _data()
    rich = np.sqrt(ETA_H / ETA_Y * dx2 * dy2)
    off = ~np.eye(dx2.shape[0], dtype=bool)
    errors = []
    for s in (1e-1, 1e-2, 1e-3, 1e-4):
        predicted = theory.predicted_distance_matrix(dx2, dy2, s**2 * h0, s**4 * y0, ETA_H, ETA_Y)
        errors.append(np.max(np.abs(np.asarray(predicted) - rich)[off] / rich[off]))
    # h∞ − rich ≈ C/2 = O(s²): each tenfold smaller scale shrinks the error ~100-fold
    # (measured 0.136, 1.28e-3, 1.28e-5, 1.28e-7).
    assert errors[-1] < 1e-6
    assert all(b < 2e-2 * a for a, b in zip(errors, errors[1:]))
    # At H0 = Y0 = 0 exactly the prediction is the rich limit (no NaN from y0/h0).
    zero = np.zeros_like(dx2)
    assert_close(theory.predicted_distance_matrix(dx2, dy2, zero, zero, ETA_H, ETA_Y), rich,
                 rtol=1e-14)


# --- the MNIST structure heuristic ------------------------------------------------------------------


def _heuristic_numpy(x, y):
    """exp(−A) @ A @ exp(−A), A = D_x ⊙ D_y (unsquared Euclidean), in float64 numpy."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    a = cdist(x, x) * cdist(y, y)
    e = np.exp(-a)
    return e @ a @ e


def _scaled_points(seed, n, d, k):
    """Random inputs and targets scaled so that A is O(1): exp(−A) spans most of (0, 1)."""
    rng = np.random.default_rng(seed)
    return 0.5 / np.sqrt(d) * rng.normal(size=(n, d)), rng.normal(size=(n, k)) / np.sqrt(k)


@pytest.mark.parametrize("d, k", [(5, 3), (100, 80)])  # differences / Gram trick for the distances
def test_structure_prediction_matches_numpy(x64, d, k):
    x, y = _scaled_points(0, 30, d, k)
    expected = _heuristic_numpy(x, y)
    a = cdist(x, x) * cdist(y, y)
    e_off = np.exp(-a)[~np.eye(30, dtype=bool)]
    assert e_off.min() < 0.5 and e_off.max() > 0.3 and np.ptp(e_off) > 0.15  # not trivially 0/1
    predicted = theory.structure_prediction(x, y)
    assert predicted.shape == (30, 30) and predicted.dtype == np.float64
    assert_close(predicted, expected, rtol=1e-11)


@pytest.mark.parametrize("d, k", [(5, 3), (100, 80)])
def test_structure_prediction_float32(d, k):
    x, y = _scaled_points(1, 40, d, k)
    predicted = theory.structure_prediction(x.astype(np.float32), y.astype(np.float32))
    assert predicted.dtype == np.float32
    # float32 round-off only (measured ≤ 4e-7 relative).
    assert_close(predicted, _heuristic_numpy(x, y).astype(np.float32), rtol=5e-6)


def test_structure_prediction_rows_equal_slicing(x64):
    x, y = _scaled_points(2, 300, 100, 4)  # n above one block of A (256 rows)
    full = _heuristic_numpy(x, y)
    rows = np.array([7, 0, 299, 7, 256, 255, 3])  # any order, repeats, both sides of a block edge
    got = theory.structure_prediction(x, y, rows=rows)
    assert got.shape == (7, 7)
    assert_close(got, full[np.ix_(rows, rows)], rtol=1e-11)
    assert_close(theory.structure_prediction(x, y, rows=[5]), full[5:6, 5:6], rtol=1e-11)


def test_structure_prediction_with_raw_pixels_sums_class_blocks():
    """Raw 0–255 pixels and one-hot labels: exp(−A) is exactly the same-label indicator,
    so P[i, j] = Σ A[a, b] over a in i's class and b in j's class (DESIGN.md §1)."""
    rng = np.random.default_rng(3)
    n = 60
    pixels = (rng.integers(0, 256, (n, 784)) * (rng.random((n, 784)) < 0.2)).astype(np.float32)
    labels = rng.integers(0, 10, n)
    y = np.eye(10, dtype=np.float32)[labels]
    a = cdist(pixels.astype(np.float64), pixels.astype(np.float64)) * cdist(y, y)
    expected = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            expected[i, j] = a[np.ix_(labels == labels[i], labels == labels[j])].sum()
    rows = np.argsort(labels[:20], kind="stable")
    assert_close(theory.structure_prediction(pixels, y), expected, rtol=1e-5)
    assert_close(theory.structure_prediction(pixels, y, rows=rows), expected[np.ix_(rows, rows)],
                 rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(x=np.zeros(5)), "x must be a .n, features. array"),
    (dict(y=np.zeros((4, 3))), "y must have one row per row of x"),
    (dict(y=np.full((5, 3), np.nan)), "y must be finite"),
    (dict(x=np.array([["a"] * 2] * 5)), "x must be a real numeric array"),
    (dict(x=np.zeros((0, 2)), y=np.zeros((0, 3))), "x must have at least one row"),
    (dict(rows=[0, 5]), r"rows must be indices in \[0, 4\]"),
    (dict(rows=[-1]), r"rows must be indices in \[0, 4\]"),
    (dict(rows=[[0, 1]]), "rows must be a non-empty 1-D array"),
    (dict(rows=[0.0, 1.0]), "rows must be a non-empty 1-D array"),
    (dict(rows=[]), "rows must be a non-empty 1-D array"),
])
def test_structure_prediction_rejects_bad_inputs(kwargs, message):
    args = dict(x=np.zeros((5, 2)), y=np.zeros((5, 3)))
    args.update(kwargs)
    rows = args.pop("rows", None)
    with pytest.raises(ValueError, match=message):
        theory.structure_prediction(args["x"], args["y"], rows=rows)


def test_lazy_limit_keeps_h0(x64):
    """A large encoder (h0 → S²·h0, y0 fixed): the representation barely moves, H∞ → H0."""
    dx2, dy2, h0, y0 = _data()
    off = ~np.eye(dx2.shape[0], dtype=bool)
    changes = []
    for big in (1e1, 1e2, 1e3):
        predicted = np.asarray(
            theory.predicted_distance_matrix(dx2, dy2, big * h0, y0, ETA_H, ETA_Y))
        changes.append(np.max(np.abs(predicted[off] / (big * h0[off]) - 1.0)))
    # The relative change is k·(dy2 − y0)/h0² + O(h0⁻⁴): 100-fold smaller per tenfold h0
    # (measured 5.5e-3, 5.5e-5, 5.5e-7).
    print("relative change of h in the lazy limit:", changes)
    assert changes[-1] < 1e-5
    assert all(b < 2e-2 * a for a, b in zip(changes, changes[1:]))


def test_degenerate_pairs_are_finite():
    """Duplicate inputs, equal targets and h0 = 0 give finite values and gradients."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    x[3] = x[0]                       # identical inputs: pair (0, 3)
    t = rng.normal(size=(5, 2)).astype(np.float32)
    t[2] = t[1]                       # identical targets: pair (1, 2), dy2 = 0
    d = lambda p: quantities.pairwise_squared_distances(jnp.asarray(p))  # noqa: E731
    dx2, dy2 = d(x), d(t)
    h0 = 0.01 * dx2
    y0 = 0.01 * h0
    h0 = h0.at[1, 4].set(0.0).at[4, 1].set(0.0)   # h0 = 0 with y0 > 0 (limit: 0)
    h0 = h0.at[2, 4].set(0.0).at[4, 2].set(0.0)   # h0 = y0 = 0 (limit: the rich one)
    y0 = y0.at[2, 4].set(0.0).at[4, 2].set(0.0)
    predicted = theory.predicted_distance_matrix(dx2, dy2, h0, y0, ETA_H, ETA_Y)
    assert bool(jnp.all(jnp.isfinite(predicted)))
    assert float(predicted[0, 3]) == 0.0 and float(predicted[3, 0]) == 0.0
    assert bool(jnp.all(jnp.diag(predicted) == 0.0))
    assert float(predicted[1, 4]) == 0.0
    assert_close(predicted[2, 4], theory.rich_limit(ETA_H, ETA_Y, dx2[2, 4], dy2[2, 4]), rtol=1e-6)
    # dy2 = 0: the formula's value, C (> 0 here, as y0 ≪ h0: the pair stays apart).
    c = theory.invariant(jnp.stack([h0[1, 2], y0[1, 2], 0.0]), ETA_H, ETA_Y, dx2[1, 2])
    assert float(c) > 0
    assert_close(predicted[1, 2], c, rtol=1e-6)

    grads = jax.jit(jax.grad(lambda *a: jnp.sum(theory.predicted_distance_matrix(*a)),
                             argnums=(0, 1, 2, 3, 4, 5)))(dx2, dy2, h0, y0, ETA_H, ETA_Y)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_matrix_correlation_matches_numpy():
    dx2, dy2, h0, _ = _data(seed=2, n=7)
    rng = np.random.default_rng(3)
    measured = h0 + 0.5 * rng.normal(size=h0.shape)     # not symmetric: upper triangle counts
    iu = np.triu_indices(7, k=1)
    for predicted in (np.sqrt(dx2 * dy2), dx2):
        r = theory.matrix_correlation(predicted, measured)
        expected = np.corrcoef(np.asarray(predicted)[iu], measured[iu])[0, 1]
        assert_close(r, expected, rtol=1e-5)
    assert_close(theory.matrix_correlation(h0, 2.0 * h0 + 1.0), 1.0, rtol=1e-5)
    assert_close(theory.matrix_correlation(h0, -h0), -1.0, rtol=1e-5)
    # A constant triangle has no correlation: NaN, as numpy gives, with finite gradients.
    assert np.isnan(float(theory.matrix_correlation(h0, np.ones_like(h0))))
    g = jax.grad(lambda a: theory.matrix_correlation(a, jnp.ones_like(a)))(jnp.asarray(h0))
    assert bool(jnp.all(jnp.isfinite(g)))


def test_jit_and_vmap_over_rates_equal_eager_loop():
    dx2, dy2, h0, y0 = (jnp.asarray(a, jnp.float32) for a in _data(seed=4))
    rates = jnp.asarray([[0.1, 1.0], [1.0, 0.1], [0.5, 0.5]], jnp.float32)
    batched = jax.jit(jax.vmap(theory.predicted_distance_matrix, in_axes=(None,) * 4 + (0, 0)))(
        dx2, dy2, h0, y0, rates[:, 0], rates[:, 1])
    for b, (eh, ey) in enumerate(rates):
        assert_close(batched[b], theory.predicted_distance_matrix(dx2, dy2, h0, y0, eh, ey),
                     rtol=1e-6)
    r = jax.jit(jax.vmap(theory.matrix_correlation, in_axes=(0, None)))(batched, h0)
    assert_close(r, jnp.stack([theory.matrix_correlation(m, h0) for m in batched]), rtol=1e-6)


def _good():
    dx2, dy2, h0, y0 = _data()
    return dict(dx2=dx2, dy2=dy2, h0=h0, y0=y0, eta_h=ETA_H, eta_y=ETA_Y)


def _asymmetric(m):
    m = m.copy()
    m[0, 1] += 1.0
    return m


@pytest.mark.parametrize("name, bad", [
    ("dx2", lambda m: -m),
    ("dy2", _asymmetric),
    ("h0", lambda m: m[:-1]),
    ("y0", lambda m: m[:-1, :-1]),
    ("h0", lambda m: np.where(np.eye(len(m)) > 0, np.nan, m)),
    ("eta_h", lambda v: 0.0),
    ("eta_y", lambda v: -1.0),
])
def test_bad_inputs_raise(name, bad):
    args = _good()
    args[name] = bad(args[name])
    with pytest.raises(ValueError, match=name):
        theory.predicted_distance_matrix(**args)


def test_bad_correlation_inputs_raise():
    dx2, dy2, h0, _ = _data()
    with pytest.raises(ValueError, match="measured"):
        theory.matrix_correlation(h0, h0[:-1, :-1])
    with pytest.raises(ValueError, match="predicted"):
        theory.matrix_correlation(h0[:2, :2], h0[:2, :2])
    with pytest.raises(ValueError, match="measured"):
        theory.matrix_correlation(h0, np.full_like(h0, np.inf))


def test_rates_must_be_scalars():
    m = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.5], [2.0, 1.5, 0.0]])
    with pytest.raises(ValueError, match="eta_h must be a scalar"):
        theory.predicted_distance_matrix(m, m, m, m, np.array([1.0, 2.0, 3.0]), 1.0)
    with pytest.raises(ValueError, match="eta_y must be a scalar"):
        theory.predicted_distance_matrix(m, m, m, m, 1.0, np.ones(3))


def test_wrong_types_raise_naming_the_argument():
    m = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.5], [2.0, 1.5, 0.0]])
    with pytest.raises(ValueError, match="dx2 must be a real numeric array"):
        theory.predicted_distance_matrix("m", m, m, m, 1.0, 1.0)
    with pytest.raises(ValueError, match="y0 must be a real numeric array"):
        theory.predicted_distance_matrix(m, m, m, m.astype(bool), 1.0, 1.0)
    with pytest.raises(ValueError, match="eta_y must be a real numeric array"):
        theory.predicted_distance_matrix(m, m, m, m, 1.0, "fast")
    with pytest.raises(ValueError, match="measured must be a numeric array"):
        theory.matrix_correlation(m, [[1.0], [1.0, 2.0]])
