"""The paper's two-point experiments end to end at the tiny size, through the real code.

One ``reproduce`` run (module fixture) writes every experiment's files; the tests
check its numbers against independent computations (numpy closed forms, numpy
statistics, scipy trajectories of the theory) and the files the report promises.
"""

import dataclasses
import json
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from rsd import data as rsd_data
from rsd import experiments, fitting, training
from rsd.experiments import _common, alternatives, depth, final_distance, two_point_fit, two_points

NAMES = ("two-points", "final-distance", "depth", "alternatives")  # the two-point experiments


@pytest.fixture(scope="module")
def out(reproduced_tiny):
    return reproduced_tiny


def _npz(out, name):
    with np.load(out / name / "result.npz") as f:
        return {k.replace("__", "/"): f[k] for k in f.files}


def _metrics(out, name):
    return json.loads((out / name / "metrics.json").read_text())


def test_report_lists_every_experiment_with_its_files(out):
    report = (out / "report.md").read_text()
    everything = json.loads((out / "metrics.json").read_text())
    assert list(everything) == [*experiments.REPRODUCE, "claims"]
    for name in experiments.REPRODUCE:
        assert f"## {name}" in report
        config = json.loads((out / name / "config.json").read_text())
        assert config["size"] == "tiny" and config["figures"]
        for fig in config["figures"]:
            assert (out / name / f"{fig}.png").stat().st_size > 1000
            assert f"({name}/{fig}.png)" in report
        assert everything[name] == _metrics(out, name)
    assert not list(out.rglob("*.partial*"))


def test_tiny_reproduce_lists_every_claim_with_its_verdict(out):
    from rsd.experiments import _claims

    report = (out / "report.md").read_text()
    claims = json.loads((out / "metrics.json").read_text())["claims"]
    # Every experiment ran, so every claim has a verdict, in the table and in metrics.json.
    assert set(claims) == {f"claims/{c.number}" for c in _claims.CLAIMS}
    assert set(claims.values()) <= {0, 1}
    table = report.split("## The paper's claims")[1].split("\n## ")[0]
    for claim in _claims.CLAIMS:
        (line,) = [x for x in table.splitlines() if x.startswith(f"| {claim.number} | {claim.statement} |")]
        verdict = "**holds**" if claims[f"claims/{claim.number}"] else "**does not hold**"
        assert line.endswith(f"| {verdict} |")
    assert report.index("## The paper's claims") < report.index("## two-points")


def test_dry_run_estimate_is_within_3x_of_the_measured_time(out):
    """The dry run's time for this machine against the tiny reproduction's measured time
    (each experiment's ``run``, from its config.json), summed over the experiments."""
    _, estimates = experiments.estimate_reproduction(size="tiny")
    estimated = sum(e.seconds_here for e in estimates)
    measured = sum(json.loads((out / name / "config.json").read_text())["seconds"]
                   for name in experiments.REPRODUCE)
    assert measured / 3 <= estimated <= 3 * measured, (estimated, measured)


def test_metric_names_are_the_promised_ones(out):
    rows = two_points.Config.for_size("tiny").rows
    m = _metrics(out, "two-points")
    for row in rows:
        for key in ("r2_h", "r2_y", "r2_w", "eta_h", "eta_y", "eta_mean", "kept"):
            assert f"{row}/{key}" in m
    m = _metrics(out, "final-distance")
    for row in rows:
        for key in ("pearson_r", "median_rel_error", "kept"):
            assert f"{row}/{key}" in m
    m = _metrics(out, "depth")
    layers = depth.Config.for_size("tiny").setting().depth
    assert {"best_layer", "first_over_best", "last_over_best"} <= set(m)
    assert all(f"loss/{k}" in m for k in range(layers))
    m = _metrics(out, "alternatives")
    assert all(f"alt{k}_over_true" in m for k in range(1, 5))


