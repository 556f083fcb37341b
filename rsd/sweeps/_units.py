"""A resumable folder of units of work: each unit's result stored whole or not at all.

An experiment's rows (a row of the paper's table, an XOR regime, …) are independent
pieces of work. :class:`UnitStore` keeps each finished one as a file, so a run that is
killed restarts at the first unfinished unit, and a rerun with an extra row computes
only that row. Layout of the folder (``OUT/NAME/sweep/`` for an experiment):

* ``manifest.json``: the key the units belong to (the experiment's configuration and
  the versions of rsd, jax and jaxlib) and its hash; a folder whose key differs is
  cleared before use, so a unit never outlives the configuration it was computed for;
* ``units/<name>-<hash>.pkl``: one pickled result per unit; ``hash`` covers the unit's
  inputs beyond the key (e.g. the upstream rates a final-distance row starts from);
* ``units/<name>.work/``: a unit's own files while it runs (:meth:`UnitStore.workspace`;
  an experiment's sweep keeps its chunks there, so a unit killed midway resumes
  inside), cleared with the units.

Several processes (``num_processes`` > 1) share one folder on a shared file system: each
runs the same piece of work, asking for the same units in the same order; the k-th unit
asked for belongs to process k mod N, which computes it, while the others wait for its
file and read it. So the units are split round-robin, every process ends with every
result, and nothing but the folder is shared (no ``jax.distributed``). Process 0 alone
prepares (or clears) the folder; the others wait until its manifest carries their key.
Each process shows it is alive by rewriting ``.alive-<id>`` (a growing count) every
``heartbeat`` seconds; a process waiting for another's unit that has seen that count
grow and then stand still for ``stale_after`` seconds stops with a ``TimeoutError``
naming the lost process, instead of waiting for ever (run the same commands again:
the finished units are kept).

Crash safety is the sweep store's: a unit is written under a hidden temporary name,
flushed and renamed into place, so a unit file exists iff its result is complete.
The files are pickles written by rsd for rsd: read only folders you wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._store import _locked, _write_json, write_atomic

__all__ = ["UnitStore", "run_unit", "write_atomic", "writable_folder"]

_UNITS = "units"
_MANIFEST = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9_.=+-]{1,120}$")
_ALIVE = ".alive-{}"


def _heartbeat(path: Path, interval: float, stop: threading.Event) -> None:
    """Rewrite ``path`` with a growing count every ``interval`` seconds until ``stop``."""
    count = 0
    while True:
        count += 1
        try:
            write_atomic(path, str(count))
        except OSError:  # the folder went away (e.g. removed after the run): nothing to show
            pass
        if stop.wait(interval):
            return


class _Watch:
    """Whether process ``owner`` is lost: its heartbeat file was seen to change, then did
    not change for ``stale_after`` seconds (on this process's clock, so clocks of other
    machines do not matter). A file never seen to change (the process has not started,
    or a file left by an earlier run) is no evidence either way."""

    def __init__(self, path: Path, stale_after: float):
        self.path, self.stale_after = path, stale_after
        self.value, self.changed_at = self._read(), None

    def _read(self):
        try:
            return self.path.read_text()
        except OSError:
            return None

    def lost_for(self) -> float | None:
        """Seconds since the heartbeat stopped, once past ``stale_after``; else None."""
        now, value = time.monotonic(), self._read()
        if value != self.value:
            self.value, self.changed_at = value, now
            return None
        if self.changed_at is not None and now - self.changed_at > self.stale_after:
            return now - self.changed_at
        return None


def writable_folder(out, *, name: str = "out") -> Path:
    """Create folder ``out`` if needed and check that files can be written in it.

    ``ValueError`` naming ``name`` (the argument, e.g. "--out") when ``out`` is a file,
    lies below a file, or cannot be created or written."""
    out = Path(out)
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is" if parent == out else f"is below {str(parent)!r}, which is"
            raise ValueError(f"{name} {str(out)!r} {where} a file, not a folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".rsd-write-check-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(f"{name} {str(out)!r} is not a writable folder ({error.strerror or error}).") from None
    return out


def _digest(value) -> str:
    text = json.dumps(value, sort_keys=True, default=repr, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


class UnitStore:
    """Finished units of one piece of work, kept in ``folder`` across processes and kills.

    Args:
        folder: where the units live (created if needed).
        key: JSON-able description of what the units belong to (for an experiment: its
            name and configuration). A folder holding units of another key is cleared.
        force: clear the folder's units whatever their key.
        num_processes: how many processes share the folder (>= 1).
        process_id: this process's id in [0, num_processes).
        wait_timeout: seconds a process waits for another's unit (or for process 0's
            manifest) before ``TimeoutError``; None waits as long as it takes.
        heartbeat: with several processes, seconds between two rewrites of this
            process's ``.alive-<id>`` file (a daemon thread, stopped with the store).
        stale_after: seconds without a heartbeat after which a process waiting for
            another's unit gives it up for lost (``TimeoutError``); > ``heartbeat``.

    ``run(name, fn)`` returns the stored result of unit ``name`` if it is finished and
    otherwise calls ``fn()`` (or, for another process's unit, waits for its file),
    stores its result and returns it. ``ran`` counts the units this process computed,
    ``reused`` those it read (finished before, or computed by another process).
    """

    def __init__(self, folder, key: Any, *, force: bool = False, num_processes: int = 1,
                 process_id: int = 0, wait_timeout: float | None = None, heartbeat: float = 2.0,
                 stale_after: float = 60.0):
        from ._run import _versions

        self.check_processes(num_processes, process_id, force)
        if wait_timeout is not None and not wait_timeout > 0:
            raise ValueError(f"wait_timeout must be None or > 0 seconds; got {wait_timeout!r}.")
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)) or not 0 < heartbeat < float("inf"):
            raise ValueError(f"heartbeat must be a finite number of seconds > 0; got {heartbeat!r}.")
        if isinstance(stale_after, bool) or not isinstance(stale_after, (int, float)) \
                or not heartbeat < stale_after < float("inf"):
            raise ValueError(f"stale_after must be a finite number of seconds > heartbeat ({heartbeat:g}); "
                             f"got {stale_after!r}.")
        self.folder = Path(folder)
        self.key = {"key": key, "versions": _versions()}
        self.key_hash = _digest(self.key)
        self.ran = 0
        self.reused = 0
        self.num_processes, self.process_id, self.wait_timeout = num_processes, process_id, wait_timeout
        self.stale_after = stale_after
        self._asked = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        if num_processes > 1:
            stop = threading.Event()
            threading.Thread(target=_heartbeat, args=(self.folder / _ALIVE.format(process_id), heartbeat, stop),
                             daemon=True, name=f"rsd-heartbeat-{process_id}").start()
            self._stop_heartbeat = weakref.finalize(self, stop.set)
        if process_id > 0:
            self.wait(lambda: (self._manifest() or {}).get("key_hash") == self.key_hash
                       and (self.folder / _UNITS).is_dir(), "process 0's manifest", owner=0)
            return
        with _locked(self.folder):
            manifest = self._manifest()
            if force or manifest is None or manifest.get("key_hash") != self.key_hash:
                shutil.rmtree(self.folder / _UNITS, ignore_errors=True)
                _write_json(self.folder / _MANIFEST, {**self.key, "key_hash": self.key_hash})
            (self.folder / _UNITS).mkdir(exist_ok=True)
            for name in os.listdir(self.folder / _UNITS):
                if name.startswith(".") and name.endswith(".tmp"):
                    (self.folder / _UNITS / name).unlink(missing_ok=True)

    @staticmethod
    def check_processes(num_processes: int, process_id: int, force: bool = False) -> None:
        """``ValueError`` naming the argument (and its command-line flag) unless
        ``num_processes`` >= 1, ``process_id`` in [0, num_processes) and, with several
        processes, no ``force`` (one process would clear the units the others stored)."""
        if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
            raise ValueError(f"num_processes (--num-processes) must be an integer >= 1; got {num_processes!r}.")
        if isinstance(process_id, bool) or not isinstance(process_id, int) \
                or not 0 <= process_id < num_processes:
            raise ValueError(f"process_id (--process-id) must be an integer in [0, {num_processes}); "
                             f"got {process_id!r}.")
        if force and num_processes > 1:
            raise ValueError("force (--force) with several processes would let one clear the units "
                             "another has stored; delete the folder first, or force with one process.")

    def close(self) -> None:
        """Stop this process's heartbeat (also done when the store is garbage-collected)."""
        if self.num_processes > 1:
            self._stop_heartbeat()

    def wait(self, ready: Callable[[], bool], what: str, *, owner: int) -> None:
        """Wait until ``ready()``: for ``what``, which process ``owner`` produces.
        ``TimeoutError`` after ``wait_timeout`` seconds, or once ``owner`` is lost (its
        heartbeat stood still for ``stale_after`` seconds after it was seen to beat)."""
        watch = _Watch(self.folder / _ALIVE.format(owner), self.stale_after)
        start, pause = time.monotonic(), 0.02
        while not ready():
            if self.wait_timeout is not None and time.monotonic() - start > self.wait_timeout:
                raise TimeoutError(f"process {self.process_id} waited {self.wait_timeout:g} s for "
                                   f"{what} in {self.folder}; is every process running?")
            lost = watch.lost_for()
            if lost is not None:
                raise TimeoutError(
                    f"process {owner} stopped: its heartbeat ({watch.path}) has not changed for "
                    f"{lost:.0f} s while process {self.process_id} waited for {what}. Start every "
                    f"process again with the same command: the finished units are kept.")
            time.sleep(pause)
            pause = min(2 * pause, 1.0)

    def _manifest(self):
        try:
            return json.loads((self.folder / _MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def path(self, name: str, inputs: Any = None) -> Path:
        """The file of unit ``name`` with ``inputs`` (JSON-able; part of the unit's identity)."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"unit name must be 1–120 letters, digits or _.=+-; got {name!r}.")
        return self.folder / _UNITS / f"{name}-{_digest(inputs)[:16]}.pkl"

    def workspace(self, name: str) -> Path:
        """A folder for unit ``name``'s own files while it runs (a sweep's chunks, so that a
        killed unit resumes inside), beside the unit files: cleared with them (``force``,
        another key), so a forced run recomputes everything."""
        return self.path(name).parent / f"{name}.work"

    def finished(self) -> list[str]:
        """The file names of the finished units (sorted)."""
        return sorted(n for n in os.listdir(self.folder / _UNITS) if n.endswith(".pkl"))

    def run(self, name: str, fn: Callable[[], Any], inputs: Any = None) -> Any:
        """Unit ``name``'s result: loaded when finished, else ``fn()`` computed and stored
        (by the process the unit belongs to; the others wait for its file)."""
        path = self.path(name, inputs)
        owner = self._asked % self.num_processes
        self._asked += 1
        while True:
            if owner != self.process_id:
                self.wait(path.exists, f"unit {name!r} of process {owner}", owner=owner)
            try:
                with open(path, "rb") as f:
                    value = pickle.load(f)
            except FileNotFoundError:
                if owner != self.process_id:
                    continue  # moved while the owner renames the folder: wait for it again
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError):
                path.unlink(missing_ok=True)  # unreadable (e.g. written by other code): recompute
            else:
                self.reused += 1
                return value
            break
        value = fn()
        write_atomic(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        self.ran += 1
        return value


def run_unit(store: UnitStore | None, name: str, fn: Callable[[], Any], inputs: Any = None) -> Any:
    """``store.run(name, fn, inputs)``, or simply ``fn()`` when ``store`` is None."""
    return fn() if store is None else store.run(name, fn, inputs)
