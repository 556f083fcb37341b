"""The command line is a thin shell: dispatch, files written, errors as one line and exit 2."""

import types

import pytest

from rsd import cli, experiments


def _fake(fail=False):
    module = types.SimpleNamespace()
    module.__doc__ = "A fake experiment."
    module.Config = lambda: None
    module.summary = lambda result: f"summary {result}"

    def run(config):
        if fail:
            raise ValueError("width must be an integer >= 1; got 0.")
        return 42

    def plot(result):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, result])
        return fig

    module.run, module.plot = run, plot
    return module


def test_run_writes_figure_and_prints_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(experiments.REGISTRY, "fake", _fake())
    assert cli.main(["run", "fake", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fake.png").stat().st_size > 0
    assert not list(tmp_path.glob("*.tmp.png"))
    assert "summary 42" in capsys.readouterr().out


def test_bad_value_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(experiments.REGISTRY, "fake", _fake(fail=True))
    assert cli.main(["run", "fake", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "rsd: width must be an integer >= 1; got 0."


def test_unknown_experiment(capsys):
    assert cli.main(["run", "no-such-thing"]) == 2
    assert "unknown experiment 'no-such-thing'" in capsys.readouterr().err


def test_demo_names_registered_experiments(capsys):
    assert all(name in experiments.REGISTRY for name in cli.DEMO)
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name, module in experiments.REGISTRY.items():
        assert name in out and module.__doc__.strip().splitlines()[0] in out


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["frobnicate"])
    assert exit_info.value.code == 2