def test_two_points_keeps_and_averages_as_the_protocol_says(out):
    a, m = _npz(out, "two-points"), _metrics(out, "two-points")
    for row in two_points.Config.for_size("tiny").rows:
        loss, status, trained = a[f"{row}/loss"], a[f"{row}/fit_status"], a[f"{row}/trained"]
        kept = trained & (status == fitting.FitStatus.OK) & (loss[:, -1] <= 1e-2)
        np.testing.assert_array_equal(a[f"{row}/kept"], kept)
        assert m[f"{row}/kept"] == kept.sum()
        if not kept.any():
            continue
        for name in ("eta_h", "eta_y"):
            np.testing.assert_allclose(m[f"{row}/{name}"], np.mean(a[f"{row}/{name}"][kept]), rtol=1e-5)
            assert m[f"{row}/{name}_ci_low"] <= m[f"{row}/{name}"] <= m[f"{row}/{name}_ci_high"]
        for k, q in enumerate("hyw"):
            np.testing.assert_allclose(m[f"{row}/r2_{q}"], np.median(a[f"{row}/r2"][kept, k]), rtol=1e-6)


def test_two_points_results_table_holds_every_seed(out):
    """OUT/two-points/results.parquet: one row per (row, seed) with the seed's own fit
    (as in result.npz), and the means over its kept seeds are the report's rates."""
    import pyarrow.parquet as pq

    table = pq.read_table(out / "two-points" / "results.parquet").to_pydict()
    a, m = _npz(out, "two-points"), _metrics(out, "two-points")
    rows = two_points.Config.for_size("tiny").rows
    seeds = two_points.Config.for_size("tiny").seeds
    assert table["row"] == [r for r in rows for _ in range(seeds)]
    assert table["seed"] == list(range(seeds)) * len(rows)
    for i, row in enumerate(rows):
        at = slice(i * seeds, (i + 1) * seeds)
        for name in ("eta_h", "eta_y", "eta_mean", "fit_status", "trained", "kept"):
            np.testing.assert_array_equal(table[name][at], a[f"{row}/{name}"])
        np.testing.assert_array_equal(table["r2_h"][at], a[f"{row}/r2"][:, 0])
        np.testing.assert_array_equal(table["final_loss"][at], a[f"{row}/loss"][:, -1].astype(float))
    rates = two_points.rates_from_table(pq.read_table(out / "two-points" / "results.parquet"))
    assert rates == {row: (m[f"{row}/eta_h"], m[f"{row}/eta_y"]) for row in rows}


def test_final_distance_reads_two_points_results_table(monkeypatch):
    """final-distance takes its rows' rates from two-points' table (means over kept seeds)
    and trains no two-points of its own."""
    def no_fit(*args, **kwargs):
        raise AssertionError("two-points must not run when its results table is given")

    monkeypatch.setattr(two_points, "run", no_fit)
    config = dataclasses.replace(final_distance.Config.for_size("tiny"), rows=("default", "tanh"))
    table = {"row": ["default", "default", "tanh", "tanh", "relu"],
             "eta_h": [1e-3, 3e-3, 2e-3, 9.0, 5.0], "eta_y": [2e-3, 4e-3, 6e-3, 9.0, 5.0],
             "kept": [True, True, True, False, True]}
    rates, source = final_distance._rates(config, {"two-points": table}, False)
    np.testing.assert_allclose(rates["default"], [2e-3, 3e-3], rtol=1e-6)
    np.testing.assert_allclose(rates["tanh"], [2e-3, 6e-3], rtol=1e-6)
    assert set(rates) == {"default", "tanh"} and "results table" in source


def test_two_points_theory_curves_reproduce_the_fit(out):
    """The saved theory curves (an independent solve at the fitted rates) give the fit's R²."""
    a = _npz(out, "two-points")
    checked = 0
    for row in two_points.Config.for_size("tiny").rows:
        kept, t = a[f"{row}/kept"], a[f"{row}/t_plot"]
        measured, theory_curves = a[f"{row}/measured"][:, t], a[f"{row}/theory"]
        for s in np.flatnonzero(kept):
            for k in range(2):  # h and y: w's R² is sensitive to the subsample
                res = measured[s, :, k] - theory_curves[s, :, k]
                dev = measured[s, :, k] - measured[s, :, k].mean()
                r2 = 1 - np.sum(res**2) / np.sum(dev**2)
                assert abs(r2 - a[f"{row}/r2"][s, k]) < 0.02, (row, s, k)
                checked += 1
    assert checked > 0


