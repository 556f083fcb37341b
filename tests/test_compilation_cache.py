"""The persistent compilation cache (rsd._compilation_cache): written by one process,
loaded by the next, off on request, and never a crash.

What enable() does to JAX's configuration is process-wide, so those checks run in
fresh subprocesses; the checks that leave the configuration alone run here.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import pytest

from rsd import _compilation_cache as cc

REPO = pathlib.Path(__file__).resolve().parents[1]

# Counts JAX's own monitoring events (compiler.py): a write to the persistent cache
# records "cache_misses", a program loaded from it "cache_hits". They count what the
# cache did, so unlike a compile-time comparison they cannot flake on a busy machine.
SCRIPT = r"""
import json
import jax, jax.numpy as jnp

events = []
jax.monitoring.register_event_listener(lambda name, **kwargs: events.append(name))

import rsd._compilation_cache as cc

first = cc.enable()
again = cc.enable()
settings = {name: getattr(jax.config, name) for name in (
    "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes")}
# This program compiles in milliseconds, under the time threshold: lower it so that the
# test needs no slow compile. That the threshold itself is set is checked above.
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
value = jax.jit(lambda x: jnp.sum(jnp.sin(x) * jnp.cos(x[::-1])))(jnp.arange(5.0))
print(json.dumps(dict(
    first=None if first is None else str(first), again=None if again is None else str(again),
    settings=settings, value=float(value),
    writes=events.count("/jax/compilation_cache/cache_misses"),
    hits=events.count("/jax/compilation_cache/cache_hits"))))
"""


def _run(tmp_path, setting):
    """Run SCRIPT in a fresh process with RSD_COMPILATION_CACHE = setting (None: unset);
    HOME and XDG_CACHE_HOME point into tmp_path, so nothing reaches the real ones."""
    env = {k: v for k, v in os.environ.items()
           if k not in (cc.ENV_VAR, "JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"),
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    if setting is not None:
        env[cc.ENV_VAR] = setting
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _files(root):
    root = pathlib.Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    # First process: RSD_COMPILATION_CACHE unset, so the user's cache folder.
    first = _run(tmp_path, None)
    folder = pathlib.Path(first["first"])
    assert folder.parent == tmp_path / "xdg" / "rsd" / "jax"
    assert re.fullmatch(r"[\w.-]+-[0-9a-f]{12}", folder.name)  # the host's subfolder
    assert first["again"] == first["first"]  # idempotent
    assert first["settings"] == {"jax_compilation_cache_dir": str(folder),
                                 "jax_persistent_cache_min_compile_time_secs": cc.MIN_COMPILE_TIME_S,
                                 "jax_persistent_cache_min_entry_size_bytes": -1}
    assert first["writes"] >= 1 and first["hits"] == 0
    written = _files(folder)
    assert any(name.startswith("jit__lambda") for name in written), written

    # Second process: the same root named by RSD_COMPILATION_CACHE; it loads, writes nothing.
    second = _run(tmp_path, str(tmp_path / "xdg" / "rsd" / "jax"))
    assert second["first"] == first["first"]
    assert second["hits"] >= 1 and second["writes"] == 0
    assert _files(folder) == written and second["value"] == first["value"]
    assert _files(tmp_path / "home") == []


def test_off_writes_nothing(tmp_path):
    out = _run(tmp_path, "off")
    assert out["first"] is None and out["again"] is None
    assert out["settings"]["jax_compilation_cache_dir"] is None
    assert out["writes"] == 0 and out["hits"] == 0
    assert _files(tmp_path) == []


@pytest.mark.parametrize("setting", ["0", "OFF", "", " false ", "no"])
def test_off_settings_leave_jax_alone(monkeypatch, setting):
    monkeypatch.setenv(cc.ENV_VAR, setting)
    before = jax.config.jax_compilation_cache_dir
    assert cc.enable() is None
    assert jax.config.jax_compilation_cache_dir == before


def test_unwritable_folder_warns_and_leaves_caching_off(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # a path below a file fails even for root
    before = jax.config.jax_compilation_cache_dir
    with pytest.warns(RuntimeWarning, match="compilation cache off: cannot write to"):
        assert cc.enable(blocker / "cache") is None
    monkeypatch.setenv(cc.ENV_VAR, str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match=re.escape(cc.ENV_VAR)):
        assert cc.enable() is None
    assert jax.config.jax_compilation_cache_dir == before
    assert blocker.read_text() == "not a folder"


def test_a_jax_cache_folder_set_by_the_user_is_kept(tmp_path, monkeypatch):
    monkeypatch.delenv(cc.ENV_VAR, raising=False)
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
    try:
        assert cc.enable() == tmp_path / "mine"
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    assert not (tmp_path / "mine").exists()


@pytest.mark.parametrize("environ, system, expected", [
    ({"HOME": "/h", "XDG_CACHE_HOME": "/x"}, "linux", "/x/rsd/jax"),
    ({"HOME": "/h"}, "linux", "/h/.cache/rsd/jax"),
    ({"HOME": "/h", "XDG_CACHE_HOME": ""}, "linux", "/h/.cache/rsd/jax"),
    ({"HOME": "/h", "XDG_CACHE_HOME": "relative/x"}, "linux", "/h/.cache/rsd/jax"),  # XDG: ignored
    ({"HOME": "/h", "XDG_CACHE_HOME": "/x"}, "darwin", "/h/Library/Caches/rsd/jax"),
])
def test_default_root(environ, system, expected):
    assert cc._default_root(environ, system) == pathlib.Path(expected)


def test_host_tag_is_stable_and_a_folder_name():
    tag = cc._host_tag()
    assert tag == cc._host_tag()
    assert re.fullmatch(r"[\w.-]+-[0-9a-f]{12}", tag) and os.sep not in tag


@pytest.mark.parametrize("path", [123, "", b"/tmp/x"])
def test_bad_path_raises(path):
    with pytest.raises(ValueError, match="path must be None or a non-empty folder name"):
        cc.enable(path)
