"""`rsd bench`: the suite runs end to end at the tiny size, and every number in its table
recomputes from the measured fields it reports (rates from counts and seconds, ratios
from rates, floor fractions from bytes, bandwidth and time)."""

import json
import math

import pytest

from rsd import bench
from rsd.cli import main

pytest.importorskip("scipy")

# The whole module on one pytest-xdist worker (--dist loadgroup), so that the suite
# fixture runs once. A module-level mark is seen when xdist assigns groups at collection.
pytestmark = pytest.mark.xdist_group("test_bench")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """One tiny run of every row, and the JSON it wrote."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    results = bench.run(profile="tiny", out=path, progress=False)
    return results, json.loads(path.read_text())


def _family(row):
    return row.split("/")[0]


def test_json_holds_each_row_and_the_machine(suite):
    results, payload = suite
    assert [r["row"] for r in payload["results"]] == [r["row"] for r in results]
    assert {_family(r["row"]) for r in payload["results"]} == set(bench.ROWS)
    assert {r["row"] for r in payload["results"] if r["row"].startswith("fits")} == \
        {"fits/same-algorithm", "fits/paper"}
    for r in payload["results"]:
        assert "error" not in r, r.get("error")
        assert r["rsd_rate"] > 0 and math.isfinite(r["rsd_rate"])
    machine = payload["machine"]
    for key in ("jax", "platform", "device_kind", "cpu_count", "date", "load_average_start",
                "load_average_end", "bandwidth_bytes_per_s"):
        assert key in machine
    assert payload["profile"] == "tiny" and payload["repeats"] == 1


def _rates_from_fields(r):
    """(rsd rate, baseline rate) recomputed from a row's counts and seconds."""
    d, family = r["details"], _family(r["row"])
    if family in ("theory", "fits"):
        return d["n"] / d["rsd_seconds"], d["baseline_n"] / d["baseline_seconds"]
    if family.startswith("train"):
        assert d["seed_steps"] == d["seeds"] * d["steps"]
        torch = d["torch"]
        return d["seed_steps"] / d["rsd_seconds"], None if torch is None else torch["seed_steps_per_s"]
    if family == "compile-cache":
        return 1 / d["second_seconds"], 1 / d["first_seconds"]
    if family == "mnist-train":
        return d["seed_steps"] / d["rsd_seconds"], d["seed_steps"] / d["floor_seconds"]
    raise AssertionError(f"unknown row {r['row']}")


def test_rates_and_ratio_recompute_from_the_fields(suite):
    _, payload = suite
    for r in payload["results"]:
        rsd_rate, base_rate = _rates_from_fields(r)
        assert r["rsd_rate"] == pytest.approx(rsd_rate, rel=1e-12)
        if base_rate is None:
            assert r["baseline_rate"] is None and r["ratio"] is None
            continue
        assert r["baseline_rate"] == pytest.approx(base_rate, rel=1e-12)
        assert r["ratio"] == pytest.approx(rsd_rate / base_rate, rel=1e-12)


def test_floor_fraction_recomputes_from_bytes_bandwidth_and_time(suite):
    _, payload = suite
    train = [r for r in payload["results"] if r["row"].startswith("train-")]
    assert {r["row"] for r in train} == {"train-default", "train-narrow"}
    for r in train:
        d = r["details"]
        floor_bytes = 16 * d["depth"] * d["width"] ** 2  # DESIGN.md §4: 16·L·P² per seed-step
        assert d["floor_bytes_per_seed_step"] == floor_bytes
        # B is the best copy rate of the run's start and of copies next to the timing.
        assert d["bandwidth_bytes_per_s"] >= payload["machine"]["bandwidth_bytes_per_s"]
        expected = (d["rsd_seconds"] / d["seed_steps"]) / (floor_bytes / d["bandwidth_bytes_per_s"])
        assert r["floor_fraction"] == pytest.approx(expected, rel=1e-12)
    for r in payload["results"]:
        if _family(r["row"]) in ("theory", "fits", "compile-cache"):
            assert r["floor_fraction"] is None
        if r["row"] == "mnist-train":
            d = r["details"]
            assert r["floor_fraction"] == pytest.approx(d["rsd_seconds"] / d["floor_seconds"], rel=1e-12)


def test_theory_row_is_accurate_against_dop853(suite):
    """The batched solve's error against scipy DOP853 at rtol 1e-12 (computed by scipy,
    independently of rsd) on the subsample."""
    _, payload = suite
    (theory,) = [r for r in payload["results"] if r["row"] == "theory"]
    d = theory["details"]
    assert d["errors_over"] >= 1
    assert d["err_rsd_p99"] < 1e-4
    assert sum(d["status_counts"]) == d["n"]


def test_fit_rows_count_the_losses(suite):
    _, payload = suite
    fits = [r for r in payload["results"] if r["row"].startswith("fits/")]
    for r in fits:
        d = r["details"]
        assert len(d["rsd_no_worse"]) == d["baseline_n"] == len(d["sample"])
        # The count is recomputed from the two reference losses it summarizes.
        recount = sum(a <= b * (1 + 1e-6) + 1e-300
                      for a, b in zip(d["rsd_reference_loss"], d["baseline_reference_loss"]))
        assert d["rsd_no_worse_count"] == recount
        assert f"{recount}/{d['baseline_n']}" in r["notes"]


def test_training_baseline_is_batched_torch(suite):
    pytest.importorskip("torch")
    _, payload = suite
    for r in payload["results"]:
        if r["row"].startswith("train-"):
            torch = r["details"]["torch"]
            assert torch["num_seeds"] == r["details"]["seeds"]
            assert r["baseline"].startswith("PyTorch")


def test_table_has_one_line_per_result(suite):
    results, _ = suite
    lines = bench.format_table(results).splitlines()
    assert len(lines) == len(results) + 2
    for line, r in zip(lines[2:], results):
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert len(cells) == 8 and cells[0] == r["row"]


@pytest.mark.parametrize("kwargs, field", [
    (dict(rows=["theory", "nope"]), "rows"),
    (dict(rows=[]), "rows"),
    (dict(repeats=0), "repeats"),
    (dict(repeats=1.5), "repeats"),
    (dict(profile="huge"), "profile"),
    (dict(out=""), "out"),
])
def test_bad_arguments_raise_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field) as info:
        bench.run(**kwargs)
    if field == "rows":
        assert all(name in str(info.value) for name in bench.ROWS)


def test_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--profile", "tiny", "--only", "compile-cache", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| row | what rsd did |" in printed and "| compile-cache |" in printed
    assert [r["row"] for r in json.loads(out.read_text())["results"]] == ["compile-cache"]
    assert main(["bench", "--only", "nope", "--out", str(tmp_path / "c.json")]) == 2
    assert "rows must be" in capsys.readouterr().err


def test_missing_scipy_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "scipy" else real(name, *a))
    with pytest.raises(ImportError, match=r"rsd\[bench\]"):
        bench.run(["theory"], profile="tiny", progress=False)
