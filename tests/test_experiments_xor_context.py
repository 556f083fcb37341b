"""The XOR and context-blob experiments end to end at the tiny size, through the real code.

The session fixture (conftest) runs both in one tiny ``rsd reproduce``; the tests
recompute their metrics from the saved arrays with numpy (correlations, ratios, least
squares), the XOR prediction from the closed form, and check the protocols' settings.
"""

import dataclasses
import json

import numpy as np
import pytest

from rsd import data, theory
from rsd.experiments import context, two_points, xor


@pytest.fixture(scope="module")
def out(reproduced_tiny):
    """The session's tiny ``rsd reproduce`` folder (conftest), which holds both runs."""
    return reproduced_tiny


def _npz(out, name):
    with np.load(out / name / "result.npz") as f:
        return {k.replace("__", "/"): f[k] for k in f.files}


def _metrics(out, name):
    return json.loads((out / name / "metrics.json").read_text())


def _closed_form(h0, y0, eta_h, eta_y, dx2, dy2):
    """h∞ = C/2 + sqrt(C²/4 + k·dy2), C = h0 − k·y0/h0, k = η_h·dx2/η_y (float64)."""
    k = eta_h * dx2 / eta_y
    c = h0 - k * y0 / h0
    return c / 2 + np.sqrt(c**2 / 4 + k * dy2)


# --------------------------------------------------------------------------- XOR


def test_xor_metric_names_and_files(out):
    m = _metrics(out, "xor")
    for regime in ("rich", "intermediate", "lazy", "shallow"):
        for key in ("pearson_r", "same_over_different_measured", "same_over_different_predicted"):
            assert f"{regime}/{key}" in m
    config = json.loads((out / "xor" / "config.json").read_text())
    assert set(config["figures"]) == {"rich", "intermediate", "lazy", "shallow", "loss"}
    for fig in config["figures"]:
        assert (out / "xor" / f"{fig}.png").stat().st_size > 1000


