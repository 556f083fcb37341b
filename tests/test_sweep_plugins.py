"""rsd.sweeps' newer options: the grid's ``row`` axis, ``[run] stop_loss`` and ``[record]
every``, tasks (``[task] name``) and analyses (``[analysis] names``), shipped and
user-registered, against direct ``train`` calls and closed forms written here."""

import hashlib
import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rsd import sweeps
from rsd.data import two_points, xor
from rsd.training import Setting, Status, train

_BASE = 'base = { table = "2_points", row = "narrow" }\n'
# Small programs: depth 3, width 8; the rows' other fields stay theirs (gain, lr, dx2, ...).
_SMALL = "[set]\ndepth = 3\nwidth = 8\n"


def _measured(dx2, dy2):
    """The squared distances of rsd.data.two_points(dx2, dy2) as numpy measures them on
    the float32 points: what the sweeps' fits use (nominal 0.5 is 0.49999991)."""
    x, y = two_points(dx2, dy2)
    return float(np.sum((x[1] - x[0]) ** 2)), float(np.sum((y[1] - y[0]) ** 2))


_MEASURED = _measured(1.0, 0.5)  # the narrow row's pair


def _parse(text):
    return sweeps.parse_spec(tomllib.loads(text))


def _plan(text):
    return sweeps.make_plan(_parse(text))


def _traj(out):
    import zarr

    return zarr.open_group(str(out / "trajectories.zarr"), mode="r")


# --- spec: hashes and bad values ----------------------------------------------------------

def test_old_spec_hash_is_pinned():
    import rsd

    path = Path(rsd.__file__).parent / "sweeps" / "examples" / "two_points.toml"
    spec = sweeps.load_spec(path)
    # Pins resume compatibility. Hashes written by rsd before record.every, run.stop_loss,
    # [task], [analysis] and definitions existed (computed with commit 397f120): a spec
    # without analyses keeps its hash, so its folders resume; a spec with analyses differs
    # from its old form by the definitions entry alone.
    old_with_rates = "39cec97be2351e8d94dc855ad7344829abe2b496e7764fd8c8633a3cca48652d"
    old_without = "480836a5eb7323f69518b87791dba2a07a9729d24f62edad15eebbf91cb40881"
    canonical = spec.canonical()
    assert canonical.pop("definitions") == sweeps.DEFINITIONS == 2
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(text.encode()).hexdigest() == old_with_rates != spec.spec_hash
    assert "task" not in canonical and "analysis" not in canonical
    # the new options at their defaults are the same spec
    text = path.read_text()
    same = text.replace("[fit]\n", '[task]\nname = "two_points"\n[analysis]\nnames = ["rates"]\n'
                        "[fit]\n").replace("trajectories = false", "trajectories = false\nevery = 1")
    same = same.replace("\n[set]", '\ncell_seeds = "shared"\n[set]', 1)
    assert _parse(same).spec_hash == spec.spec_hash
    off = _parse(text.replace("rates = true", "rates = false"))
    assert off.spec_hash == old_without and "definitions" not in off.canonical()
    assert _parse(text.replace("rates = true", "rates = false")
                  .replace("[run]", "[analysis]\nnames = []\n[run]")).spec_hash == off.spec_hash
    # a non-default value is another sweep
    for changed in (text.replace("[record]\n", "[record]\nevery = 2\n"),
                    text.replace("[run]\n", "[run]\nstop_loss = 0.01\n"),
                    text.replace("[fit]\n", '[analysis]\nnames = ["rates", "final_distance"]\n[fit]\n'),
                    text.replace("[fit]\n", '[task]\nname = "xor"\n[fit]\n'),
                    text.replace("\n[set]", '\ncell_seeds = "distinct"\n[set]', 1)):
        assert _parse(changed).spec_hash != spec.spec_hash, changed


