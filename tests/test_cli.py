"""The command line is a thin shell: dispatch, files written, errors as one line and exit 2,
Ctrl-C as one line and exit 130, outputs checked before any computation."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from rsd import cli, experiments


@dataclasses.dataclass(frozen=True)
class _FakeConfig:
    width: int = 4
    seeds: int = 2
    rows: tuple[str, ...] = ("default",)
    scale: float | None = None

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"width must be an integer >= 1; got {self.width}.")

    @classmethod
    def for_size(cls, size):
        return cls(width={"tiny": 1, "quick": 4, "paper": 500}[size])


def _fake(calls):
    module = types.SimpleNamespace()
    module.__doc__ = "A fake experiment.\n\nIt draws a line."
    module.Config = _FakeConfig

    def run(config, *, upstream=None, progress=False, store=None):
        calls.append(config)
        return config.width

    def plot(result):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, result])
        return {"line": fig}

    module.run, module.plot = run, plot
    module.metrics = lambda result: {"default/width": result, "total": 2 * result}
    module.arrays = lambda result: {"x": [result]}
    module.summary = lambda result: f"summary {result}"
    module.describe = lambda config: f"width {config.width}"
    return module


@pytest.fixture
def fake(monkeypatch):
    calls = []
    monkeypatch.setitem(experiments.REGISTRY, "fake", _fake(calls))
    return calls


def test_run_writes_the_folder_and_prints_summary(tmp_path, fake, capsys):
    assert cli.main(["run", "fake", "--out", str(tmp_path), "--set", "width=7", "--seeds", "3"]) == 0
    folder = tmp_path / "fake"
    assert (folder / "line.png").stat().st_size > 0
    assert {p.name for p in folder.iterdir()} == {"line.png", "result.npz", "metrics.json", "metrics.csv",
                                                   "config.json", "summary.txt"}
    assert (folder / "metrics.csv").read_text().splitlines() == ["group,metric,value", "default,width,7",
                                                                 ",total,14"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    out = capsys.readouterr().out
    assert "summary 7" in out and str(folder) in out
    assert fake == [_FakeConfig(width=7, seeds=3)]


def test_second_run_reuses_unless_forced(tmp_path, fake, capsys):
    args = ["run", "fake", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    assert cli.main(args) == 0
    assert len(fake) == 1 and "reusing" in capsys.readouterr().err
    assert cli.main(args + ["--paper"]) == 0  # another size is another run
    assert cli.main(args + ["--paper", "--force"]) == 0
    assert len(fake) == 3


def test_reproduce_writes_report_and_metrics(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setattr(experiments, "REPRODUCE", ("fake",))
    assert cli.main(["reproduce", "--size", "tiny", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "## fake" in report and "(fake/line.png)" in report and "width 1" in report
    assert "| `total` | 2 |" in report
    assert '"fake"' in (tmp_path / "metrics.json").read_text()
    assert "report: " in capsys.readouterr().out


def test_reproduce_report_opens_with_the_claims_table(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(experiments, "REPRODUCE", ("fake",))
    assert cli.main(["reproduce", "--size", "tiny", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    head = report.split("## fake")[0]
    assert "Made by `rsd " in head and "## The paper's claims" in head
    from rsd.experiments import _claims

    for claim in _claims.CLAIMS:  # no paper experiment ran: every claim is listed, not run
        assert f"| {claim.number} | {claim.statement} |" in head
    assert head.count("| not run |") == len(_claims.CLAIMS)
    import json

    assert json.loads((tmp_path / "metrics.json").read_text())["claims"] == {}


def test_dry_run_trains_nothing_and_lists_every_experiment(tmp_path, capsys, monkeypatch):
    from rsd import training

    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("the dry run trained"))
    assert cli.main(["reproduce", "--paper", "--dry-run", "--bandwidth", "4.8e12", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "4800 GB/s" in out
    for name in experiments.REPRODUCE:
        assert f"| {name} |" in out
    assert not list(tmp_path.iterdir())


def test_dry_run_floor_is_the_memory_traffic():
    """The floor column: steps × networks × 16 bytes per parameter (SGD) over the bandwidth,
    with the parameter count taken by hand for the default row's MLP (1 → 500, 19 × 500 → 500,
    500 → 1, with biases)."""
    _, estimates = experiments.estimate_reproduction(["depth"], size="paper", bandwidth=1e12)
    (e,) = estimates
    params = (1 * 500 + 500) + 19 * (500 * 500 + 500) + (500 * 1 + 1)
    assert e.parameters == params
    assert e.seconds_floor == pytest.approx(3000 * 1 * 16 * params / 1e12, rel=1e-9)
    assert e.seed_steps == 3000 and e.networks == 1


@pytest.mark.parametrize("args, message", [
    (["reproduce", "--dry-run", "--bandwidth", "0"], "rsd: --bandwidth must be a positive number"),
    (["run", "fake", "--set", "width=-3"], "rsd: width must be an integer >= 1; got -3."),
    (["run", "fake", "--set", "depth=3"], "rsd: unknown setting 'depth' for this experiment; allowed: "
                                          "width, seeds, rows, scale."),
    (["run", "fake", "--set", "width=abc"], "rsd: --set width='abc': expected an integer."),
    (["run", "fake", "--set", "width"], "rsd: --set takes key=value; got 'width'."),
    (["run", "fake", "--seeds", "0"], "rsd: --seeds must be an integer >= 1; got 0."),
    (["run", "no-such-thing"], "rsd: unknown experiment 'no-such-thing'; choose from "),
    (["reproduce", "--only", "no-such-thing"], "rsd: unknown experiment 'no-such-thing'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, fake, capsys, args, message):
    assert cli.main(args + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message)
    assert fake == []


def test_set_parses_by_type(fake, tmp_path):
    assert cli.main(["run", "fake", "--out", str(tmp_path), "--set", "rows=a, b", "--set", "scale=0.5"]) == 0
    assert fake[0].rows == ("a", "b") and fake[0].scale == 0.5


def test_real_experiment_rejects_bad_values(tmp_path, capsys):
    assert cli.main(["run", "two-points", "--set", "width=-3", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "rsd: width must be an integer >= 1; got -3.\n"
    assert cli.main(["run", "two-points", "--set", "rows=default,nope", "--out", str(tmp_path)]) == 2
    assert "unknown row 'nope'" in capsys.readouterr().err


def _bad_outputs(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    return [(a_file, "is a file, not a folder"),
            (a_file / "below", "is below"),
            (Path("/proc/rsd-cannot-write-here"), "is not a writable folder")]


@pytest.mark.parametrize("command", [["run", "fake"], ["reproduce", "--only", "fake"], ["demo"]])
def test_bad_out_is_checked_before_any_computation(tmp_path, fake, capsys, command):
    for out, message in _bad_outputs(tmp_path):
        assert cli.main(command + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert fake == []


def test_list_names_every_experiment(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name, module in experiments.REGISTRY.items():
        assert name in out and module.__doc__.strip().splitlines()[0] in out
    assert all(name in experiments.REGISTRY for name in cli.DEMO + list(experiments.REPRODUCE))


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["frobnicate"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.filterwarnings("ignore:os.fork")  # the child execs at once
def test_ctrl_c_exits_130_without_traceback_or_finished_looking_files(tmp_path):
    """A real SIGINT to a running `rsd`: one line, exit 130, nothing left that looks finished."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rsd", "run", "two-points", "--size", "tiny", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Wait until it is computing (it says so on stderr), then interrupt it.
    seen = []
    while not any("running" in line for line in seen):
        line = proc.stderr.readline()
        assert line, f"rsd ended before computing: {seen} {proc.communicate()}"
        seen.append(line)
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
    assert stderr.strip().splitlines()[-1].strip() == "rsd: interrupted", stderr
    assert not list(out.rglob("*.png")) and not list(out.rglob("*partial*"))
    # What an interrupted run leaves is its finished units, kept for the resume, and
    # nothing a reader (or the reuse check) could take for a finished result.
    left = [p.relative_to(out / "two-points") for p in (out / "two-points").rglob("*") if p.is_file()]
    assert all(p.parts[0] == "sweep" for p in left), left
    assert not any(p.name in ("metrics.json", "config.json", "summary.txt") for p in left)


def test_ctrl_c_inside_a_gc_callback_is_deferred_not_lost(monkeypatch):
    """A KeyboardInterrupt raised inside a garbage-collector callback or __del__ is
    swallowed by Python; the handler sends the signal again instead of raising there."""
    import inspect
    import threading

    sent = threading.Event()
    calls = []

    def fake_kill(pid, sig):
        calls.append((pid, sig))
        sent.set()

    monkeypatch.setattr(cli.os, "kill", fake_kill)

    def _xla_gc_callback():
        return inspect.currentframe()

    def ordinary():
        return inspect.currentframe()

    cli._on_sigint(signal.SIGINT, _xla_gc_callback())  # no raise: deferred
    assert sent.wait(5) and calls == [(os.getpid(), signal.SIGINT)]
    with pytest.raises(KeyboardInterrupt):
        cli._on_sigint(signal.SIGINT, ordinary())
