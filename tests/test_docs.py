"""The documentation site: API coverage, runnable examples and a strict build.

* Every name in every ``rsd.<package>.__all__`` has an entry (a ``::: rsd.<package>.<name>``
  directive) in the API reference under docs/api/.
* Every ```python block of the docs pages and of README.md runs, each file's blocks in
  order in one namespace, in a scratch folder. A block is skipped when the line before
  its fence (blank lines aside) is ``<!-- skip-test -->``.
* Every ```python block in the docstring of a public name (the "Example" sections the
  API reference shows) runs, each in a fresh namespace.
* Every sweep spec shown in a ```toml block is valid.
* ``mkdocs build --strict`` succeeds with no warning. It runs in a subprocess started
  by the module's first test, alongside the examples, and is checked by the last tests.
* Every experiment of ``rsd.experiments.REPRODUCE`` has a page in the built site (written
  by docs/hooks.py) that says what its quick size runs.
"""

from __future__ import annotations

import html
import importlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PACKAGES = ("theory", "quantities", "networks", "data", "training", "fitting", "sweeps",
            "experiments", "bench")
SKIP_MARKER = "<!-- skip-test -->"
BUILD_TIMEOUT_S = 600

FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
TOML_FENCE = re.compile(r"^```toml[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
INDENTED_FENCE = re.compile(r"^([ \t]*)```python[ \t]*\n(.*?)^\1```[ \t]*$", re.S | re.M)
DIRECTIVE = re.compile(r"^:::[ \t]+(rsd(?:\.\w+)+)[ \t]*$", re.M)


def code_blocks(path: Path):
    """[(line of the fence, code)] of the ```python blocks of a Markdown file that run."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        before = [line.strip() for line in text[:match.start()].splitlines() if line.strip()]
        if before and before[-1] == SKIP_MARKER:
            continue
        code = match.group(1)
        blocks.append((text.count("\n", 0, match.start()) + 1, code))
    return blocks


def _pages():
    return sorted(DOCS.rglob("*.md")) + [README]


@pytest.fixture(scope="module")
def site_build(tmp_path_factory):
    """``mkdocs build --strict`` running in a subprocess: (the process, its site folder)."""
    folder = tmp_path_factory.mktemp("docs-build")
    site, log = folder / "site", folder / "build.log"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", JAX_PLATFORMS="cpu")
    with open(log, "w") as out:  # a file, not a pipe: a long log never blocks the build
        process = subprocess.Popen(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    yield process, site, log
    if process.poll() is None:
        process.kill()
        process.wait()


def test_the_site_build_starts(site_build):
    """The first test: it starts the build, which then runs alongside the examples below
    and is checked by the last test."""
    process, _, _ = site_build
    assert process.pid


def test_code_blocks_are_found():
    assert code_blocks(DOCS / "theory.md"), "docs/theory.md should hold a runnable example"
    assert code_blocks(README), "README.md should hold a runnable example"


@pytest.mark.parametrize("package", PACKAGES)
def test_api_reference_lists_every_public_name(package):
    listed = set()
    for page in (DOCS / "api").glob("*.md"):
        listed.update(DIRECTIVE.findall(page.read_text(encoding="utf-8")))
    module = importlib.import_module(f"rsd.{package}")
    missing = [name for name in module.__all__ if f"rsd.{package}.{name}" not in listed]
    assert not missing, (f"rsd.{package} names missing from the API reference (docs/api/*.md, "
                         f"'::: rsd.{package}.NAME'): {missing}")


def test_every_notebook_is_a_tutorial_page():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = DOCS / "tutorials" / notebook.name
        assert page.is_symlink() and page.resolve() == notebook.resolve(), (
            f"docs/tutorials/{notebook.name} should link to notebooks/{notebook.name}")
        assert f"tutorials/{notebook.name}" in nav, f"tutorials/{notebook.name} is not in mkdocs.yml's nav"


@pytest.mark.parametrize("path", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files an example writes land in a scratch folder
    namespace = {"__name__": "__docs_example__"}
    for line, code in code_blocks(path):
        exec(compile(code, f"{path.relative_to(ROOT)}:{line}", "exec"), namespace)  # noqa: S102


def _docstring_examples():
    """[(name, code)]: the ```python blocks in the docstrings of every public name of
    rsd (and of the public methods of public classes), in the order of ``__all__``."""
    import inspect

    def methods(cls):
        for attr, raw in vars(cls).items():
            if not attr.startswith("_") and (inspect.isfunction(raw)
                                             or isinstance(raw, (classmethod, staticmethod))):
                yield attr, getattr(cls, attr)

    found, seen = [], set()
    for package in PACKAGES:
        module = importlib.import_module(f"rsd.{package}")
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj) or hasattr(obj, "__wrapped__")):
                continue
            targets = [(f"rsd.{package}.{name}", obj)]
            if inspect.isclass(obj):
                targets += [(f"rsd.{package}.{name}.{attr}", m) for attr, m in methods(obj)]
            for label, target in targets:
                # A classmethod's bound method is a new object on every getattr and may
                # reuse a freed one's id, so deduplicate by the function it wraps (module
                # and class attributes, alive for the whole session). Keying on the
                # bound method's id made xdist workers collect different tests.
                key = getattr(target, "__func__", target)
                doc = inspect.getdoc(target)
                if not doc or id(key) in seen:
                    continue
                seen.add(id(key))
                found += [(label, textwrap.dedent(m.group(2)))
                          for m in INDENTED_FENCE.finditer(doc + "\n")]
    return found


DOCSTRING_EXAMPLES = _docstring_examples()


def test_docstring_examples_are_found():
    names = {name for name, _ in DOCSTRING_EXAMPLES}
    assert {"rsd.theory.solve", "rsd.fitting.fit_rates", "rsd.training.Setting.from_paper"} <= names


@pytest.mark.parametrize("name, code", DOCSTRING_EXAMPLES, ids=[n for n, _ in DOCSTRING_EXAMPLES])
def test_docstring_examples_run(name, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"<docstring of {name}>", "exec"), {"__name__": "__docs_example__"})  # noqa: S102


def test_sweep_specs_in_the_docs_are_valid():
    """Every ```toml block that is a sweep spec (it starts with ``base =``) parses and plans."""
    import tomllib

    from rsd import sweeps

    specs = []
    for page in _pages():
        for match in TOML_FENCE.finditer(page.read_text(encoding="utf-8")):
            if match.group(1).lstrip().startswith("base ="):
                specs.append((page, match.group(1)))
    assert specs
    for page, text in specs:
        plan = sweeps.make_plan(sweeps.parse_spec(tomllib.loads(text)))
        assert plan.cells, page


def _finished(site_build):
    """The built site's folder, once the build has finished with no warning."""
    process, site, log = site_build
    try:
        process.wait(timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"mkdocs build took over {BUILD_TIMEOUT_S} s:\n{log.read_text(errors='replace')}")
    output = log.read_text(encoding="utf-8", errors="replace")
    warnings = [line for line in output.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert process.returncode == 0 and not warnings, output
    return site


def _text(page_html: str) -> str:
    """A page's text: tags dropped, entities decoded, white space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page_html)).split())


def test_site_builds_strictly(site_build):
    site = _finished(site_build)
    assert (site / "index.html").is_file()
    cli = (site / "guides" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "rsd sweep" in cli and "--distributed" in cli, "the CLI reference lacks the parser's help"
    for package in PACKAGES:
        assert (site / "api" / package / "index.html").is_file()


def test_every_experiment_has_a_page(site_build):
    from rsd.experiments import REGISTRY, REPRODUCE

    site = _finished(site_build)
    for name in REPRODUCE:
        page = site / "experiments" / name / "index.html"
        assert page.is_file(), f"no page for {name} (docs/hooks.py writes experiments/{name}.md)"
        module = REGISTRY[name]
        # The page's text has the sentence without its Markdown: `code` is a <code> element.
        sentence = " ".join(module.describe(module.Config.for_size("quick")).replace("`", "").split())
        assert sentence in _text(page.read_text(encoding="utf-8")), (
            f"experiments/{name}: the quick size's describe() sentence is missing")
    reproduction = (site / "reproduction" / "index.html").read_text(encoding="utf-8")
    assert all(f'href="../experiments/{name}/"' in reproduction for name in REPRODUCE)