@pytest.mark.parametrize("text, key", [
    (_BASE + "[grid]\nrow = ['default', 'wide-ish']\n", "'grid.row'"),
    (_BASE + "[grid]\nrow = [1]\n", "'grid.row'"),
    (_BASE + "[grid]\nrow = ['default', 'default']\n", "'grid.row'"),
    (_BASE + "[grid]\n\"row+lr\" = [['default', 0.1], ['nope', 0.2]]\n", "'grid.row+lr'"),
    (_BASE + "[record]\nevery = 0\n", "'record.every'"),
    (_BASE + "[record]\nevery = 1.5\n", "'record.every'"),
    (_BASE + "[record]\nevery = true\n", "'record.every'"),
    (_BASE + "steps = 10\n[record]\nevery = 11\n", "'record.every'"),
    (_BASE + "[run]\nstop_loss = 0\n", "'run.stop_loss'"),
    (_BASE + "[run]\nstop_loss = -1e-3\n", "'run.stop_loss'"),
    (_BASE + "[run]\nstop_loss = nan\n", "'run.stop_loss'"),
    (_BASE + "[run]\nstop_loss = inf\n", "'run.stop_loss'"),
    (_BASE + "[run]\nstop_loss = true\n", "'run.stop_loss'"),
    (_BASE + "[run]\nstop_loss = '1e-3'\n", "'run.stop_loss'"),
    (_BASE + "cell_seeds = 'each'\n", "'cell_seeds'"),
    (_BASE + "cell_seeds = true\n", "'cell_seeds'"),
    (_BASE + "seeds = [4294967290]\ncell_seeds = 'distinct'\n[grid]\nlr = [0.1, 0.2]\n", "'cell_seeds'"),
    (_BASE + "[task]\nname = 'mnist'\n", "'task.name'"),
    (_BASE + "[task]\nname = 3\n", "'task.name'"),
    (_BASE + "[task]\nkind = 'xor'\n", "'task.kind'"),
    (_BASE + "task = 'xor'\n", "'task'"),
    (_BASE + "[analysis]\nnames = ['nope']\n", "'analysis.names'"),
    (_BASE + "[analysis]\nnames = 'rates'\n", "'analysis.names'"),
    (_BASE + "[analysis]\nnames = ['rates', 'rates']\n", "'analysis.names'"),
    (_BASE + "[analysis]\nnames = ['final_distance']\n", "'analysis.names'"),
    (_BASE + "[analysis]\nnames = ['final_distance', 'rates']\n", "'analysis.names'"),
    (_BASE + "[analysis]\nname = ['rates']\n", "'analysis.name'"),
    (_BASE + "[fit]\nrates = false\n[analysis]\nnames = ['rates']\n", "'analysis.names'"),
    (_BASE + "[fit]\nrates = true\n[analysis]\nnames = []\n", "'fit.rates'"),
    (_BASE + "[task]\nname = 'xor'\n[set]\nin_dim = 1\n", "the base: Setting.in_dim = 1"),
    (_BASE + "[task]\nname = 'xor'\n[set]\nin_dim = 2\n[grid]\nout_dim = [1, 3]\n",
     "grid cell out_dim=3: Setting.out_dim = 3"),
])
def test_bad_new_key_raises_naming_it(text, key):
    with pytest.raises(ValueError, match=re.escape(key)):
        _plan(text)


def test_bad_row_lists_the_allowed_rows():
    with pytest.raises(ValueError, match="'grid.row'") as error:
        _parse(_BASE + "[grid]\nrow = ['wide-ish']\n")
    assert "default" in str(error.value) and "two_layer" in str(error.value)


# --- the row axis ------------------------------------------------------------------------

ROWS = _BASE + """seeds = 2
steps = 30
[set]
depth = 3
width = 8
[grid]
row = ROWS
[record]
layers = [1]
trajectories = true
[fit]
rates = false
[run]
chunk_size = 2
"""


def test_row_axis_equals_single_row_sweeps(tmp_path):
    two = _parse(ROWS.replace("ROWS", '["default", "narrow"]'))
    plan = sweeps.make_plan(two)
    # the rows' own fields, then [set]: default has gain 1.0, narrow 1.05
    expected = [Setting.from_paper("2_points", r).replace(depth=3, width=8, steps=30, layers=(1,))
                for r in ("default", "narrow")]
    assert [c.setting for c in plan.cells] == expected
    assert expected[0].gain != expected[1].gain
    assert len(plan.groups) == 1  # equal structures share one program
    sweeps.run_sweep(two, tmp_path / "two", progress=False)
    rows = sweeps.read_results(tmp_path / "two").to_pandas()
    assert list(rows.columns[:2]) == ["row", "element"]
    assert list(rows.row) == ["default", "default", "narrow", "narrow"]
    traj = _traj(tmp_path / "two")
    for k, row in enumerate(("default", "narrow")):
        out = tmp_path / row
        sweeps.run_sweep(_parse(ROWS.replace("ROWS", f'["{row}"]')), out, progress=False)
        alone = sweeps.read_results(out).to_pandas()
        mine = rows[rows.row == row].reset_index(drop=True)
        # same chunk composition, same program: bitwise
        pd.testing.assert_frame_equal(mine.drop(columns=["element", "cell"]),
                                      alone.drop(columns=["element", "cell"]), check_exact=True)
        for name in ("h", "y", "w", "loss"):
            np.testing.assert_array_equal(traj[name][2 * k:2 * k + 2], _traj(out)[name][:])
    assert not np.array_equal(traj["h"][:2], traj["h"][2:])  # the rows' gains differ


