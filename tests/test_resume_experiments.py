"""Experiments resume after a kill: finished units are kept in OUT/NAME/sweep/ and reused.

The end-to-end test kills a real ``rsd run two-points --size tiny`` with SIGKILL after its
first row is stored, resumes it on four simulated devices, and compares with an
uninterrupted one-device run: the rows finished before the kill are not recomputed
(their files are untouched and the run counts them as reused) and every metric is equal.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsd.experiments import run_experiment
from rsd.sweeps import UnitStore, run_unit


def test_unit_store_keeps_units_across_instances(tmp_path):
    calls = []

    def work(value):
        calls.append(value)
        return {"value": value}

    store = UnitStore(tmp_path, key={"a": 1})
    assert store.run("row=x", lambda: work(1)) == {"value": 1}
    again = UnitStore(tmp_path, key={"a": 1})
    assert again.run("row=x", lambda: work(2)) == {"value": 1}  # stored, not recomputed
    assert calls == [1] and (again.ran, again.reused) == (0, 1)
    # the inputs are part of a unit's identity
    assert again.run("row=x", lambda: work(3), inputs=[0.5]) == {"value": 3}
    assert len(again.finished()) == 2


def test_unit_store_clears_units_of_another_key_or_with_force(tmp_path):
    UnitStore(tmp_path, key={"a": 1}).run("u", lambda: 1)
    assert UnitStore(tmp_path, key={"a": 1}).finished()
    assert UnitStore(tmp_path, key={"a": 2}).finished() == []
    UnitStore(tmp_path, key={"a": 2}).run("u", lambda: 1)
    assert UnitStore(tmp_path, key={"a": 2}, force=True).finished() == []


def test_unit_store_recomputes_an_unreadable_unit_and_drops_temporaries(tmp_path):
    store = UnitStore(tmp_path, key=None)
    path = store.path("u")
    path.write_bytes(b"not a pickle")
    (path.parent / ".u-left.123.tmp").write_bytes(b"half")
    store = UnitStore(tmp_path, key=None)
    assert not any(n.endswith(".tmp") for n in os.listdir(path.parent))
    assert store.run("u", lambda: 7) == 7 and store.ran == 1
    assert pickle.loads(path.read_bytes()) == 7


def test_unit_names_are_checked_and_no_store_means_plain_call(tmp_path):
    store = UnitStore(tmp_path, key=None)
    for bad in ("", "a/b", "x" * 121, 3):
        with pytest.raises(ValueError, match="unit name"):
            store.run(bad, lambda: 0)
    assert run_unit(None, "anything", lambda: 5) == 5


def _same(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_killed_two_points_resumes_on_four_devices_with_the_same_metrics(tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "rsd", "run", "two-points", "--size", "tiny", "--out", str(out)]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    units = out / "two-points" / "sweep" / "units"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if units.is_dir() and any(n.endswith(".pkl") for n in os.listdir(units)):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (out / "two-points" / "metrics.json").exists()  # nothing half-written
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in units.glob("*.pkl")}
    assert 1 <= len(before) < 3  # killed with rows left to run

    resumed = subprocess.run(command + ["--devices", "4"], capture_output=True, text=True, env=env,
                             timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming: {len(before)} finished units" in resumed.stderr
    config = json.loads((out / "two-points" / "config.json").read_text())
    assert config["units"] == {"ran": 3 - len(before), "reused": len(before)}
    kept = out / "two-points" / "sweep" / "units"
    for name, stamp in before.items():  # the finished rows' files were not rewritten
        assert ((kept / name).stat().st_ino, (kept / name).stat().st_mtime_ns) == stamp
    assert len(list(kept.glob("*.pkl"))) == 3

    plain = run_experiment("two-points", size="tiny", out=tmp_path / "plain", progress=False,
                           log=lambda text: None)
    got = json.loads((out / "two-points" / "metrics.json").read_text())
    assert set(got) == set(plain.metrics)
    different = {k: (got[k], plain.metrics[k]) for k in got if not _same(got[k], plain.metrics[k])}
    assert not different


def test_a_rerun_with_one_more_row_computes_only_that_row(tmp_path):
    log = []
    first = run_experiment("two-points", size="tiny", out=tmp_path, progress=False,
                           overrides=["rows=default,tanh"], log=log.append)
    assert json.loads((first.folder / "config.json").read_text())["units"] == {"ran": 2, "reused": 0}
    second = run_experiment("two-points", size="tiny", out=tmp_path, progress=False,
                            overrides=["rows=default,tanh,relu"], log=log.append)
    assert json.loads((second.folder / "config.json").read_text())["units"] == {"ran": 1, "reused": 2}
    for key, value in first.metrics.items():
        assert _same(second.metrics[key], value)
    forced = run_experiment("two-points", size="tiny", out=tmp_path, progress=False, force=True,
                            overrides=["rows=default"], log=log.append)
    assert json.loads((forced.folder / "config.json").read_text())["units"] == {"ran": 1, "reused": 0}
