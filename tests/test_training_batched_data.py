"""Per-seed data: each seed trains on its own data set, all in one compiled program."""

import jax.numpy as jnp
import numpy as np
import pytest

from rsd.data import two_points
from rsd.training import Setting, train
from rsd.training import _engine

from .helpers import assert_close

SMALL = Setting(width=16, depth=3, gain=1.0, lr=0.05, steps=40)
KEYS = ("h", "y", "w", "loss", "e0", "status", "diverged_step", "stop_step")
# A 3 × 2 grid of two-point data sets (the final-distance experiment uses 5 × 5).
GRID = [(dx**2, dy**2) for dx in (0.5, 1.0, 1.5) for dy in (0.5, 1.0)]


def _grid_data(grid=GRID):
    xs, ys = zip(*(two_points(dx2, dy2) for dx2, dy2 in grid))
    return xs, ys


def _row(run, k):
    return {name: np.asarray(getattr(run, name))[k] for name in KEYS}


def test_per_seed_data_equals_a_loop_of_train_calls():
    """Seed k on data set k equals training that seed on data set k alone.

    Against a loop with the same seeds and chunking the result is bitwise equal: with
    two-point data and in_dim = 1, the only computations the data axis changes are the
    first layer's forward product (a contraction over in_dim = 1) and its weight
    gradient (a sum over the n = 2 points), both exact whatever the order. Against a
    one-seed call (another batch size, so another program) it agrees to float32
    round-off only (DESIGN.md §5, the determinism promise of ``train``).
    """
    xs, ys = _grid_data()
    seeds = [3, 1, 4, 1, 5, 9]  # a repeated seed on other data is a different run
    # chunk_size 4: two chunks, the second padded with the last seed and its data.
    run = train(SMALL, jnp.stack(xs), jnp.stack(ys), seeds=seeds, chunk_size=4)
    assert run.h.shape == (6, SMALL.steps, SMALL.depth)
    assert run.dx2.shape == run.dy2.shape == (6,)
    assert_close(run.dx2, np.array([dx2 for dx2, _ in GRID], np.float32), rtol=1e-6)
    assert_close(run.dy2, np.array([dy2 for _, dy2 in GRID], np.float32), rtol=1e-6, atol=1e-7)
    for k, seed in enumerate(seeds):
        shared = train(SMALL, xs[k], ys[k], seeds=seeds, chunk_size=4)
        for name in KEYS:
            np.testing.assert_array_equal(_row(run, k)[name], _row(shared, k)[name],
                                          err_msg=f"data set {k}, {name}")
    for k in (0, 5):
        alone = train(SMALL, xs[k], ys[k], seeds=[seeds[k]])
        assert_close(_row(run, k), _row(alone, 0), rtol=1e-6, atol=1e-7, err_msg=f"set {k}")
    # data sets 1 and 3 share seed 1 but not the data: different trajectories
    assert not np.allclose(np.asarray(run.h[1]), np.asarray(run.h[3]))


def test_grid_of_data_sets_is_compiled_once():
    s = SMALL.replace(width=13, steps=12)  # a structure no other test compiles
    xs, ys = _grid_data()
    before = _engine._TRACES
    first = train(s, jnp.stack(xs), jnp.stack(ys), seeds=range(6), chunk_size=2)
    assert _engine._TRACES == before + 1  # three chunks, one program
    other = [(dx2 + 0.1, 2 * dy2) for dx2, dy2 in GRID]
    xs2, ys2 = _grid_data(other)
    second = train(s, jnp.stack(xs2), jnp.stack(ys2), seeds=range(6), chunk_size=2)
    assert _engine._TRACES == before + 1
    assert not np.allclose(np.asarray(first.loss), np.asarray(second.loss))


def test_shared_x_with_per_seed_y_equals_fully_per_seed_data():
    xs, ys = _grid_data([(1.0, dy2) for dy2 in (0.1, 0.5, 1.0)])
    a = train(SMALL, xs[0], jnp.stack(ys), seeds=[0, 1, 2])
    b = train(SMALL, jnp.stack(xs), jnp.stack(ys), seeds=[0, 1, 2])
    for k in range(3):
        np.testing.assert_array_equal(_row(a, k)["loss"], _row(b, k)["loss"])
        np.testing.assert_array_equal(_row(a, k)["h"], _row(b, k)["h"])
    assert a.dx2.shape == (3,)
    assert_close(a.dy2, np.array([0.1, 0.5, 1.0], np.float32), rtol=1e-6)


@pytest.mark.parametrize(
    "x_shape,y_shape,match",
    [
        ((3, 2, 1), (2, 1), r"x must have shape \[n, in_dim\].*\[S=2, n, in_dim\]"),
        ((2, 1), (1, 2, 1), r"y must have shape \[n, out_dim\].*\[S=2, n, out_dim\]"),
        ((2, 2, 1, 1), (2, 1), "x must have shape"),
        ((2, 2, 1), (2, 3, 1), "same n"),
        ((2, 2, 3), (2, 2, 1), "in_dim"),
    ],
)
def test_bad_per_seed_data_shapes_raise(x_shape, y_shape, match):
    with pytest.raises(ValueError, match=match):
        train(SMALL, np.zeros(x_shape), np.zeros(y_shape), seeds=[0, 1])


def test_non_numeric_data_raise_naming_the_argument():
    x, y = two_points(1.0, 0.5)
    with pytest.raises(ValueError, match="x must be a numeric array"):
        train(SMALL, "data.csv", y, seeds=[0])
    with pytest.raises(ValueError, match="y must be a numeric array"):
        train(SMALL, x, [["a"], ["b"]], seeds=[0])
    with pytest.raises(ValueError, match="tracked must be a numeric array"):
        train(SMALL, x, y, seeds=[0], tracked={"a": 1})