# --- stop_loss, record every, and the shipped analyses -------------------------------------

STOP = 5e-3
EVERY = 3
ANALYSED = _BASE + f"""seeds = 2
steps = 100
[set]
depth = 3
width = 8
[grid]
lr = [0.05, 1000.0]
[record]
layers = [1, 2]
trajectories = true
every = {EVERY}
[analysis]
names = ["rates", "final_distance", "rates_all_layers", "loss_rate"]
[run]
chunk_size = 4
stop_loss = {STOP}
"""


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    out = tmp_path_factory.mktemp("analysed") / "out"
    sweeps.run_sweep(_parse(ANALYSED), out, progress=False)
    return sweeps.read_results(out).to_pandas(), _traj(out)


def _setting(lr):
    return Setting.from_paper("2_points", "narrow").replace(depth=3, width=8, steps=100, lr=lr,
                                                           layers=(1, 2))


def test_stop_loss_and_every_reach_train(analysed):
    rows, traj = analysed
    assert rows.stop_step.dtype == np.int64
    x, y = two_points(1.0, 0.5)
    direct = train(_setting(0.05), x, y, seeds=[0, 1], stop_loss=STOP, record_every=EVERY,
                   progress=False)
    ok = (rows.lr == 0.05).to_numpy()
    records = -(-100 // EVERY)
    assert traj["h"].shape[1] == records  # one Zarr slot per record, not per step
    assert traj.attrs["record_every"] == EVERY
    for name in ("h", "y", "w", "loss"):
        # another batch composition than the direct call: float32 round-off
        np.testing.assert_allclose(traj[name][np.flatnonzero(ok), :records],
                                   np.asarray(getattr(direct, name)), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(rows.stop_step[ok], np.asarray(direct.stop_step))

    # stop_step from the record-every-step loss: the first multiple of EVERY below STOP
    full = np.asarray(train(_setting(0.05), x, y, seeds=[0, 1], progress=False).loss)
    below = (full < STOP) & (np.arange(100) % EVERY == 0)
    expected = np.where(below.any(1), below.argmax(1), 100)
    np.testing.assert_array_equal(rows.stop_step[ok], expected)
    assert expected.min() < 100 and expected.max() == 100  # one seed stops, one does not
    assert (rows.train_status[~ok] == Status.DIVERGED).all()


def test_final_distance_is_the_closed_form(analysed):
    rows, traj = analysed
    h0, y0 = traj["h"][:, 0, 0].astype(float), traj["y"][:, 0].astype(float)
    eta_h, eta_y = rows.eta_h.to_numpy(), rows.eta_y.to_numpy()
    dx2, dy2 = _MEASURED  # the narrow row's pair
    k = eta_h * dx2 / eta_y
    c = h0 - k * y0 / h0
    expected = c / 2 + np.sqrt(c * c / 4 + k * dy2)
    fitted = np.isfinite(eta_h)
    assert fitted.sum() >= 1 and not fitted[(rows.lr == 1000.0).to_numpy()].any()
    np.testing.assert_allclose(rows.final_distance_predicted[fitted], expected[fitted], rtol=1e-5)
    assert rows.final_distance_predicted[~fitted].isna().all()


def test_rates_all_layers_fits_each_layer(analysed):
    rows, traj = analysed
    # layer 1 is the first recorded: the same fit as "rates"
    np.testing.assert_array_equal(rows.eta_h_layer1, rows.eta_h)
    np.testing.assert_array_equal(rows.r2_h_layer1, rows.r2_h)
    assert {"eta_h_layer2", "eta_y_layer2", "r2_h_layer2"} <= set(rows.columns)
    ok = (rows.lr == 0.05).to_numpy()
    assert rows.eta_h_layer2[ok].notna().any() and rows.eta_h_layer2[~ok].isna().all()
    # a different layer, a different fit: the fit of layer 2's own stored series, at the
    # record steps
    assert not np.allclose(rows.eta_h_layer2[ok], rows.eta_h_layer1[ok], equal_nan=True)
    from rsd.fitting import fit_rates_masked

    records = traj["h"].shape[1]
    fit = fit_rates_masked(traj["h"][:, :, 1], traj["y"][:], traj["w"][:], *_MEASURED, ok,
                           ts=EVERY * np.arange(records))
    np.testing.assert_allclose(rows.eta_h_layer2[ok], np.asarray(fit[0])[ok], rtol=1e-4)
    np.testing.assert_allclose(rows.r2_h_layer2[ok], np.asarray(fit[3])[ok, 0], rtol=1e-4, atol=1e-6)


def test_rates_analysis_fits_with_the_field_it_is_given(tmp_path, monkeypatch):
    """sweeps.rates_analysis(field, prefix=...): the fit of the stored series with that
    field (rsd.fitting.fit_rates_masked), in columns of its own beside "rates"'s."""
    from rsd import theory
    from rsd.fitting import fit_rates_masked

    field = theory.vector_field_dy_doubled
    monkeypatch.setitem(sweeps.ANALYSES, "dy_doubled_fit", sweeps.rates_analysis(field, prefix="dy2x_"))
    text = (_BASE + "seeds = 2\nsteps = 200\n" + _SMALL
            + "[record]\nlayers = [1]\ntrajectories = true\n"
            + "[analysis]\nnames = ['rates', 'dy_doubled_fit']\n")
    sweeps.run_sweep(_parse(text), tmp_path / "out", progress=False)
    rows = sweeps.read_results(tmp_path / "out").to_pandas()
    traj = _traj(tmp_path / "out")
    assert list(rows.columns[-7:]) == ["dy2x_" + n for n in sweeps.RATE_COLUMNS]
    ok = (rows.train_status == Status.OK).to_numpy()
    assert ok.all()
    h, y, w = traj["h"][:, :, 0], traj["y"][:], traj["w"][:]
    for prefix, vector_field in (("", None), ("dy2x_", field)):
        fit = fit_rates_masked(h, y, w, *_MEASURED, ok, vector_field=vector_field)
        for k, name in enumerate(("eta_h", "eta_y", "fit_loss")):
            np.testing.assert_allclose(rows[prefix + name], np.asarray(fit[k]), rtol=1e-6,
                                       err_msg=prefix + name)
        np.testing.assert_array_equal(rows[prefix + "fit_status"], np.asarray(fit[4]))
    # another field, other best rates (seed 0's η_y is about halved)
    assert not np.allclose(rows.dy2x_eta_y, rows.eta_y, rtol=0.1)
    with pytest.raises(ValueError, match="prefix"):
        sweeps.rates_analysis(prefix=3)


# --- tasks ---------------------------------------------------------------------------------

def test_xor_task_trains_on_xor(tmp_path):
    setting = Setting.from_paper("xor", "rich")
    data = sweeps.TASKS["xor"](setting)
    want_x, want_y = xor()
    np.testing.assert_array_equal(np.asarray(data.x), np.asarray(want_x))
    np.testing.assert_array_equal(np.asarray(data.y), np.asarray(want_y))
    assert data.pair == (0, 1) and data.dx2 is None  # the fits use Run's own dx2, dy2
    text = """base = { table = "xor", row = "rich" }
seeds = 2
steps = 40
[set]
depth = 3
width = 8
[record]
layers = [1]
[fit]
rates = false
[task]
name = "xor"
[run]
chunk_size = 2
"""
    plan = _plan(text)
    assert (plan.cells[0].setting.in_dim, plan.cells[0].setting.out_dim) == (2, 1)  # the data's
    sweeps.run_sweep(plan.spec, tmp_path / "out", progress=False)
    rows = sweeps.read_results(tmp_path / "out").to_pandas()
    direct = train(setting.replace(depth=3, width=8, steps=40, layers=(1,)), want_x, want_y,
                   seeds=[0, 1], progress=False)
    np.testing.assert_allclose(rows.final_loss, np.asarray(direct.loss)[:, -1], rtol=1e-5)
    np.testing.assert_allclose(rows.final_h, np.asarray(direct.h)[:, -1, 0], rtol=1e-5)


def _three_points(setting):
    """Three points on a line; the recorded pair is the outer one (0, 2)."""
    x = np.array([[0.0], [0.5], [1.5]], np.float32)
    y = np.array([[0.0], [0.2], [0.6]], np.float32)
    return sweeps.TaskData(x=x, y=y, pair=(0, 2))


def _h_growth(records):
    return {"h_growth": records.h[:, -1, 0] / records.h[:, 0, 0], "pair_dx2": records.dx2,
            "pair_dy2": records.dy2, "fitted_before": np.isfinite(records.columns["eta_h"])}


@pytest.fixture
def user_plugins():
    import pyarrow as pa

    sweeps.register_task("three_points", _three_points)
    sweeps.register_analysis("h_growth", sweeps.Analysis(
        columns=lambda plan: {"h_growth": pa.float64(), "pair_dx2": pa.float64(),
                              "pair_dy2": pa.float64(), "fitted_before": pa.bool_()},
        compute=_h_growth))
    yield
    del sweeps.TASKS["three_points"]
    del sweeps.ANALYSES["h_growth"]


def test_user_task_and_analysis_end_to_end(tmp_path, user_plugins):
    with pytest.raises(ValueError, match="already registered"):
        sweeps.register_task("three_points", _three_points)
    text = _BASE + """seeds = 2
steps = 40
[set]
depth = 3
width = 8
[record]
layers = [1]
[task]
name = "three_points"
[analysis]
names = ["h_growth"]
[run]
chunk_size = 2
"""
    spec = _parse(text)
    assert spec.canonical()["task"] == {"name": "three_points"} and not spec.fit_rates
    sweeps.run_sweep(spec, tmp_path / "out", progress=False)
    rows = sweeps.read_results(tmp_path / "out").to_pandas()
    x, y = _three_points(None)[:2]
    direct = train(Setting.from_paper("2_points", "narrow").replace(depth=3, width=8, steps=40,
                                                                   layers=(1,)),
                   x, y, seeds=[0, 1], pair=(0, 2), progress=False)
    h = np.asarray(direct.h)[:, :, 0]
    np.testing.assert_allclose(rows.h_growth, h[:, -1] / h[:, 0], rtol=1e-5)
    np.testing.assert_allclose(rows.pair_dx2, 1.5 ** 2, rtol=1e-6)  # Run's dx2 of pair (0, 2)
    assert not rows.fitted_before.any()  # no "rates": the fit columns stay NaN, SKIPPED
    assert rows.eta_h.isna().all() and (rows.fit_status == sweeps.FIT_SKIPPED).all()
    assert list(rows.columns[-4:]) == ["h_growth", "pair_dx2", "pair_dy2", "fitted_before"]


def test_two_point_fits_use_the_distances_train_measures(tmp_path, user_plugins):
    # One definition of the pair's (dx2, dy2) for sweeps and experiments (DEFINITIONS 2):
    # the squared distances of the float32 points the network sees, as train measures
    # them (Run.dx2, Run.dy2, which the experiments' fits used before they were sweeps), not
    # the setting's nominal values. The narrow row's dy2 = 0.5 is 0.49999991 measured.
    text = (_BASE + "seeds = 1\nsteps = 3\n" + _SMALL
            + "[record]\nlayers = [1]\n[analysis]\nnames = ['h_growth']\n")
    sweeps.run_sweep(_parse(text), tmp_path / "out", progress=False)
    rows = sweeps.read_results(tmp_path / "out").to_pandas()
    setting = Setting.from_paper("2_points", "narrow").replace(depth=3, width=8, steps=3, layers=(1,))
    x, y = two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim, out_dim=setting.out_dim)
    direct = train(setting, x, y, seeds=[0], progress=False)
    assert rows.pair_dx2[0] == float(direct.dx2) and rows.pair_dy2[0] == float(direct.dy2)
    assert rows.pair_dy2[0] != setting.dy2  # the nominal value would differ


def test_a_folder_of_older_definitions_is_refused_with_the_reason(tmp_path):
    spec = _parse(_BASE + "seeds = 1\nsteps = 3\n" + _SMALL + "[record]\nlayers = [1]\n")
    old = spec.canonical()
    old.pop("definitions")
    digest = hashlib.sha256(json.dumps(old, sort_keys=True, separators=(",", ":")).encode())
    out = tmp_path / "out"
    out.mkdir()
    (out / sweeps.MANIFEST).write_text(json.dumps({"spec": old, "spec_hash": digest.hexdigest()}))
    with pytest.raises(ValueError, match="definitions 1, now 2.*measured pair distances.*--force"):
        sweeps.run_sweep(spec, out, progress=False)
    other = dict(old, seeds=[1])  # another sweep altogether: the plain message
    (out / sweeps.MANIFEST).write_text(json.dumps({"spec": other, "spec_hash": "0" * 64}))
    with pytest.raises(ValueError, match="holds a different sweep"):
        sweeps.run_sweep(spec, out, progress=False)


def test_unregistered_names_are_refused_after_teardown():
    with pytest.raises(ValueError, match="'task.name'"):
        _parse(_BASE + "[task]\nname = 'three_points'\n")
    with pytest.raises(ValueError, match="'analysis.names'"):
        _parse(_BASE + "[analysis]\nnames = ['h_growth']\n")
    with pytest.raises(ValueError, match="requires"):
        sweeps.register_analysis("late", sweeps.Analysis(columns=dict, compute=dict,
                                                         requires=("nope",)))


def test_shipped_rows_example_plans_one_cell_per_row():
    import rsd

    path = Path(rsd.__file__).parent / "sweeps" / "examples" / "rows.toml"
    plan = sweeps.make_plan(sweeps.load_spec(path))
    rows = ["default", "linear", "elu", "tanh", "relu", "swish"]
    assert [dict(c.values)["row"] for c in plan.cells] == rows
    for cell, row in zip(plan.cells, rows):
        table = Setting.from_paper("2_points", row)
        assert cell.setting.activation == table.activation and cell.setting.width == 100
    assert plan.spec.stop_loss == 1e-4 and plan.spec.record_every == 10
    assert plan.spec.analyses == ("rates", "final_distance")


def test_loss_rate_is_the_loss_curve_fit_of_the_stored_records(analysed):
    """eta_mean: fit_loss_rate of each trained element's own stored loss and (h, y, w) at
    the record steps, from its e0 (the mean-output error at step 0, which does not depend
    on the learning rate: taken from a direct train of the same seeds); NaN and
    NOT_FITTED where training diverged."""
    from rsd.fitting import NOT_FITTED, fit_loss_rate

    rows, traj = analysed
    ok = (rows.train_status == Status.OK).to_numpy()
    assert ok.sum() >= 1 and (~ok).sum() >= 1
    x, y = two_points(1.0, 0.5)
    direct = train(_setting(0.05), x, y, seeds=[0, 1], progress=False)
    e0 = np.asarray(direct.e0, float)
    records = traj["h"].shape[1]
    zs = np.stack([traj["h"][:, :, 0], traj["y"][:], traj["w"][:]], -1)
    e = np.flatnonzero(ok)
    assert (rows.lr[ok] == 0.05).all()
    fit = fit_loss_rate(traj["loss"][e], zs[e], 0.5, e0[rows.seed[ok].to_numpy()],
                        ts=EVERY * np.arange(records))
    np.testing.assert_allclose(rows.eta_mean[ok], np.asarray(fit.eta_mean), rtol=1e-4)
    np.testing.assert_array_equal(rows.eta_mean_status[ok], np.asarray(fit.status))
    np.testing.assert_allclose(rows.e0[ok], e0[rows.seed[ok].to_numpy()], rtol=1e-6)
    assert rows.eta_mean[~ok].isna().all() and (rows.eta_mean_status[~ok] == NOT_FITTED).all()


_PLUGIN_FILE = '''
import numpy as np
import pyarrow as pa
from rsd import sweeps

def three_points(setting):
    x = np.array([[0.0], [0.5], [1.5]], np.float32)
    y = np.array([[0.0], [0.2], [0.6]], np.float32)
    return sweeps.TaskData(x=x, y=y, pair=(0, 2))

sweeps.register_task("cli_three_points", three_points)
sweeps.register_analysis("cli_pair_dx2", sweeps.Analysis(
    columns=lambda plan: {"cli_pair_dx2": pa.float64()},
    compute=lambda records: {"cli_pair_dx2": records.dx2}))
'''


def test_rsd_sweep_imports_plugins_named_on_the_command_line(tmp_path, capsys):
    from rsd import cli

    plugin = tmp_path / "my_plugins.py"
    plugin.write_text(_PLUGIN_FILE)
    spec = tmp_path / "spec.toml"
    spec.write_text(_BASE + "seeds = 1\nsteps = 3\n" + _SMALL + "[record]\nlayers = [1]\n"
                    "[task]\nname = 'cli_three_points'\n[analysis]\nnames = ['cli_pair_dx2']\n")
    command = ["sweep", str(spec), "--out", str(tmp_path / "out"), "--no-progress"]
    assert cli.main(command) == 2  # not registered without the plug-in
    assert "is not a registered analysis" in capsys.readouterr().err
    assert cli.main(command + ["--plugins", str(tmp_path / "missing.py")]) == 2
    assert "no such Python file" in capsys.readouterr().err
    assert cli.main(command + ["--plugins", "no_such_module_here"]) == 2
    assert "no module named 'no_such_module_here'" in capsys.readouterr().err
    try:
        assert cli.main(command + ["--plugins", str(plugin)]) == 0
        rows = sweeps.read_results(tmp_path / "out").to_pandas()
        assert len(rows) == 1 and rows.train_status[0] == Status.OK
        assert rows.cli_pair_dx2[0] == 1.5 ** 2  # the plug-in's task, pair (0, 2), measured
    finally:
        sweeps.TASKS.pop("cli_three_points", None)
        sweeps.ANALYSES.pop("cli_pair_dx2", None)


def test_distinct_cell_seeds_give_every_cell_its_own_networks(tmp_path):
    # cell_seeds = "distinct": cell c trains seeds[k] + c·(max(seeds) + 1), here seeds
    # [0, 2] on three cells: 0, 2 | 3, 5 | 6, 8. Each cell equals a direct train with its
    # seeds; "initial_state" gives the first records and the pair distances.
    text = (_BASE + "seeds = [0, 2]\ncell_seeds = 'distinct'\nsteps = 4\n" + _SMALL
            + "[grid]\ndx2 = [0.25, 1.0, 2.25]\n[record]\nlayers = [1]\ntrajectories = true\n"
            "[analysis]\nnames = ['initial_state']\n[run]\nchunk_size = 2\n")
    spec = _parse(text)
    assert spec.canonical()["cell_seeds"] == "distinct"
    sweeps.run_sweep(spec, tmp_path / "out", progress=False)
    rows = sweeps.read_results(tmp_path / "out").to_pandas()
    assert list(rows.seed) == [0, 2, 3, 5, 6, 8] and list(rows.cell) == [0, 0, 1, 1, 2, 2]
    traj = _traj(tmp_path / "out")
    assert list(traj["seed"][:]) == [0, 2, 3, 5, 6, 8]
    base = Setting.from_paper("2_points", "narrow").replace(depth=3, width=8, steps=4, layers=(1,))
    for cell, dx2 in enumerate((0.25, 1.0, 2.25)):
        x, y = two_points(dx2, 0.5)
        direct = train(base.replace(dx2=dx2), x, y, seeds=[3 * cell, 3 * cell + 2], progress=False)
        ids = [2 * cell, 2 * cell + 1]
        np.testing.assert_array_equal(traj["h"][ids], np.asarray(direct.h))
        np.testing.assert_array_equal(rows.h0[ids], np.asarray(direct.h)[:, 0, 0])
        np.testing.assert_array_equal(rows.y0[ids], np.asarray(direct.y)[:, 0])
        np.testing.assert_array_equal(rows.w0[ids], np.asarray(direct.w)[:, 0])
        assert (rows.pair_dx2[ids] == float(direct.dx2)).all()
        assert (rows.pair_dy2[ids] == float(direct.dy2)).all()
    assert _measured(0.25, 0.5) == (rows.pair_dx2[0], rows.pair_dy2[0])
