"""MkDocs hooks for rsd's site (loaded by ``hooks:`` in mkdocs.yml).

* Each notebook page (``tutorials/*.ipynb``, rendered by mkdocs-jupyter without being
  executed) starts with a note saying so.
* ``guides/cli.md`` gets the ``--help`` of ``rsd`` and of each subcommand, taken from
  ``rsd.cli.build_parser()`` while the site builds, so the page cannot drift from the
  command line.
"""

from __future__ import annotations

import argparse
import contextlib
import os

CLI_MARKER = "<!-- cli-reference -->"
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
    if CLI_MARKER not in markdown:
        return markdown
    return markdown.replace(CLI_MARKER, cli_reference())


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