def test_xor_data_distances_and_same_pairs(out):
    a = _npz(out, "xor")
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    t = np.array([0, 1, 1, 0], float)
    np.testing.assert_array_equal(a["dx2"], ((x[:, None] - x[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(a["dy2"], (t[:, None] - t[None]) ** 2)
    same = [(i, j) for i in range(4) for j in range(i + 1, 4) if a["dy2"][i, j] == 0]
    assert same == [(0, 3), (1, 2)]  # 00~11 and 01~10


def test_xor_metrics_recomputed_from_saved_matrices(out):
    a, m = _npz(out, "xor"), _metrics(out, "xor")
    max_loss = xor.Config.for_size("tiny").max_final_loss
    i, j = np.triu_indices(4, k=1)
    same = a["dy2"][i, j] == 0
    checked = 0
    for regime in xor.Config.for_size("tiny").regimes:
        meas, pred = a[f"{regime}/measured"], a[f"{regime}/predicted"]
        loss = a[f"{regime}/loss"]
        used = (a[f"{regime}/trained"] & (loss[:, -1] <= max_loss)
                & np.all(np.isfinite(meas), (1, 2)) & np.all(np.isfinite(pred), (1, 2)))
        np.testing.assert_array_equal(a[f"{regime}/used"], used)
        assert m[f"{regime}/seeds_used"] == used.sum()
        rs, som, sop = [], [], []
        for s in np.flatnonzero(used):
            p, q = pred[s][i, j], meas[s][i, j]
            rs.append(np.corrcoef(p, q)[0, 1])
            som.append(q[same].mean() / q[~same].mean())
            sop.append(p[same].mean() / p[~same].mean())
        for key, values in (("pearson_r", rs), ("same_over_different_measured", som),
                            ("same_over_different_predicted", sop)):
            values = np.asarray(values)
            values = values[np.isfinite(values)]
            if values.size:
                np.testing.assert_allclose(m[f"{regime}/{key}"], values.mean(), rtol=1e-6)
                checked += 1
            else:
                assert np.isnan(m[f"{regime}/{key}"])
    assert checked >= 6


def test_xor_prediction_is_the_closed_form_on_every_pair(out):
    a = _npz(out, "xor")
    eta_h, eta_y = a["rates"]
    assert np.isfinite(eta_h) and np.isfinite(eta_y) and eta_h > 0 and eta_y > 0
    np.testing.assert_allclose([eta_h, eta_y], [_metrics(out, "xor")["eta_h"], _metrics(out, "xor")["eta_y"]])
    i, j = np.triu_indices(4, k=1)
    dx2, dy2 = a["dx2"][i, j], a["dy2"][i, j]
    for regime in xor.Config.for_size("tiny").regimes:
        h0, y0, pred = a[f"{regime}/h0"], a[f"{regime}/y0"], a[f"{regime}/predicted"]
        for s in range(pred.shape[0]):
            np.testing.assert_array_equal(pred[s], pred[s].T)
            np.testing.assert_array_equal(np.diag(pred[s]), 0)
            hs, ys = h0[s][i, j].astype(float), y0[s][i, j].astype(float)
            k = eta_h * dx2 / eta_y
            c = hs - k * ys / hs
            # Different targets: the closed form; equal targets (dy2 = 0): max(C, 0).
            expected = np.where(dy2 > 0, _closed_form(hs, ys, eta_h, eta_y, dx2, dy2), np.maximum(c, 0))
            scale = np.max(np.abs(expected))
            np.testing.assert_allclose(pred[s][i, j], expected, rtol=1e-4, atol=1e-6 * scale)
            moving = dy2 > 0
            lib = np.asarray(theory.final_distance(hs[moving], ys[moving], float(eta_h), float(eta_y),
                                                   dx2[moving], dy2[moving]))
            np.testing.assert_allclose(pred[s][i, j][moving], lib, rtol=1e-4, atol=1e-6 * scale)


def test_xor_measured_matrices_are_distance_matrices_of_the_run(out):
    a = _npz(out, "xor")
    for regime in xor.Config.for_size("tiny").regimes:
        for name in ("h0", "y0", "measured", "measured_output"):
            mats = a[f"{regime}/{name}"]
            np.testing.assert_array_equal(mats, np.swapaxes(mats, 1, 2))
            np.testing.assert_array_equal(np.diagonal(mats, axis1=1, axis2=2), 0)
        # Training moved the representation (the lazy row's lr barely does at width 16).
        if regime != "lazy":
            assert not np.allclose(a[f"{regime}/h0"], a[f"{regime}/measured"])


def test_xor_prediction_for_a_hand_built_pair():
    """Points 01 and 10 with hand-set h0, y0: the XOR path's h∞ is the two-point closed form."""
    x, y = data.xor()
    dx2 = np.sum((np.asarray(x, float)[:, None] - np.asarray(x, float)[None]) ** 2, -1)
    dy2 = np.sum((np.asarray(y, float)[:, None] - np.asarray(y, float)[None]) ** 2, -1)
    h0 = np.full((4, 4), 0.3)
    y0 = np.full((4, 4), 0.02)
    h0[0, 1] = h0[1, 0] = 0.7  # 00–01: different targets, dx2 = 1, dy2 = 1
    y0[0, 1] = y0[1, 0] = 0.05
    np.fill_diagonal(h0, 0)
    np.fill_diagonal(y0, 0)
    eta_h, eta_y = 2e-3, 5e-3
    pred = xor._predict(dx2, dy2, h0, y0, eta_h, eta_y)
    k = eta_h * 1.0 / eta_y
    c = 0.7 - k * 0.05 / 0.7
    expected = c / 2 + np.sqrt(c * c / 4 + k * 1.0)
    np.testing.assert_allclose(pred[0, 1], expected, rtol=1e-6)
    np.testing.assert_allclose(pred[0, 1], float(theory.final_distance(0.7, 0.05, eta_h, eta_y, 1.0, 1.0)),
                               rtol=1e-6)
    # 00–11: equal targets, dx2 = 2: max(C, 0) with C = h0 − k·y0/h0.
    c_same = 0.3 - eta_h * 2.0 / eta_y * 0.02 / 0.3
    np.testing.assert_allclose(pred[0, 3], max(c_same, 0.0), rtol=1e-6)
    # Without usable rates nothing is predicted (NaN, never an exception).
    assert np.all(np.isnan(xor._predict(dx2, dy2, h0, y0, float("nan"), eta_y)))


def test_xor_ratio_counts_only_the_upper_triangle():
    same = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1]], bool)
    i, j = np.indices((4, 4))
    m = np.where(i < j, i * j + 1.0, 100.0)  # the lower triangle and diagonal must not count
    # same pairs (0,3), (1,2): 1, 3; different (0,1), (0,2), (1,3), (2,3): 1, 1, 4, 7
    assert xor.same_over_different(m, same) == pytest.approx(2 / (13 / 4))


def test_xor_quirks_and_paper_protocol():
    on = xor.Config.for_size("paper")
    assert on.quirks
    s = on.setting("rich")
    assert (s.activation, s.loss, s.width, s.depth, s.layers, s.lr, s.steps, s.batch_size) == \
        ("relu", "mse", 500, 20, (10,), 0.015, 3000, None)
    s = on.setting("shallow")
    assert (s.activation, s.width, s.depth, s.layers, s.gain, s.lr, s.steps) == \
        ("relu", 500, 1, (0,), 0.0015, 0.03, 2000)
    off = dataclasses.replace(on, quirks=False).setting("rich")
    assert (off.activation, off.loss) == ("leaky_relu", "half_mse")
    assert {on.setting(r).gain for r in on.regimes} == {0.85, 1.25, 2.0, 0.0015}
    # Quick caps the width at two-points' quick width, so the reused rates match it.
    quick = xor.Config.for_size("quick")
    assert quick.setting("rich").width == two_points.Config.for_size("quick").setting("default").width
    assert quick.setting("rich").depth == 20
    tiny = xor.Config.for_size("tiny").setting("rich")
    assert tiny.depth == 4 and tiny.layers == (2,)  # layer 10 of 20 → 2 of 4


def test_xor_rates_come_from_upstream_or_config(monkeypatch):
    config = dataclasses.replace(xor.Config.for_size("tiny"), regimes=("rich",), seeds=1, steps=5)
    assert xor.needs(config) == {"two-points": two_points.Config.for_size("tiny")}

    def no_fit(*args, **kwargs):
        raise AssertionError("two-points must not run when rates are available")

    monkeypatch.setattr(two_points, "run", no_fit)
    # two-points' per-seed results table: the rates are the means over its kept seeds.
    table = {"row": ["default", "default", "default", "tanh"], "seed": [0, 1, 2, 0],
             "eta_h": [1e-3, 2e-3, 5.0, 7.0], "eta_y": [4e-3, 6e-3, 5.0, 7.0],
             "kept": [True, True, False, True]}
    result = xor.run(config, upstream={"two-points": table})
    np.testing.assert_allclose([result.eta_h, result.eta_y], [1.5e-3, 5e-3], rtol=1e-6)
    assert "results table" in result.rates_source
    given = dataclasses.replace(config, eta_h=2e-3, eta_y=3e-3)
    assert xor.needs(given) == {}
    ran = xor.run(given)
    assert (ran.eta_h, ran.eta_y) == (2e-3, 3e-3)


def test_xor_config_validation():
    with pytest.raises(ValueError, match="seeds"):
        xor.Config(seeds=0)
    with pytest.raises(ValueError, match="eta_h and eta_y"):
        xor.Config(eta_h=1e-3)
    with pytest.raises(ValueError, match="eta_y"):
        xor.Config(eta_h=1e-3, eta_y=-1.0)
    with pytest.raises(ValueError, match="size"):
        xor.Config(rates_size="huge")
    with pytest.raises(ValueError, match="unknown row 'medium'"):
        xor.Config(regimes=("medium",))
    with pytest.raises(ValueError, match="quirks"):
        xor.Config(quirks="yes")
    with pytest.raises(ValueError, match="max_final_loss"):
        xor.Config(max_final_loss=0.0)
    assert len({xor.Config.for_size(s) for s in ("tiny", "quick", "paper")}) == 3


# --------------------------------------------------------------------------- context


def test_context_metric_names_and_files(out):
    m = _metrics(out, "context")
    for regime in ("high", "low", "very_low"):
        for key in ("context_variance_fraction", "x_readout_r2", "y_readout_r2", "xy_angle_deg"):
            assert f"{regime}/{key}" in m
    config = json.loads((out / "context" / "config.json").read_text())
    assert set(config["figures"]) == {"high", "low", "very_low", "loss"}


def test_context_labels_are_the_blob_centres(out):
    a = _npz(out, "context")
    n = context.Config.for_size("tiny").n_centers
    grid = np.linspace(-1, 1, n)
    idx = np.arange(n * n)
    # Centres: μx the outer, μy the inner loop; every blob twice (x context, then y context).
    np.testing.assert_allclose(a["x_position"], np.tile(grid[idx // n], 2), atol=1e-6)
    np.testing.assert_allclose(a["y_position"], np.tile(grid[idx % n], 2), atol=1e-6)
    np.testing.assert_array_equal(a["context"], np.repeat([0, 1], n * n))
    x, y = data.context_blobs(n_centers=n)
    target = np.where(a["context"] == 0, a["x_position"], a["y_position"])
    np.testing.assert_allclose(np.asarray(y)[:, 0], target, atol=1e-6)


def _explained(h, t):
    design = np.stack([t, np.ones_like(t)], 1)
    coef = np.linalg.lstsq(design, h, rcond=None)[0]
    return 1 - np.sum((h - design @ coef) ** 2) / np.sum((h - h.mean(0)) ** 2)


def test_context_metrics_recomputed_from_saved_representations(out):
    a, m = _npz(out, "context"), _metrics(out, "context")
    ctx, xp, yp = a["context"], a["x_position"].astype(float), a["y_position"].astype(float)
    for regime in context.Config.for_size("tiny").regimes:
        hidden, trained = a[f"{regime}/hidden"].astype(float), a[f"{regime}/trained"]
        assert trained.any()
        per_seed = {k: [] for k in ("context_variance_fraction", "x_readout_r2", "y_readout_r2",
                                    "xy_angle_deg", "target_variance_fraction",
                                    "irrelevant_variance_fraction")}
        for s in np.flatnonzero(trained):
            h = hidden[s]
            mean = h.mean(0)
            total = sum(np.sum((row - mean) ** 2) for row in h)
            between = sum((ctx == k).sum() * np.sum((h[ctx == k].mean(0) - mean) ** 2) for k in (0, 1))
            per_seed["context_variance_fraction"].append(between / total)
            design = np.concatenate([h, np.ones((h.shape[0], 1))], 1)
            weights = {}
            for name, t in (("x", xp), ("y", yp)):
                coef, *_ = np.linalg.lstsq(design, t, rcond=None)
                per_seed[f"{name}_readout_r2"].append(1 - np.sum((t - design @ coef) ** 2)
                                                      / np.sum((t - t.mean()) ** 2))
                weights[name] = coef[:-1]
            cos = weights["x"] @ weights["y"] / np.linalg.norm(weights["x"]) / np.linalg.norm(weights["y"])
            per_seed["xy_angle_deg"].append(np.degrees(np.arccos(cos)))
            per_seed["target_variance_fraction"].append(_explained(h, np.where(ctx == 0, xp, yp)))
            per_seed["irrelevant_variance_fraction"].append(
                (_explained(h[ctx == 0], yp[ctx == 0]) + _explained(h[ctx == 1], xp[ctx == 1])) / 2)
        for key, values in per_seed.items():
            np.testing.assert_allclose(a[f"{regime}/{key}"][trained], values, rtol=1e-6, atol=1e-6,
                                       err_msg=f"{regime}/{key}")
            np.testing.assert_allclose(m[f"{regime}/{key}"], np.mean(values), rtol=1e-6, atol=1e-6)
        assert m[f"{regime}/seeds_used"] == trained.sum()


def test_context_metrics_on_constructed_representations():
    """Known answers: a representation that is context ⊕ position, and one that is the target."""
    rng = np.random.default_rng(0)
    n = 200
    ctx = np.repeat([0, 1], n // 2)
    # Every blob in both contexts (as in the task), so the positions' context means agree.
    xp, yp = np.tile(rng.uniform(-1, 1, n // 2), 2), np.tile(rng.uniform(-1, 1, n // 2), 2)
    # Orthogonal directions: context on e0 (±3), x on e1, y on e2.
    h = np.zeros((n, 5))
    h[:, 0], h[:, 1], h[:, 2] = 3.0 * (2 * ctx - 1), xp, yp
    got = context.representation_metrics(h, ctx, xp, yp)
    between = 9.0 * n
    np.testing.assert_allclose(got["context_variance_fraction"],
                               between / (between + n * (xp.var() + yp.var())), rtol=1e-10)
    np.testing.assert_allclose([got["x_readout_r2"], got["y_readout_r2"]], [1.0, 1.0], rtol=1e-10)
    np.testing.assert_allclose(got["xy_angle_deg"], 90.0, atol=1e-8)
    target = np.where(ctx == 0, xp, yp)
    got = context.representation_metrics(np.stack([target, 2 * target], 1), ctx, xp, yp)
    np.testing.assert_allclose(got["target_variance_fraction"], 1.0, rtol=1e-10)
    assert got["irrelevant_variance_fraction"] < 0.1


def test_context_mds_embeds_the_first_seeds_representation(out):
    a = _npz(out, "context")
    for regime in context.Config.for_size("tiny").regimes:
        s = int(a[f"{regime}/mds_seed_index"])
        h = a[f"{regime}/hidden"][s][a["mds_index"]].astype(float)
        e = a[f"{regime}/mds"]
        i, j = np.triu_indices(h.shape[0], k=1)
        d_h = np.linalg.norm(h[i] - h[j], axis=1)
        d_e = np.linalg.norm(e[i] - e[j], axis=1)
        # Metric MDS preserves distances in scale (not only in rank).
        assert np.corrcoef(d_h, d_e)[0, 1] > 0.9, regime
        np.testing.assert_allclose(np.median(d_e / d_h), 1.0, rtol=0.2)


def test_context_protocol_and_quirks():
    paper = context.Config.for_size("paper")
    gains = {r: paper.setting(r).gain for r in paper.regimes}
    assert gains == {"high": 2.0, "low": 0.5, "very_low": 0.275}
    for regime, (lr, epochs) in {"high": (0.0015, 750), "low": (0.015, 1500),
                                 "very_low": (0.05, 2000)}.items():
        s = paper.setting(regime)
        assert (s.width, s.depth, s.layers, s.batch_size, s.lr, s.optimizer) == (100, 4, (2,), 64, lr, "sgd")
        assert s.activation == "leaky_relu"  # the quirk: the table's tanh is never passed
        assert s.steps == epochs * 29  # ceil(1800 / 64) = 29 minibatches an epoch
    clean = dataclasses.replace(paper, quirks=False).setting("low")
    assert (clean.activation, clean.batch_size) == ("tanh", 64)
    assert paper.n_points == 1800 and paper.mds_points is None
    quick = context.Config.for_size("quick")
    assert quick.n_points == 1800 and all(quick.epochs(r) == paper.epochs(r) for r in quick.regimes)


def test_context_config_validation():
    with pytest.raises(ValueError, match="epoch_fraction"):
        context.Config(epoch_fraction=0.0)
    with pytest.raises(ValueError, match="n_centers"):
        context.Config(n_centers=1)
    with pytest.raises(ValueError, match="depth"):
        context.Config(depth=2)
    with pytest.raises(ValueError, match="mds_points"):
        context.Config(mds_points=2)
    with pytest.raises(ValueError, match="unknown row 'medium'"):
        context.Config(regimes=("medium",))
    with pytest.raises(ValueError, match="quirks"):
        context.Config(quirks=1)
    assert len({context.Config.for_size(s) for s in ("tiny", "quick", "paper")}) == 3
