"""JAX's persistent compilation cache, on by default for the command line.

rsd's programs take seconds to compile on a CPU (a theory solve 15–25 s, a fit about
as long), and every new process compiled them again. With the cache on, a program
compiled once is written to disk and later processes load it instead of compiling.

Where the cache lives:

* ``RSD_COMPILATION_CACHE`` unset: the user's cache folder, ``$XDG_CACHE_HOME/rsd/jax``
  (``~/.cache/rsd/jax`` without it; ``~/Library/Caches/rsd/jax`` on macOS,
  ``%LOCALAPPDATA%/rsd/jax`` on Windows);
* ``RSD_COMPILATION_CACHE=<folder>``: that folder;
* ``RSD_COMPILATION_CACHE`` = ``0``, ``off``, ``false``, ``no`` or empty: no cache.

Entries go in a subfolder per host CPU (architecture and instruction-set flags): JAX's
cache key names the backend ("cpu") but not the CPU's features, and an XLA:CPU program
compiled for one CPU may use instructions another lacks (a home folder shared by the
nodes of a cluster). The cache never evicts entries; delete the folder to clear it. It
is trusted like code: JAX runs what it finds there, so keep it in a folder only you can
write to.

Programs that compile in under ``MIN_COMPILE_TIME_S`` are not written (loading one
costs about as much as compiling it). JAX does not cache programs with host callbacks
(``jax.debug.print``, ``io_callback``).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import platform
import sys
import tempfile
import warnings

import jax

__all__ = ["enable", "ENV_VAR", "MIN_COMPILE_TIME_S"]

ENV_VAR = "RSD_COMPILATION_CACHE"
MIN_COMPILE_TIME_S = 0.5
_OFF = frozenset({"", "0", "off", "false", "no", "none"})

# The folder this module configured JAX with, or None (never configured, or undone).
_enabled: pathlib.Path | None = None


def enable(path: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Turn on JAX's persistent compilation cache; return its folder, or None if off.

    ``path`` is the cache's root folder; by default ``RSD_COMPILATION_CACHE`` or the
    user's cache folder (see the module docstring), and ``RSD_COMPILATION_CACHE=off``
    turns caching off. A folder that cannot be created or written to gives a
    ``RuntimeWarning`` and no cache; nothing raises but a ``path`` that is not a folder
    name (``ValueError``). When no path is given and JAX's own cache folder is already
    set (``JAX_COMPILATION_CACHE_DIR``), that setting is kept and returned. Idempotent:
    calling it again with the same folder changes nothing. Call it before the first
    compilation; a later call works too, for the programs compiled after it.
    """
    if path is not None and (not isinstance(path, (str, os.PathLike)) or not os.fspath(path)):
        raise ValueError(f"path must be None or a non-empty folder name (str or os.PathLike); "
                         f"got {path!r:.60}.")
    if not jax.config.jax_enable_compilation_cache:  # turned off in JAX itself
        return None
    if path is None:
        setting = os.environ.get(ENV_VAR)
        if setting is not None and setting.strip().lower() in _OFF:
            _disable()
            return None
        own = jax.config.jax_compilation_cache_dir
        if setting is None and own and _enabled is None:  # the user's own JAX setting wins
            return pathlib.Path(own)
        root = pathlib.Path(setting).expanduser() if setting is not None else _default_root()
    else:
        root = pathlib.Path(path).expanduser()
    folder = (root / _host_tag()).absolute()
    if folder == _enabled and jax.config.jax_compilation_cache_dir == str(folder):
        return folder
    problem = _write_problem(folder)
    if problem is not None:
        warnings.warn(f"rsd: compilation cache off: cannot write to {folder} ({problem}); "
                      f"set {ENV_VAR} to a writable folder, or to 'off'.", RuntimeWarning,
                      stacklevel=2)
        _disable()
        return None
    _configure(str(folder))
    return folder


def _configure(folder: str | None) -> None:
    global _enabled
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_compilation_cache_dir", folder)
    if folder is not None:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
        # -1: no size threshold, and none substituted by JAX for the file system; small
        # CPU programs are worth caching too once they pass the time threshold.
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    # JAX decides once per process, at the first compilation, whether the cache is in
    # use and where; resetting makes it decide again with the settings above.
    compilation_cache.reset_cache()
    _enabled = None if folder is None else pathlib.Path(folder)


def _disable() -> None:
    # Undo only what this module set: a user's own JAX_COMPILATION_CACHE_DIR stays.
    if _enabled is not None:
        _configure(None)


def _default_root(environ=None, system: str | None = None) -> pathlib.Path:
    """The user's cache folder for rsd's compiled programs (before the host subfolder)."""
    environ = os.environ if environ is None else environ
    system = sys.platform if system is None else system
    home = pathlib.Path(environ.get("HOME") or pathlib.Path.home())
    if system == "darwin":
        base = home / "Library" / "Caches"
    elif system.startswith("win"):
        base = pathlib.Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    else:
        xdg = environ.get("XDG_CACHE_HOME", "")
        # The XDG spec: a relative XDG_CACHE_HOME is invalid and ignored.
        base = pathlib.Path(xdg) if xdg and os.path.isabs(xdg) else home / ".cache"
    return base / "rsd" / "jax"


def _host_tag() -> str:
    """``<machine>-<hash of the CPU's instruction-set flags>``, e.g. ``x86_64-1a2b3c4d5e6f``."""
    machine = platform.machine() or "unknown"
    features = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):  # x86, ARM
                    features = " ".join(sorted(value.split()))
                    break
    except OSError:  # not Linux
        pass
    digest = hashlib.sha256(f"{machine}|{features}".encode()).hexdigest()[:12]
    return f"{machine}-{digest}"


def _write_problem(folder: pathlib.Path) -> str | None:
    """None if ``folder`` exists (created if needed) and takes a new file, else why not."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rsd-write-check-"):
            pass
    except OSError as error:
        return error.strerror or type(error).__name__
    return None