def test_final_distance_prediction_is_the_closed_form(out):
    a, m = _npz(out, "final-distance"), _metrics(out, "final-distance")
    rates = _metrics(out, "two-points")
    config = final_distance.Config.for_size("tiny")
    for row in config.rows:
        eta_h, eta_y = a[f"{row}/rates"]
        # The rates are two-points' means, reused from the folder.
        np.testing.assert_allclose([eta_h, eta_y], [rates[f"{row}/eta_h"], rates[f"{row}/eta_y"]])
        h0, y0 = a[f"{row}/h0"].astype(float), a[f"{row}/y0"].astype(float)
        dx2, dy2 = a[f"{row}/dx2"], a[f"{row}/dy2"]
        grid = config.grid_points()
        np.testing.assert_allclose(np.stack([dx2, dy2], -1), grid, rtol=1e-6)
        k_ = eta_h * dx2 / eta_y
        c = h0 - k_ * y0 / h0
        expected = c / 2 + np.sqrt(c**2 / 4 + k_ * dy2)
        np.testing.assert_allclose(a[f"{row}/predicted"], expected, rtol=1e-6)
        final_loss, stop = a[f"{row}/final_loss"], a[f"{row}/stop_step"]
        kept = a[f"{row}/trained"] & (final_loss <= 1e-3)
        np.testing.assert_array_equal(a[f"{row}/kept"], kept)
        # A network that stopped early stopped because its loss went below 1e-4.
        assert np.all(final_loss[stop < config.max_steps] < config.stop_loss)
        assert np.all((stop == config.max_steps) | (final_loss < config.stop_loss))
        if kept.sum() >= 3:
            r = np.corrcoef(a[f"{row}/predicted"][kept], a[f"{row}/h_end"][kept])[0, 1]
            np.testing.assert_allclose(m[f"{row}/pearson_r"], r, rtol=1e-6)


def test_depth_best_layer_is_the_minimum_of_the_layer_losses(out):
    a, m = _npz(out, "depth"), _metrics(out, "depth")
    loss = np.where(a["status"] == fitting.FitStatus.OK, a["fit_loss"], np.nan)[a["trained"]]
    per_layer = np.nanmedian(loss, axis=0)
    best = int(np.nanargmin(per_layer))
    assert m["best_layer"] == best
    np.testing.assert_allclose(m["first_over_best"], per_layer[0] / per_layer[best], rtol=1e-6)
    np.testing.assert_allclose(m["last_over_best"], per_layer[-1] / per_layer[best], rtol=1e-6)
    np.testing.assert_allclose([m[f"loss/{k}"] for k in range(per_layer.size)], per_layer, rtol=1e-6)


def test_depth_sweep_fits_are_fit_layers_of_its_series(out):
    # depth runs as a sweep ("rates_all_layers": every layer of every seed in one padded,
    # masked fit); fit_layers of the stored series at the measured pair distances gives
    # the same numbers.
    a = _npz(out, "depth")
    ok = a["trained"]
    assert ok.any()
    dx2, dy2 = _common.pair_distances(depth.Config.for_size("tiny").setting())
    fit = fitting.fit_layers(a["h"][ok], a["y"][ok], a["w"][ok], dx2, dy2)
    np.testing.assert_array_equal(np.asarray(fit.eta_h), a["eta_h"][ok])
    np.testing.assert_array_equal(np.asarray(fit.eta_y), a["eta_y"][ok])
    np.testing.assert_array_equal(np.asarray(fit.status), a["status"][ok])
    np.testing.assert_array_equal(np.asarray(fit.loss), a["fit_loss"][ok])


def test_depth_reference_ratios():
    ref = depth.reference_metrics()
    assert ref["best_layer"] == 11
    np.testing.assert_allclose(ref["first_over_best"], 22.1 / 0.094)
    assert depth.reference_metrics(depth.Config.for_size("tiny")) == {}


def test_alternatives_ratios_are_total_losses(out):
    a, m = _npz(out, "alternatives"), _metrics(out, "alternatives")
    kept = a["kept"]
    assert kept.any()
    for k in range(1, 5):
        expected = a[f"alt{k}/fit_loss"][kept].sum() / a["true/fit_loss"][kept].sum()
        np.testing.assert_allclose(m[f"alt{k}_over_true"], expected, rtol=1e-6)


