"""Experiments resume after a kill: finished units are kept in OUT/NAME/sweep/ and reused.

The end-to-end test kills a real ``rsd run two-points --size tiny`` with SIGKILL after its
first row is stored, resumes it with two processes at once (``--num-processes 2``), each
on four simulated devices, and compares with an uninterrupted one-process, one-device
run (the session's tiny reproduction, ``reproduced_tiny``, whose two-points ran
in-process on the default device): the rows finished before the kill are not recomputed
(their files are untouched and the processes count them as reused), each remaining row
is computed by the process it belongs to, and every metric is equal. This module shares
the reproduce group's worker (tests/conftest.py).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsd.experiments import run_experiment, two_points
from rsd.sweeps import UnitStore, parse_spec, run_unit


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


def test_a_units_workspace_survives_a_resume_and_is_cleared_with_the_units(tmp_path):
    ws = UnitStore(tmp_path, key={"a": 1}).workspace("sweep-x")
    ws.mkdir()
    (ws / "part-0.parquet").write_text("chunk")
    assert UnitStore(tmp_path, key={"a": 1}).workspace("sweep-x") == ws
    assert (ws / "part-0.parquet").exists()  # a resume keeps a killed unit's chunks
    UnitStore(tmp_path, key={"a": 1}, force=True)
    assert not ws.exists()  # --force recomputes everything
    ws.mkdir()
    UnitStore(tmp_path, key={"a": 2})
    assert not ws.exists()  # so does another configuration


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


def test_killed_two_points_resumes_in_two_processes_on_four_devices_with_the_same_metrics(
        tmp_path, reproduced_tiny):
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
    # Each row is one sweep unit, named by its spec's hash; the tiny size's rows run in order.
    config = two_points.Config.for_size("tiny")
    digests = [parse_spec(two_points.spec(config, row)).spec_hash[:16] for row in config.rows]
    assert len(config.rows) == 3
    done = {k for k, digest in enumerate(digests) for name in before if f"sweep-{digest}" in name}
    assert len(done) == len(before)

    # Resumed by two processes at once, each on four devices: unit k (row k) belongs to
    # process k mod 2, which computes it unless it was finished before the kill; the other
    # process reads it from the shared folder.
    resume = command + ["--devices", "4", "--num-processes", "2", "--process-id"]
    procs = {i: subprocess.Popen(resume + [str(i)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, env=env) for i in (1, 0)}
    logs = {i: p.communicate(timeout=900)[1] for i, p in procs.items()}
    assert [procs[i].returncode for i in (0, 1)] == [0, 0], {i: log[-3000:] for i, log in logs.items()}
    assert f"resuming: {len(before)} finished units" in logs[0]
    ran = {i: len({k for k in range(3) if k % 2 == i} - done) for i in (0, 1)}
    assert f"{3 - ran[1]} units reused, {ran[1]} computed" in logs[1], logs[1][-2000:]
    assert "waiting for process 0" in logs[1]
    config = json.loads((out / "two-points" / "config.json").read_text())  # process 0's
    assert config["units"] == {"ran": ran[0], "reused": 3 - ran[0]}
    kept = out / "two-points" / "sweep" / "units"
    for name, stamp in before.items():  # the finished rows' files were not rewritten
        assert ((kept / name).stat().st_ino, (kept / name).stat().st_mtime_ns) == stamp
    assert len(list(kept.glob("*.pkl"))) == 3

    plain = json.loads((reproduced_tiny / "two-points" / "metrics.json").read_text())
    assert json.loads((reproduced_tiny / "two-points" / "config.json").read_text())["size"] == "tiny"
    got = json.loads((out / "two-points" / "metrics.json").read_text())
    assert set(got) == set(plain)
    different = {k: (got[k], plain[k]) for k in got if not _same(got[k], plain[k])}
    assert not different


def test_a_rerun_with_one_more_row_computes_only_that_row(tmp_path, reproduced_tiny):
    log = []
    # The first run: the tiny reproduction's two-points (rows default, tanh, relu), copied.
    shutil.copytree(reproduced_tiny / "two-points", tmp_path / "two-points")
    first = json.loads((tmp_path / "two-points" / "metrics.json").read_text())
    assert json.loads((tmp_path / "two-points" / "config.json").read_text())["units"] == {"ran": 3, "reused": 0}
    second = run_experiment("two-points", size="tiny", out=tmp_path, progress=False,
                            overrides=["rows=default,tanh,relu,linear"], log=log.append)
    assert json.loads((second.folder / "config.json").read_text())["units"] == {"ran": 1, "reused": 3}
    for key, value in first.items():
        assert _same(second.metrics[key], value)
    assert "linear/eta_h" in second.metrics
    forced = run_experiment("two-points", size="tiny", out=tmp_path, progress=False, force=True,
                            overrides=["rows=default"], log=log.append)
    assert json.loads((forced.folder / "config.json").read_text())["units"] == {"ran": 1, "reused": 0}


def test_unit_store_splits_units_round_robin_between_processes(tmp_path):
    """Three processes (threads here) ask for the same five units in the same order: unit k
    is computed once, by process k mod 3, and every process returns every result."""
    import threading

    computed, results = [], {}

    def work(pid):
        store = UnitStore(tmp_path, key={"a": 1}, num_processes=3, process_id=pid, wait_timeout=60)
        results[pid] = [store.run(f"u{k}", lambda k=k: computed.append((k, pid)) or k * k) for k in range(5)]
        results[pid, "counts"] = (store.ran, store.reused)

    threads = [threading.Thread(target=work, args=(pid,)) for pid in (2, 1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(computed) == [(k, k % 3) for k in range(5)]
    assert all(results[pid] == [0, 1, 4, 9, 16] for pid in range(3))
    assert [results[pid, "counts"] for pid in range(3)] == [(2, 3), (2, 3), (1, 4)]


def test_processes_are_checked(tmp_path):
    for kwargs, match in (({"num_processes": 0}, "num-processes"),
                          ({"num_processes": 2, "process_id": 2}, "process-id"),
                          ({"num_processes": 2, "process_id": 0, "force": True}, "force")):
        with pytest.raises(ValueError, match=match):
            run_experiment("two-points", size="tiny", out=tmp_path, log=lambda text: None, **kwargs)
    with pytest.raises(ValueError, match="process_id"):
        UnitStore(tmp_path, key=None, num_processes=2, process_id=-1)
    with pytest.raises(TimeoutError, match="process 0's manifest"):
        UnitStore(tmp_path / "nobody", key=None, num_processes=2, process_id=1, wait_timeout=0.2)


# --- a lost process ------------------------------------------------------------------------

_LEADER = """
import sys, time
from pathlib import Path
from rsd.sweeps import UnitStore
folder = Path(sys.argv[1])
store = UnitStore(folder, key={"a": 1}, num_processes=2, process_id=0, heartbeat=0.05, stale_after=1.0)
def slow():
    (folder / "started").write_text("1")
    time.sleep(120)
