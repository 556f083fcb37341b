"""The universality atlas: its learning-rate rule against the paper's table, its shipped
spec, and one tiny run end to end through the real sweep, checked against a separate
``train`` of one of its cells and against its own table."""

from pathlib import Path

import numpy as np
import pytest

import rsd
from rsd import sweeps, training
from rsd.experiments import atlas


def _row(name):
    return training.PAPER_TABLES["2_points"][name]


@pytest.mark.parametrize("name", ["gain_0.9", "default", "gain_1.1", "gain_1.2", "gain_1.3",
                                  "gain_1.4", "gain_1.6"])
def test_rule_gives_the_tables_gain_rows_at_depth_20(name):
    row = _row(name)  # leaky_relu rows, depth 20; rsd halves the two-point lr
    assert atlas.paper_lr("leaky_relu", row.gain, 20) == pytest.approx(row.lr / 2, rel=2e-3)


@pytest.mark.parametrize("activation, name", [("tanh", "tanh"), ("elu", "elu"),
                                              ("silu", "swish"), ("relu", "relu"),
                                              ("none", "linear")])
def test_rule_gives_each_activations_own_row(activation, name):
    row = _row(name)
    assert atlas.paper_lr(activation, row.gain, 20) == pytest.approx(row.lr / 2, rel=2e-3)


def test_rule_keeps_saturating_rows_and_lowers_homogeneous_lr_as_gain_grows():
    assert atlas.paper_lr("tanh", 1.2, 8) == pytest.approx(_row("tanh").lr / 2)
    for depth in (4, 8, 20):
        lrs = [atlas.paper_lr("leaky_relu", g, depth) for g in (0.9, 1.0, 1.1, 1.2)]
        assert all(a > b for a, b in zip(lrs, lrs[1:]))
    # gain 1.1 at depth 10 has the total scale of gain 1.1^(1/2) at depth 20
    assert atlas.paper_lr("leaky_relu", 1.1, 10) == pytest.approx(
        atlas.paper_lr("leaky_relu", 1.1 ** 0.5, 20), rel=2e-3)


def test_shipped_spec_is_the_quick_atlas():
    path = Path(rsd.__file__).parent / "sweeps" / "examples" / "atlas.toml"
    quick = atlas.Config.for_size("quick")
    assert path.read_text() == atlas.spec_toml(quick)
    assert sweeps.load_spec(path).spec_hash == sweeps.parse_spec(atlas.spec(quick)).spec_hash


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="activations entries"):
        atlas.Config(activations=("sigmoid",))
    with pytest.raises(ValueError, match="widths must be a non-empty list"):
        atlas.Config(widths=())
    with pytest.raises(ValueError, match="gains entries"):
        atlas.Config(gains=(0.0,))


@pytest.fixture(scope="module")
def tiny():
    return atlas.run(atlas.Config.for_size("tiny"))


def test_tiny_atlas_runs_every_cell_as_train_would(tiny):
    cfg = tiny.config
    t = tiny.table
    cells = len(cfg.widths) * len(cfg.depths) * len(cfg.activations) * len(cfg.gains)
    assert len(t["seed"]) == cells * cfg.seeds
    for act, depth, gain, lr in zip(t["activation"], t["depth"], t["gain"], t["lr"]):
        assert lr == atlas.paper_lr(str(act), float(gain), int(depth))
    assert np.all(t["layer"] == t["depth"] // 2)
    # One element against a separate train of its cell's setting.
    k = int(np.flatnonzero((t["width"] == cfg.widths[-1]) & np.isclose(t["gain"], cfg.gains[-1])
                           & (t["seed"] == 1))[0])
    setting = training.Setting.from_paper("2_points", "default").replace(
        width=int(t["width"][k]), depth=int(t["depth"][k]), activation=str(t["activation"][k]),
        gain=float(t["gain"][k]), lr=float(t["lr"][k]), steps=cfg.steps, layers=(int(t["layer"][k]),))
    x, y = rsd.data.two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim,
                               out_dim=setting.out_dim)
    run = training.train(setting, x, y, seeds=[1])
    np.testing.assert_allclose(t["final_h"][k], float(run.h[0, -1, 0]), rtol=1e-5)
    np.testing.assert_allclose(t["final_loss"][k], float(run.loss[0, -1]), rtol=1e-5)


def test_tiny_atlas_metrics_and_figures_come_from_its_table(tiny):
    cfg = tiny.config
    m = atlas.metrics(tiny)
    t = tiny.table
    for act in cfg.activations:
        for gain in cfg.gains:
            for depth in cfg.depths:
                for width in cfg.widths:
                    rows = (t["activation"] == act) & np.isclose(t["gain"], gain) & \
                        (t["depth"] == depth) & (t["width"] == width) & (t["train_status"] == 0)
                    r2 = np.min([t["r2_h"][rows], t["r2_y"][rows], t["r2_w"][rows]], axis=0)
                    key = f"{act}/g{gain:g}/L{depth}/P{width}"
                    # medians over the seeds that trained and were fitted (NaN: not fitted)
                    assert m[f"fit_r2/{key}"] == pytest.approx(float(np.nanmedian(r2)),
                                                               nan_ok=True)
                    ratio = np.nanmedian(np.log10(t["eta_h"][rows] / t["eta_y"][rows]))
                    assert m[f"log10_eta_ratio/{key}"] == pytest.approx(float(ratio), nan_ok=True)
    figures = atlas.plot(tiny)
    assert set(figures) == {"atlas_fit", "atlas_rates"}
    assert "cells" in atlas.summary(tiny)
