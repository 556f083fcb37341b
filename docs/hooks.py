"""MkDocs hooks for rsd's site (loaded by ``hooks:`` in mkdocs.yml).

* Each notebook page (``tutorials/*.ipynb``, rendered by mkdocs-jupyter without being
  executed) starts with a note saying so.
* ``guides/cli.md`` gets the ``--help`` of ``rsd`` and of each subcommand, taken from
  ``rsd.cli.build_parser()`` while the site builds, so the page cannot drift from the
  command line.
* The "Reproduction" section of the nav gets one page per experiment of
  ``rsd.experiments.REPRODUCE``, ``experiments/NAME.md``, written here while the site
  builds (never a file in docs/): the module docstring (the protocol), what a run of
  each size does (``describe(Config.for_size(size))``), the commands, and the figures of
  the committed runs under ``docs/results/SIZE/NAME/`` with a link to their section of
  ``docs/results/SIZE/report.md``. Each committed report joins the nav too, and
  ``reproduction.md`` gets the list of both.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

CLI_MARKER = "<!-- cli-reference -->"
EXPERIMENTS_MARKER = "<!-- experiment-pages -->"
NAV_SECTION = "Reproduction"
# The sizes whose committed runs each experiment page shows, "no committed run yet"
# where there is none; a run of another size under docs/results/ is shown when present.
RESULT_SIZES = ("quick", "cpu")
TABLE_SIZES = ("quick", "cpu", "paper")
SIZE_OPTIONS = {"tiny": "--size tiny", "quick": "--quick", "cpu": "--size cpu", "paper": "--paper"}
NOTEBOOK_NOTE = (
    '<div class="admonition note"><p class="admonition-title">Shown without outputs</p>'
    "<p>This notebook is rendered as committed, without running it while the site is "
    "built. The test suite runs it from top to bottom at the tiny size; run it yourself "
    "(download it with the button above, or open <code>notebooks/{name}</code>) for the "
    "figures, with <code>QUICK = True</code> for CPU sizes.</p></div>\n")
HELP_WIDTH = "88"


def on_page_content(html, page, config, files):
    if not page.file.src_uri.endswith(".ipynb"):
        return html
    note = NOTEBOOK_NOTE.format(name=page.file.src_uri.rpartition("/")[2])
    head, found, rest = html.partition("</h1>")  # after the notebook's title, if it has one
    return head + found + note + rest if found else note + html


def on_page_markdown(markdown, page, config, files):
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if EXPERIMENTS_MARKER in markdown:
        markdown = markdown.replace(EXPERIMENTS_MARKER, experiment_list(page.file.src_uri, files))
    return markdown


def on_config(config):
    """Append the experiment pages and the committed reports to the nav's Reproduction
    section (the reports only where they exist: a missing one would be a broken nav entry)."""
    sections = [entry for entry in config["nav"] or []
                if isinstance(entry, dict) and isinstance(entry.get(NAV_SECTION), list)]
    if len(sections) != 1:
        raise PluginError(f"docs/hooks.py: mkdocs.yml's nav needs one '{NAV_SECTION}:' section "
                          "holding a list of pages")
    section = sections[0][NAV_SECTION]
    section += [{name: f"experiments/{name}.md"} for name in _experiment_names()]
    section += [{f"Report: {size}": uri} for size, uri in _reports(Path(config["docs_dir"]))]
    return config


def on_files(files, config):
    for name in _experiment_names():
        uri = f"experiments/{name}.md"
        existing = files.get_file_from_path(uri)
        if existing is not None:
            raise PluginError(f"docs/{uri} is written while the site builds; remove the file")
        files.append(File.generated(config, uri, content=experiment_page(name, files)))
    return files


def _experiment_names():
    from rsd.experiments import REPRODUCE

    return REPRODUCE


def _sizes_in_order(sizes):
    from rsd.experiments import SIZES

    return sorted(sizes, key=lambda s: (SIZES.index(s) if s in SIZES else len(SIZES), s))


def _reports(docs_dir: Path):
    """[(size, "results/SIZE/report.md")] of the committed reports, in the order of SIZES."""
    found = [p.parent.name for p in (docs_dir / "results").glob("*/report.md")]
    return [(size, f"results/{size}/report.md") for size in _sizes_in_order(found)]


def _result_sizes(files, below: str) -> set[str]:
    """The sizes SIZE with files under ``results/SIZE/below`` (a folder "NAME/" or a file)."""
    sizes = set()
    for f in files:
        parts = f.src_uri.split("/", 2)
        if len(parts) == 3 and parts[0] == "results" and (
                parts[2] == below or below.endswith("/") and parts[2].startswith(below)):
            sizes.add(parts[1])
    return sizes


def _relative(uri: str, start: str) -> str:
    """The link from the page ``start`` to the file ``uri`` (both relative to docs/)."""
    return os.path.relpath(uri, os.path.dirname(start) or ".").replace(os.sep, "/")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _report_anchor(report: File, name: str) -> str:
    """The id of the report's section ``## name`` ("" when it has none), as the toc
    extension of the build will make it."""
    from markdown.extensions.toc import slugify, unique

    seen, found, fenced = set(), "", False
    for line in Path(report.abs_src_path).read_text(encoding="utf-8").splitlines():
        fenced ^= line.lstrip().startswith("```")
        if not fenced and line.startswith("#") and line.lstrip("#").startswith(" "):
            heading = line.lstrip("#").strip()
            slug = unique(slugify(heading, "-"), seen)
            if heading == name and not found:
                found = slug
    return found


def committed_run(name: str, size: str, page_uri: str, files) -> list[str]:
    """Markdown for the committed run of ``name`` at ``size``: its figures and links to
    its metrics and its section of the report; [] when there is none."""
    folder = f"results/{size}/{name}/"
    figures = sorted(f.src_uri for f in files if f.src_uri.startswith(folder)
                     and f.src_uri.endswith(".png"))
    metrics = files.get_file_from_path(folder + "metrics.json")
    report = files.get_file_from_path(f"results/{size}/report.md")
    if not figures and metrics is None:
        return []
    links = []
    if report is not None:
        anchor = _report_anchor(report, name)
        target = _relative(report.src_uri, page_uri) + (f"#{anchor}" if anchor else "")
        links.append(f"[its section of the {size} report]({target})")
    if metrics is not None:
        links.append(f"[`metrics.json`]({_relative(metrics.src_uri, page_uri)})")
    said = f": {' and '.join(links)}." if links else "."
    lines = [f"The run committed under `docs/{folder}`{said}", ""]
    for uri in figures:
        stem = uri.rpartition("/")[2].removesuffix(".png")
        lines += [f"![{name}, {size}: {stem}]({_relative(uri, page_uri)})", ""]
    return lines


def experiment_page(name: str, files) -> str:
    """Markdown of ``experiments/NAME.md``."""
    from rsd.experiments import REGISTRY

    module = REGISTRY[name]
    uri = f"experiments/{name}.md"
    summary, _, protocol = inspect.cleandoc(module.__doc__).partition("\n\n")
    parts = [f"# {name}", "", " ".join(summary.split()), "", "## Protocol", "", protocol.strip(), "",
             f"The code: [`{module.__name__}`][{module.__name__}] (`Config` → `run` → `plot` / "
             "`metrics`)."]
    notebook = f"tutorials/{module.__name__.rpartition('.')[2]}.ipynb"
    if files.get_file_from_path(notebook) is not None:
        parts[-1] += f" The notebook: [{notebook.rpartition('/')[2]}]({_relative(notebook, uri)})."
    parts += ["", "## What each size runs", "",
              "The protocol above is the reference code's; what a run of each size does, every "
              "deviation from the protocol said:", "",
              "| size | what runs |", "|---|---|"]
    parts += [f"| `{size}` | {_cell(module.describe(module.Config.for_size(size)))} |"
              for size in TABLE_SIZES]
    parts += ["", "```bash"]
    parts += [f"rsd run {name} {SIZE_OPTIONS[size]} --out rsd-{size}" for size in TABLE_SIZES]
    parts += ["```", "",
              "`--seeds N` and `--set key=value` (any field of `Config`) change a run; see the "
              f"[command line]({_relative('guides/cli.md', uri)}).", "",
              "## Committed runs", ""]
    for size in _sizes_in_order(set(RESULT_SIZES) | _result_sizes(files, f"{name}/")):
        parts += [f"### {size}", ""]
        parts += (committed_run(name, size, uri, files)
                  or [f"No committed run yet at the {size} size.", ""])
    return "\n".join(parts) + "\n"


def experiment_list(page_uri: str, files) -> str:
    """Markdown list of the experiment pages, then of the committed reports."""
    from rsd.experiments import REGISTRY

    lines = []
    for name in _experiment_names():
        summary = inspect.cleandoc(REGISTRY[name].__doc__).partition("\n\n")[0]
        link = _relative(f"experiments/{name}.md", page_uri)
        lines.append(f"- [{name}]({link}): {' '.join(summary.split())}")
    reports = _sizes_in_order(_result_sizes(files, "report.md"))
    if reports:
        lines += ["", "The committed reports:", ""]
        lines += [f"- [{size}]({_relative(f'results/{size}/report.md', page_uri)}): "
                  f"`rsd reproduce {SIZE_OPTIONS.get(size, '--size ' + size)}`" for size in reports]
    return "\n".join(lines)


@contextlib.contextmanager
def _plain_help(width):
    """argparse wraps help at $COLUMNS (and newer Pythons may colour it): fix both so the
    page is the same on every machine."""
    wanted = {"COLUMNS": width, "NO_COLOR": "1"}
    previous = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def cli_reference() -> str:
    """Markdown: ``rsd --help``, then one section per subcommand with its ``--help``."""
    from rsd.cli import build_parser

    parser = build_parser()
    (subcommands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    summaries = {choice.dest: choice.help for choice in subcommands._choices_actions}
    with _plain_help(HELP_WIDTH):
        parts = ["## `rsd`", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in subcommands.choices.items():
            parts += [f"## `rsd {name}`", ""]
            if summaries.get(name):
                parts += [summaries[name][0].upper() + summaries[name][1:] + ".", ""]
            parts += ["```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)