def test_alternatives_fits_each_field_to_the_recorded_series(out):
    """Each field's columns are the fit of the stored series with that field (no field's
    fits under another's name): fit_rates_masked on the experiment's measured (h, y, w)."""
    a = _npz(out, "alternatives")
    setting = alternatives.Config.for_size("tiny").setting()
    x, y = rsd_data.two_points(setting.dx2, setting.dy2, in_dim=setting.in_dim, out_dim=setting.out_dim)
    dx2, dy2 = (float(np.sum((p[1] - p[0]) ** 2)) for p in (x, y))  # the pair, as train measures it
    m = a["measured"]
    trained = np.isfinite(m).all(axis=(1, 2))
    assert trained.all()
    fits = {name: fitting.fit_rates_masked(m[..., 0], m[..., 1], m[..., 2], dx2, dy2, trained,
                                           vector_field=field) for name, field in alternatives.FIELDS}
    for name, fit in fits.items():
        np.testing.assert_allclose(a[f"{name}/eta_h"], np.asarray(fit[0]), rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(a[f"{name}/eta_y"], np.asarray(fit[1]), rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(a[f"{name}/fit_loss"], np.asarray(fit[2]), rtol=1e-5, err_msg=name)
    # the fields' fits are distinct, so a swapped pair of columns would show
    losses = [a[f"{name}/fit_loss"] for name, _ in alternatives.FIELDS]
    assert all(not np.allclose(p, q, rtol=1e-3) for i, p in enumerate(losses) for q in losses[i + 1:])


def _true_theory(z0, ts, eta_h, eta_y, dx2, dy2):
    def f(t, z):
        h, y, w = z
        a = eta_h * dx2
        return [-a * w, -w * (eta_y * h + a * y / h),
                -0.5 * eta_y * (3 * w - y + dy2) * h - 0.5 * a * (y + w) * w / h]

    return solve_ivp(f, (ts[0], ts[-1]), z0, t_eval=ts, rtol=1e-10, atol=1e-12, method="LSODA").y.T


def test_perturbed_fields_lose_to_the_true_field_on_true_theory_data():
    steps = alternatives.Config.for_size("tiny").steps
    ts = np.arange(steps, dtype=float)
    rates = [(4e-3, 1e-2), (2e-3, 5e-3)]
    zs = np.stack([_true_theory([0.3, 1e-3, 1e-3 - np.sqrt(1e-3 * 0.5)], ts, eh, ey, 1.0, 0.5)
                   for eh, ey in rates]).astype(np.float32)
    h, y, w = zs[..., 0], zs[..., 1], zs[..., 2]
    loss = np.full(h.shape, 0.1, np.float32)
    fits = {name: _common.fit_seeds(h, y, w, loss, 0.0, 1.0, 0.5, np.ones(2, bool), vector_field=field)
            for name, field in alternatives.FIELDS}
    np.testing.assert_allclose(fits["true"].eta_h, [r[0] for r in rates], rtol=2e-2)
    np.testing.assert_allclose(fits["true"].eta_y, [r[1] for r in rates], rtol=2e-2)
    for name, _ in alternatives.FIELDS[1:]:
        assert np.all(fits[name].loss > 10 * fits["true"].loss), name


def test_two_point_fit_masks_a_diverged_seed(monkeypatch):
    """A seed that diverges (non-finite records) is masked before fitting and solving;
    the other seeds' fits are those of a run without it."""
    config = two_point_fit.Config.for_size("tiny")  # 3 seeds; the quickstart notebook's run
    clean = two_point_fit.run(config)
    assert (clean.fit_status == fitting.FitStatus.OK).all()
    # The sweep's fits are those of a direct train and fit_seeds: one definition of the
    # pair's (dx2, dy2), the distances train measures.
    s = clean.setting
    x, y = rsd_data.two_points(s.dx2, s.dy2, in_dim=s.in_dim, out_dim=s.out_dim)
    pair = _common.pair_run(training.train(s, x, y, seeds=range(3)))
    np.testing.assert_array_equal(pair.h, clean.measured[..., 0])
    fits = _common.fit_seeds(pair.h, pair.y, pair.w, pair.loss, pair.e0, pair.dx2, pair.dy2, pair.trained)
    for name in ("eta_h", "eta_y", "eta_mean"):
        np.testing.assert_array_equal(getattr(fits, name), getattr(clean, name), err_msg=name)
    real_train = training.train

    def diverging_train(*args, **kwargs):
        run = real_train(*args, **kwargs)
        return eqx.tree_at(lambda r: (r.h, r.status, r.diverged_step), run,
                           (run.h.at[1, 100:].set(np.inf), run.status.at[1].set(training.Status.DIVERGED),
                            run.diverged_step.at[1].set(100)))

    monkeypatch.setattr(training, "train", diverging_train)
    result = two_point_fit.run(config)
    assert result.fit_status[1] == _common.TRAINING_DIVERGED
    assert np.isnan(result.eta_h[1]) and np.all(np.isnan(result.fitted[1]))
    for s in (0, 2):
        assert result.fit_status[s] == fitting.FitStatus.OK
        np.testing.assert_allclose(result.eta_h[s], clean.eta_h[s], rtol=1e-4)
        np.testing.assert_allclose(result.eta_y[s], clean.eta_y[s], rtol=1e-4)
    assert "TRAINING DIVERGED" in two_point_fit.summary(result)
    two_point_fit.plot(result)


def test_configs_validate_and_sizes_differ():
    for name in NAMES:
        module = experiments.REGISTRY[name]
        tiny, quick, cpu, paper = (module.Config.for_size(s) for s in ("tiny", "quick", "cpu", "paper"))
        assert len({tiny, quick, cpu, paper}) == 4
    with pytest.raises(ValueError, match="width"):
        two_points.Config(width=-3)
    with pytest.raises(ValueError, match="unknown row 'nope'"):
        two_points.Config(rows=("nope",))
    with pytest.raises(ValueError, match="size"):
        two_points.Config.for_size("huge")
    with pytest.raises(ValueError, match="stop_loss"):
        final_distance.Config(stop_loss=0.0)
    paper = two_points.Config.for_size("paper")
    assert paper.seeds == 50 and paper.setting("default").width == 500
    s = final_distance.Config.for_size("paper").setting("default")
    assert (s.lr, s.steps) == (0.01 / 5, 40000)
    s = depth.Config.for_size("paper").setting()
    assert (s.lr, s.steps, s.width, s.depth) == (0.01, 3000, 500, 20)


SUMMARY_LINES = {"predicted_rates": "pred/fit", "xor": "same/diff measured", "context": "context variance",
                 "mnist-trajectory": "test accuracy",
                 "mnist-structure": "Pearson r, prediction vs measured"}


def outcome_summary_line(stem):
    """A line every summary of that experiment prints."""
    return {"quickstart": "eta_mean", "two_points": "eta_mean", "final_distance": "pearson r", "depth": "best layer",
            "alternatives": "best-fit loss", "xor": SUMMARY_LINES["xor"], "context": SUMMARY_LINES["context"],
            "mnist_trajectory": SUMMARY_LINES["mnist-trajectory"],
            "mnist_structure": SUMMARY_LINES["mnist-structure"],
            "predicted_rates": SUMMARY_LINES["predicted_rates"]}[stem]


NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_committed_notebooks_have_no_outputs():
    import nbformat

    assert len(NOTEBOOKS) >= 5
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


def _execute_notebook(path, out):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    switch = [c for c in nb.cells if c.cell_type == "code" and "QUICK = True" in c.source]
    assert len(switch) == 1, path.name
    # The kernel shares the tests' persistent compilation cache, as the command-line
    # subprocesses do (tests/conftest.py): the quickstart's two-point-fit loads what
    # test_two_point_fit_masks_a_diverged_seed compiled.
    cache = jax.config.jax_compilation_cache_dir
    setup = "" if not cache else (
        f"import jax\njax.config.update('jax_compilation_cache_dir', r'{cache}')\n"
        f"jax.config.update('jax_persistent_cache_min_compile_time_secs', "
        f"{jax.config.jax_persistent_cache_min_compile_time_secs})\n"
        "jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)\n")
    switch[0].source = setup + f'SIZE = "tiny"\nOUT = r"{out}"'
    NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    return nb


@pytest.fixture(scope="module")
def executed_notebooks(out):
    """Every notebook executed, two kernels at a time (each kernel is its own process,
    mostly busy on one core: the pair halves the wall time on CI's two cores). A
    notebook that fails is reported by its own test below."""
    from concurrent.futures import ThreadPoolExecutor

    def run(path):
        try:
            return _execute_notebook(path, out)
        except Exception as error:  # noqa: BLE001 -- re-raised in the notebook's test
            return error

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(NOTEBOOKS, pool.map(run, NOTEBOOKS)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_at_tiny_size(path, executed_notebooks):
    """Each notebook, its QUICK switch set to the tiny size; the experiments' notebooks
    reuse the tiny results of the module's reproduce run, as a user's second run would."""
    nb = executed_notebooks[path]
    if isinstance(nb, Exception):
        raise nb
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert outcome_summary_line(path.stem) in printed
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) >= 2
