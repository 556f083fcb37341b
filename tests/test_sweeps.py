"""rsd.sweeps and `rsd sweep`: spec checks, plan, per-element hyperparameters against
separate runs, divergence, resume after SIGKILL, 1 vs 4 devices, 2 processes, --force."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from rsd import cli, sweeps
from rsd.data import two_points
from rsd.training import Setting, Status, train

# Small enough to compile in seconds: depth 3, 40 steps; two widths (two groups, one
# compiled program each) × two learning rates (data), 2 seeds: two chunks of 4 elements.
SMALL = """
base = { table = "2_points", row = "narrow" }
seeds = 2
steps = 40
[set]
depth = 3
[grid]
width = [6, 8]
lr = [0.01, 0.02]
[record]
layers = [1]
[fit]
rates = false
[run]
chunk_size = 4
"""
# What the subprocesses see: the CPU, one or four simulated devices.
_ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
_ENV.pop("XLA_FLAGS", None)
_FOUR = {**_ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
_WORKER = Path(__file__).with_name("sweep_worker.py")


def _spec(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _frame(out):
    return sweeps.read_results(out).to_pandas()


def _parts(out):
    return sorted(p.name for p in (Path(out) / "results.parquet").glob("part-*.parquet"))


def _hidden(out):
    return sorted(p.name for p in (Path(out) / "results.parquet").glob(".*"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """SMALL run uninterrupted, in this process (one CPU device)."""
    folder = tmp_path_factory.mktemp("reference")
    spec = _spec(folder, SMALL)
    report = sweeps.run_sweep(spec, folder / "out", progress=False)
    assert (report.chunks, report.ran, report.skipped) == (2, 2, 0)
    return spec, _frame(folder / "out")


# --- spec ------------------------------------------------------------------------------

_BASE = 'base = { table = "2_points", row = "narrow" }\n'


@pytest.mark.parametrize("text, key", [
    (_BASE + "colour = 1\n", "'colour'"),
    (_BASE + "[record]\nlayer = [1]\n", "'record.layer'"),
    (_BASE + "[run]\nchunks = 4\n", "'run.chunks'"),
    ('base = { table = "2_points", row = "narrow", size = 3 }\n', "'base.size'"),
    (_BASE + "[grid]\nwidth = []\n", "'grid.width'"),
    (_BASE + "[grid]\nwidth = [6, -1]\n", "'grid.width'"),
    (_BASE + "[grid]\nlr = [0.01, 0.01]\n", "'grid.lr'"),
    (_BASE + "[grid]\nlr = [1, 1.0]\n", "'grid.lr'"),
    (_BASE + "[grid]\ncolour = [1, 2]\n", "'grid.colour'"),
    (_BASE + "[grid]\nactivation = ['relu', 'sigmoid']\n", "'grid.activation'"),
    (_BASE + "[set]\nwidth = 0\n", "'set.width'"),
    (_BASE + "[set]\nwidth = 6\n[grid]\nwidth = [6, 8]\n", "'width'"),
    (_BASE + "steps = 10\n[set]\nsteps = 20\n", "'steps'"),
    (_BASE + "seeds = 0\n", "'seeds'"),
    (_BASE + "seeds = [1, 1]\n", "'seeds'"),
    (_BASE + "[fit]\nrates = 1\n", "'fit.rates'"),
    (_BASE + "[record]\nlayers = [25]\n", "recorded layer 25"),
    ('base = { table = "2_points", row = "wide-ish" }\n', "'base.row'"),
    ("seeds = 3\n", "'base'"),
    (_BASE + "[grid]\narchitecture = ['mlp', 'cnn']\nwidth = [6]\n", "grid cell architecture='cnn', width=6"),
    (_BASE + "[grid\n", "not valid TOML"),
    (_BASE + "[grid]\nlr = [[0.1]]\n", "'grid.lr'"),
    (_BASE + "[grid]\ndx2 = [1.0, 1e300]\n", "grid cell dx2=1e+300"),
    ('base = { table = "xor", row = "rich" }\n', "two points"),
    (_BASE + '[grid]\n"gain+lr" = [[1.0, 0.01], [1.1]]\n', "'grid.gain+lr' joins 2 fields"),
    (_BASE + '[grid]\n"gain+colour" = [[1.0, 1]]\n', "'grid.gain+colour'"),
    (_BASE + '[grid]\n"gain+lr" = [[1.0, 0.01]]\nlr = [0.1]\n', "field 'lr' appears in more"),
    (_BASE + '[grid]\n"gain+lr" = [[1.0, -0.01]]\n', "'grid.gain+lr'"),
])
def test_bad_spec_is_one_line_and_exit_2(tmp_path, capsys, text, key):
    spec = _spec(tmp_path, text)
    assert cli.main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rsd: ") and key in err, err
    assert not (tmp_path / "out").exists()


def test_spec_canonical_form_and_hash(tmp_path):
    spec = sweeps.load_spec(_spec(tmp_path, SMALL))
    expected = {
        "base": {"table": "2_points", "row": "narrow", "quirks": False},
        "set": {"depth": 3, "steps": 40},
        "grid": [["width", [6, 8]], ["lr", [0.01, 0.02]]],
        "seeds": [0, 1],
        "record": {"layers": [1], "trajectories": False},
        "fit": {"rates": False},
        "run": {"chunk_size": 4},
    }
    assert spec.canonical() == expected
    text = json.dumps(expected, sort_keys=True, separators=(",", ":"))
    assert spec.spec_hash == hashlib.sha256(text.encode()).hexdigest()
    # top-level steps is the same spec as [set] steps
    moved = SMALL.replace("steps = 40\n", "").replace("depth = 3\n", "depth = 3\nsteps = 40\n")
    assert sweeps.load_spec(_spec(tmp_path, moved, "moved.toml")).spec_hash == spec.spec_hash
    assert sweeps.load_spec(_spec(tmp_path, SMALL.replace("seeds = 2", "seeds = [0, 1]"),
                                  "listed.toml")).spec_hash == spec.spec_hash


def test_grid_values_valid_only_together_are_accepted(tmp_path):
    # a CNN needs width > 10·(depth + 1): not with the base's width 50, but with the grid's
    text = _BASE + "[grid]\narchitecture = ['cnn']\nwidth = [300]\n"
    plan = sweeps.make_plan(sweeps.load_spec(_spec(tmp_path, text)))
    assert plan.cells[0].setting.architecture == "cnn" and plan.cells[0].setting.width == 300


def test_shipped_example_spec_parses():
    import rsd

    path = Path(rsd.__file__).parent / "sweeps" / "examples" / "two_points.toml"
    plan = sweeps.make_plan(sweeps.load_spec(path))
    assert len(plan.cells) == 6 and len(plan.groups) == 3 and plan.num_elements == 6 * 64


# --- plan ------------------------------------------------------------------------------

def test_joined_grid_keys_vary_together(tmp_path):
    """"gain+lr" pairs values (the tables lower lr as gain grows): 2 × 3 cells, not 2 × 3 × 3,
    each with its own pair, as columns gain and lr."""
    text = SMALL.replace("lr = [0.01, 0.02]",
                         '"gain+lr" = [[0.9, 0.03], [1.0, 0.01], [1.2, 0.0025]]')
    spec = sweeps.load_spec(_spec(tmp_path, text))
    plan = sweeps.make_plan(spec)
    assert spec.grid_fields == ("width", "gain", "lr")
    pairs = [(c.setting.width, c.setting.gain, c.setting.lr) for c in plan.cells]
    assert pairs == [(w, g, lr) for w in (6, 8) for g, lr in ((0.9, 0.03), (1.0, 0.01),
                                                               (1.2, 0.0025))]
    assert len(plan.groups) == 2  # gain and lr are data: one program per width
    names = [f.name for f in sweeps.result_schema(plan)]
    assert names[:3] == ["width", "gain", "lr"]


def test_plan_groups_by_structure_and_orders_elements(tmp_path):
    text = SMALL.replace("seeds = 2", "seeds = 3").replace("width = [6, 8]\nlr = [0.01, 0.02]",
                         "lr = [0.01, 0.02]\nwidth = [6, 8]\ngain = [1.0, 2.0]\ndx2 = [1.0, 0.25]")
    plan = sweeps.make_plan(sweeps.load_spec(_spec(tmp_path, text)))
    # product order, first key slowest
    assert [dict(c.values) for c in plan.cells[:3]] == [
        {"lr": 0.01, "width": 6, "gain": 1.0, "dx2": 1.0},
        {"lr": 0.01, "width": 6, "gain": 1.0, "dx2": 0.25},
        {"lr": 0.01, "width": 6, "gain": 2.0, "dx2": 1.0}]
    assert len(plan.cells) == 16 and len(plan.groups) == 2
    for group in plan.groups:
        widths = {plan.cells[c].setting.width for c in group.cells}
        assert len(widths) == 1 and group.structure.width in widths
        elements = [e for c in group.chunks for e in plan.chunks[c].elements]
        assert elements == sorted(3 * c + k for c in group.cells for k in range(3))
        assert all(len(plan.chunks[c].elements) == 4 for c in group.chunks)
    assert plan.element(3 * 5 + 2) == (5, 2)
    # each width holds 12 consecutive element ids: Zarr chunks of 4 ids = sweep chunks
    assert plan.trajectory_chunk_len() == 4
    # widths alternate (cells of 3 ids): ids 4 … 7 fall in two sweep chunks, so 1 id per Zarr chunk
    swapped = SMALL.replace("seeds = 2", "seeds = 3").replace("width = [6, 8]\nlr = [0.01, 0.02]",
                                                              "lr = [0.01, 0.02]\nwidth = [6, 8]")
    plan = sweeps.make_plan(sweeps.load_spec(_spec(tmp_path, swapped, "swapped.toml")))
    assert plan.chunks[0].elements == (0, 1, 2, 6) and plan.chunks[1].elements == (7, 8)
    assert plan.trajectory_chunk_len() == 1


def test_estimates_follow_the_closed_forms(tmp_path):
    plan = sweeps.make_plan(sweeps.load_spec(_spec(tmp_path, SMALL)))
    for group, p in zip(plan.groups, (6, 8)):
        est = sweeps.estimate_chunk(plan, group)
        n = 1 * p + 2 * p * p + p * 1 + 3 * p + 1  # in·P + (L−1)·P² + P·out + biases, L = 3
        assert est.parameters == n
        # train's own per-seed footprint (float32): SGD keeps the parameters four times
        # (parameters, gradient, update, new parameters); the 3 hidden layers' P
        # activations on the 2 points three times; 40 records of 1 layer's h and four
        # scalars; the element's own data, x [2, 1] and y [2, 1].
        per_element = 4 * n + 3 * 2 * (3 * p) + 40 * (1 + 4) + (2 + 2)
        assert est.memory_bytes == 4 * 4 * per_element
        assert est.seconds == pytest.approx(40 * 4 * 16 * n / 10e9)


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    spec = _spec(tmp_path, SMALL)
    out = tmp_path / "out"
    assert cli.main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "4 cells (2 width × 2 lr) × 2 seeds = 8 elements" in text
    assert "compiled groups: 2" in text and "width=6" in text and "width=8" in text
    assert "chunks: 2 (chunk_size 4; elements per chunk 4)" in text
    assert "MB" in text and "estimate" in text
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    ([], "needs --out"),
    (["--out", "OUT", "--devices", "0"], "devices must be in [1, "),
    (["--out", "OUT", "--num-processes", "2"], "must be given together"),
    (["--out", "OUT", "--num-processes", "2", "--process-id", "2", "--coordinator", "h:1"],
     "process_id must be an integer in [0, 2)"),
    (["--out", "OUT", "--num-processes", "2", "--process-id", "0", "--coordinator", "h"],
     "coordinator must be HOST:PORT"),
])
def test_bad_flags_are_one_line_and_exit_2(tmp_path, capsys, flags, message):
    flags = [str(tmp_path / "out") if f == "OUT" else f for f in flags]
    assert cli.main(["sweep", str(_spec(tmp_path, SMALL))] + flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


# --- a run in this process: per-element hyperparameters, divergence, store --------------

FULL = """
base = { table = "2_points", row = "narrow" }
seeds = [0, 5]
steps = 40
[set]
depth = 3
width = 6
[grid]
lr = [0.3, 1000.0]
gain = [1.0, 1.5]
dx2 = [1.0, 0.64]
[record]
layers = [1]
trajectories = true
[run]
chunk_size = 4
"""


def test_per_element_hyperparameters_equal_separate_runs(tmp_path):
    import zarr

    from rsd.experiments._common import TRAINING_DIVERGED

    spec = sweeps.load_spec(_spec(tmp_path, FULL))
    out = tmp_path / "out"
    report = sweeps.run_sweep(spec, out, progress=False)
    assert (report.chunks, report.ran) == (4, 4)
    rows = _frame(out)
    assert list(rows.columns) == ["lr", "gain", "dx2", "element", "cell", "seed", "eta_h", "eta_y",
                                  "fit_loss", "r2_h", "r2_y", "r2_w", "final_h", "final_loss",
                                  "train_status", "fit_status"]
    assert len(rows) == 16 and list(rows.cell) == [c for c in range(8) for _ in range(2)]
    assert list(rows.seed) == [0, 5] * 8 and list(rows.element) == list(range(16))
    assert len(pq.read_table(out / "results.parquet")) == 16  # one call reads the folder

    traj = zarr.open_group(str(out / "trajectories.zarr"), mode="r")
    assert traj["h"].shape == (16, 40, 1) and traj["loss"].shape == (16, 40)
    assert list(traj["cell"][:]) == list(rows.cell) and list(traj["seed"][:]) == list(rows.seed)
    base = Setting.from_paper("2_points", "narrow").replace(depth=3, width=6, steps=40, layers=(1,))
    for cell in range(8):
        first = rows[rows.cell == cell].iloc[0]
        setting = base.replace(lr=first.lr, gain=first.gain, dx2=first.dx2)
        x, y = two_points(first.dx2, 0.5)
        alone = train(setting, x, y, seeds=[0, 5], progress=False)  # this cell on its own
        ids = [2 * cell, 2 * cell + 1]
        assert list(rows.train_status[ids]) == list(np.asarray(alone.status))
        # Another batch composition: XLA may sum in another order (float32 round-off).
        for name in ("h", "y", "w", "loss"):
            np.testing.assert_allclose(traj[name][ids[0]:ids[1] + 1], np.asarray(getattr(alone, name)),
                                       rtol=1e-5, atol=1e-7, err_msg=f"{name} of cell {cell}")
    np.testing.assert_equal(rows.final_h.to_numpy(), traj["h"][:, -1, 0])  # NaN = NaN here
    np.testing.assert_equal(rows.final_loss.to_numpy(), traj["loss"][:, -1])

    diverged = rows.lr == 1000.0
    assert (rows.train_status[diverged] == Status.DIVERGED).all()
    assert (rows.fit_status[diverged] == TRAINING_DIVERGED).all() and rows.eta_h[diverged].isna().all()
    assert (rows.train_status[~diverged] == Status.OK).all()
    assert (rows.fit_status[~diverged] >= 0).all()
    fitted = rows[~diverged & (rows.fit_status == 0)]
    assert len(fitted) > 0 and (fitted.eta_h > 0).all() and (fitted.eta_y > 0).all()
    assert (fitted.r2_h <= 1).all() and fitted.r2_h.max() > 0.9

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec_hash"] == spec.spec_hash and manifest["spec"] == spec.canonical()
    assert manifest["finished_chunks"] == [0, 1, 2, 3] and manifest["plan"]["chunks"] == 4
    assert set(manifest["versions"]) == {"rsd", "jax", "jaxlib"}
    assert manifest["versions"]["jax"] == jax.__version__
    assert _parts(out) == [f"part-00000{c}.parquet" for c in range(4)]
    # a second run resumes: nothing left to do, nothing rewritten
    stamps = [p.stat().st_mtime_ns for p in (out / "results.parquet").iterdir()]
    assert sweeps.run_sweep(spec, out, progress=False).ran == 0
    assert [p.stat().st_mtime_ns for p in (out / "results.parquet").iterdir()] == stamps


# --- subprocesses: SIGKILL and resume on 4 devices; 2 processes ---------------------------

def test_sigkill_then_resume_on_four_devices_equals_uninterrupted(tmp_path, reference):
    spec, expected = reference
    out = tmp_path / "out"
    # The worker pauses 60 s between each part's rename and the manifest update; kill it there.
    worker = subprocess.Popen([sys.executable, str(_WORKER), "60", str(spec), "--out", str(out),
                               "--no-progress"], env=_FOUR, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "results.parquet").is_dir() and _parts(out)):
            assert worker.poll() is None, worker.stderr.read().decode()
            assert time.monotonic() < deadline, "no part written in 120 s"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert worker.returncode == -signal.SIGKILL
    killed_parts = _parts(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert killed_parts == ["part-000000.parquet"] and manifest["finished_chunks"] == []
    (out / "results.parquet" / ".part-000001.4242.tmp").write_bytes(b"half a part")

    done = subprocess.run([sys.executable, "-m", "rsd", "sweep", str(spec), "--out", str(out),
                           "--no-progress"], env=_FOUR, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 run" in done.stdout and "1 already finished" in done.stdout
    assert _parts(out) == ["part-000000.parquet", "part-000001.parquet"] and _hidden(out) == []
    assert json.loads((out / "manifest.json").read_text())["finished_chunks"] == [0, 1]
    got = _frame(out)
    assert not got.duplicated(["cell", "seed"]).any()
    # 4 simulated devices against one, chunk 0 from the killed run: bitwise equal
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path, reference):
    spec, expected = reference
    out = tmp_path / "out"
    port = _free_port()
    # process 0 shards its chunks over 4 simulated devices, process 1 holds one device
    procs = [subprocess.Popen([sys.executable, "-m", "rsd", "sweep", str(spec), "--out", str(out),
                               "--no-progress", "--num-processes", "2", "--process-id", str(i),
                               "--coordinator", f"127.0.0.1:{port}"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, env in enumerate((_FOUR, _ENV))]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (stdout, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr
        assert "(1 of this process): 1 run" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["finished_chunks"] == [0, 1]
    pd.testing.assert_frame_equal(_frame(out), expected, check_exact=True)


# --- another spec on the same folder ---------------------------------------------------------

def test_different_spec_is_refused_and_force_starts_over(tmp_path, capsys, reference):
    first, expected = reference  # this process compiled its programs already
    second = _spec(tmp_path, SMALL.replace("width = [6, 8]", "width = [6]")
                   .replace("lr = [0.01, 0.02]", "lr = [0.01]").replace("seeds = 2", "seeds = 4"),
                   "second.toml")
    out = tmp_path / "out"
    assert cli.main(["sweep", str(first), "--out", str(out), "--no-progress"]) == 0
    (out / "notes.txt").write_text("mine")
    assert _parts(out) == ["part-000000.parquet", "part-000001.parquet"]
    capsys.readouterr()

    assert cli.main(["sweep", str(second), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a different sweep" in err and "--force" in err
    assert _parts(out) == ["part-000000.parquet", "part-000001.parquet"]

    assert cli.main(["sweep", str(second), "--out", str(out), "--no-progress", "--force"]) == 0
    assert _parts(out) == ["part-000000.parquet"] and (out / "notes.txt").read_text() == "mine"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec_hash"] == sweeps.load_spec(second).spec_hash
    assert manifest["finished_chunks"] == [0]
    got = _frame(out)
    assert list(got.seed) == [0, 1, 2, 3]
    want = expected[(expected.width == 6) & (expected.lr == 0.01)]
    # another chunk composition than the reference's: float32 round-off, not bitwise
    np.testing.assert_allclose(got.final_h[:2], want.final_h, rtol=1e-5)
    np.testing.assert_allclose(got.final_loss[:2], want.final_loss, rtol=1e-5)