store.run("u0", slow)
"""


def test_a_killed_process_is_reported_by_the_one_waiting_for_it(tmp_path):
    """Process 0 (a real process) is SIGKILLed while it computes unit u0, which process 1
    (this one) waits for: while process 0 lives (longer than stale_after) process 1 keeps
    waiting; once it is killed, process 1 raises TimeoutError naming it within about
    stale_after seconds, instead of waiting for ever."""
    import threading

    leader = subprocess.Popen([sys.executable, "-c", _LEADER, str(tmp_path)], stderr=subprocess.PIPE)
    killed = {}

    def kill_while_computing():
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(2.5)  # alive and slow for 2.5 × stale_after: no reason to give up yet
        leader.send_signal(signal.SIGKILL)
        killed["at"] = time.monotonic()

    try:
        store = UnitStore(tmp_path, key={"a": 1}, num_processes=2, process_id=1, heartbeat=0.05,
                          stale_after=1.0, wait_timeout=120)
        thread = threading.Thread(target=kill_while_computing)
        thread.start()
        with pytest.raises(TimeoutError, match=r"process 0 stopped: its heartbeat .*unit 'u0'"):
            store.run("u0", lambda: pytest.fail("process 1 computed process 0's unit"))
        raised = time.monotonic()
        thread.join()
    finally:
        leader.kill()
        leader.wait()
    assert leader.returncode == -signal.SIGKILL, leader.stderr.read().decode()[-2000:]
    assert "at" in killed  # the error came after the kill, not while process 0 lived
    # about stale_after after the last beat it saw (polls are up to 1 s apart)
    assert 0.5 <= raised - killed["at"] < 10.0


def test_a_heartbeat_never_seen_to_change_is_no_evidence(tmp_path):
    """A heartbeat file that does not change while one waits (left by an earlier run, or
    a process that has not started) neither stops the wait early nor counts as alive:
    the plain wait_timeout applies. One that stops while one waits is a lost process."""
    import threading

    leader = UnitStore(tmp_path, key=None, num_processes=2, process_id=0, heartbeat=0.05, stale_after=0.5)
    follower = UnitStore(tmp_path, key=None, num_processes=2, process_id=1, heartbeat=0.05, stale_after=0.5,
                         wait_timeout=1.5)
    leader.close()
    time.sleep(0.2)  # its last beat written
    with pytest.raises(TimeoutError, match="waited 1.5 s for unit 'u0'"):
        follower.run("u0", lambda: 0)
    lively = UnitStore(tmp_path / "b", key=None, num_processes=2, process_id=0, heartbeat=0.05,
                       stale_after=0.5)
    waiting = UnitStore(tmp_path / "b", key=None, num_processes=2, process_id=1, heartbeat=0.05,
                        stale_after=0.5, wait_timeout=30)
    threading.Timer(1.0, lively.close).start()
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="process 0 stopped"):
        waiting.run("u0", lambda: 0)
    assert 1.0 <= time.monotonic() - start < 10.0  # not before the heartbeat stopped
    for kwargs, match in (({"heartbeat": 0}, "heartbeat"), ({"heartbeat": float("nan")}, "heartbeat"),
                          ({"stale_after": 1.0, "heartbeat": 2.0}, "stale_after")):
        with pytest.raises(ValueError, match=match):
            UnitStore(tmp_path / "c", key=None, **kwargs)


def test_rsd_says_in_one_line_that_a_process_was_lost(monkeypatch, capsys):
    from rsd import cli

    def lost(args):
        raise TimeoutError("process 0 stopped: its heartbeat (X) has not changed for 61 s")

    monkeypatch.setattr(cli, "_dispatch", lost)
    assert cli.main(["run", "two-points", "--size", "tiny"]) == 1
    err = capsys.readouterr().err
    assert err == "rsd: process 0 stopped: its heartbeat (X) has not changed for 61 s\n"
