"""A resumable folder of units of work: each unit's result stored whole or not at all.

An experiment's rows (a row of the paper's table, an XOR regime, …) are independent
pieces of work. :class:`UnitStore` keeps each finished one as a file, so a run that is
killed restarts at the first unfinished unit, and a rerun with an extra row computes
only that row. Layout of the folder (``OUT/NAME/sweep/`` for an experiment):

* ``manifest.json``: the key the units belong to (the experiment's configuration and
  the versions of rsd, jax and jaxlib) and its hash; a folder whose key differs is
  cleared before use, so a unit never outlives the configuration it was computed for;
* ``units/<name>-<hash>.pkl``: one pickled result per unit; ``hash`` covers the unit's
  inputs beyond the key (e.g. the upstream rates a final-distance row starts from).

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._store import _locked, _write_json, write_atomic

__all__ = ["UnitStore", "run_unit", "write_atomic", "writable_folder"]

_UNITS = "units"
_MANIFEST = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9_.=+-]{1,120}$")


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

    ``run(name, fn)`` returns the stored result of unit ``name`` if it is finished and
    otherwise calls ``fn()``, stores its result and returns it. ``ran`` and ``reused``
    count the units of each kind since the store was opened.
    """

    def __init__(self, folder, key: Any, *, force: bool = False):
        from ._run import _versions

        self.folder = Path(folder)
        self.key = {"key": key, "versions": _versions()}
        self.key_hash = _digest(self.key)
        self.ran = 0
        self.reused = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        with _locked(self.folder):
            manifest = self._manifest()
            if force or manifest is None or manifest.get("key_hash") != self.key_hash:
                shutil.rmtree(self.folder / _UNITS, ignore_errors=True)
                _write_json(self.folder / _MANIFEST, {**self.key, "key_hash": self.key_hash})
            (self.folder / _UNITS).mkdir(exist_ok=True)
            for name in os.listdir(self.folder / _UNITS):
                if name.startswith(".") and name.endswith(".tmp"):
                    (self.folder / _UNITS / name).unlink(missing_ok=True)

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

    def finished(self) -> list[str]:
        """The file names of the finished units (sorted)."""
        return sorted(n for n in os.listdir(self.folder / _UNITS) if n.endswith(".pkl"))

    def run(self, name: str, fn: Callable[[], Any], inputs: Any = None) -> Any:
        """Unit ``name``'s result: loaded when finished, else ``fn()`` computed and stored."""
        path = self.path(name, inputs)
        if path.exists():
            try:
                with open(path, "rb") as f:
                    value = pickle.load(f)
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError):
                path.unlink(missing_ok=True)  # unreadable (e.g. written by other code): recompute
            else:
                self.reused += 1
                return value
        value = fn()
        write_atomic(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        self.ran += 1
        return value


def run_unit(store: UnitStore | None, name: str, fn: Callable[[], Any], inputs: Any = None) -> Any:
    """``store.run(name, fn, inputs)``, or simply ``fn()`` when ``store`` is None."""
    return fn() if store is None else store.run(name, fn, inputs)
