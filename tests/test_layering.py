"""rsd's layering: lower packages never import higher ones, nor another package's private names.

The order, from the top (pyproject.toml, ``[tool.importlinter]``)::

    __main__ > cli > experiments > bench | sweeps > training | fitting
             > networks | theory | data > quantities : _validation : _batching : _compilation_cache

``|`` separates independent siblings, ``:`` siblings that may import each other; the
root modules at the bottom are the base every package uses.

* import-linter keeps the contracts on the package as it is (every import counts, also
  one inside a function), and breaks them on a copy with a back-import planted in it;
* an AST check: no module imports a private name (a module or an attribute whose name
  starts with ``_``) from another subpackage, nor reaches one as an attribute of an
  imported rsd package. Within one subpackage, and from the base modules, imports are
  free.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rsd"
BASE = frozenset({"_validation", "_batching", "_compilation_cache", "quantities"})
"""Root modules shared by every layer: importing them is never a cross-package leak."""

ALLOWED_PRIVATE_IMPORTS: frozenset[str] = frozenset()
"""Known exceptions to the private-name check, as ``"rsd/path.py: rsd.name"`` strings
(the check's own report format). Keep it empty: fix the import instead."""


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the ``rsd`` under ``root``, with ``root/pyproject.toml``, no cache."""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    env = dict(os.environ, PYTHONPATH=str(root), COLUMNS="250", NO_COLOR="1", TERM="dumb")
    return subprocess.run([sys.executable, "-c", code, "--no-cache", "--no-logo", "pyproject.toml"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _copy(tmp_path: Path) -> Path:
    """The package's Python files and pyproject.toml under ``tmp_path``."""
    shutil.copytree(PACKAGE, tmp_path / "rsd",
                    ignore=lambda folder, names: [n for n in names if n == "__pycache__"
                                                  or ((Path(folder) / n).is_file() and not n.endswith(".py"))])
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _plant(root: Path, module: str, line: str):
    path = root / "rsd" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_contracts_are_kept():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert {c["type"] for c in contracts} == {"layers", "private_modules"}
    run = _lint(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(contracts)} kept, 0 broken" in run.stdout, run.stdout


@pytest.mark.parametrize("module, line, chain", [
    # A higher layer imported by a lower one.
    ("sweeps/_plan.py", "from ..experiments import _common", "rsd.sweeps._plan -> rsd.experiments"),
    # Independent siblings: the theory knows nothing of networks.
    ("theory/_dynamics.py", "from ..networks import Network", "rsd.theory._dynamics -> rsd.networks"),
    # Downward but private: only the private-modules contract catches it.
    ("experiments/_driver.py", "from ..bench._core import memory_bandwidth",
     "rsd.experiments._driver -> rsd.bench._core"),
    # Inside a function counts too.
    ("data/_synthetic.py", "def _late():\n    from ..training import train",
     "rsd.data._synthetic -> rsd.training"),
])
def test_a_planted_back_import_breaks_the_contracts(tmp_path, module, line, chain):
    root = _copy(tmp_path)
    _plant(root, module, line)
    run = _lint(root)
    assert run.returncode != 0, run.stdout + run.stderr
    assert "BROKEN" in run.stdout and chain in run.stdout, run.stdout + run.stderr


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _leak(owner: str, target: str) -> bool:
    """Whether module ``owner`` may not reach ``target`` (a dotted name under rsd)."""
    parts = target.split(".")[1:]
    if not parts:
        return False
    home = owner.split(".")[1:2]
    if home == parts[:1]:
        return False
    if parts[0] in BASE:
        parts = parts[1:]
    return any(_is_private(p) for p in parts)


def _private_imports(package_dir: Path) -> list[str]:
    """``"rsd/path.py: rsd.name"`` for each private name of another subpackage that a
    module imports (or reaches as an attribute of an rsd package it imported)."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        owner = _module_name(path, package_dir)
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        bound = {}  # local name -> the rsd module it is bound to
        targets = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "rsd":
                        targets.append(alias.name)
                        if alias.asname:
                            bound[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = owner.split(".")
                    anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                if base.split(".")[0] != "rsd":
                    continue
                targets.append(base)
                for alias in node.names:
                    targets.append(f"{base}.{alias.name}")
                    bound[alias.asname or alias.name] = f"{base}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound):
                targets.append(f"{bound[node.value.id]}.{node.attr}")
        rel = path.relative_to(package_dir.parent).as_posix()
        found += sorted({f"{rel}: {t}" for t in targets if _leak(owner, t)})
    return found


def test_no_package_imports_another_packages_private_names():
    leaks = [f for f in _private_imports(PACKAGE) if f not in ALLOWED_PRIVATE_IMPORTS]
    assert not leaks, "private names imported across rsd's packages:\n" + "\n".join(leaks)
    stale = ALLOWED_PRIVATE_IMPORTS - set(_private_imports(PACKAGE))
    assert not stale, f"remove from ALLOWED_PRIVATE_IMPORTS (no longer imported): {sorted(stale)}"


def test_the_private_name_check_finds_planted_leaks(tmp_path):
    root = _copy(tmp_path)
    _plant(root, "sweeps/_run.py", "def _late():\n    from ..experiments._common import fit_seeds")
    _plant(root, "fitting/_loss_rate.py", "from ..theory._dynamics import _loss_curve as _lc")
    _plant(root, "experiments/_estimate.py", "from .. import theory\n_f = theory._solve")
    _plant(root, "bench/_rows.py", "import rsd.training._engine as _engine")
    # Allowed: the base modules, dunders, and private names inside one package.
    _plant(root, "data/_mnist.py", "from .._validation import check_choice as _c\nfrom .. import __version__")
    _plant(root, "theory/_pairwise.py", "from ._dynamics import _final_distance as _fd")
    found = _private_imports(root / "rsd")
    assert found == [
        "rsd/bench/_rows.py: rsd.training._engine",
        "rsd/experiments/_estimate.py: rsd.theory._solve",
        "rsd/fitting/_loss_rate.py: rsd.theory._dynamics",
        "rsd/fitting/_loss_rate.py: rsd.theory._dynamics._loss_curve",
        "rsd/sweeps/_run.py: rsd.experiments._common",
        "rsd/sweeps/_run.py: rsd.experiments._common.fit_seeds",
    ], found


def test_the_theory_says_where_predicted_rates_went():
    import rsd.fitting
    import rsd.theory

    for name in ("predicted_rates", "PredictedRates"):
        assert name not in rsd.theory.__all__ and name in rsd.fitting.__all__
        with pytest.raises(AttributeError, match=f"rsd.fitting.{name}"):
            getattr(rsd.theory, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        rsd.theory.nothing_here  # noqa: B018
