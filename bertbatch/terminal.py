"""Where output goes: rich consoles on the streams of the moment, and whether a person is watching.

A console is made per use on the current sys.stdout/sys.stderr (click's test runner swaps them),
so rich writes colours, bars and redraws only to a terminal and plain text everywhere else.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Sequence

import click
from rich.console import Console
from rich.table import Table

# Width for text that is not going to a terminal: tables keep their natural width in a pipe.
UNLIMITED_WIDTH = 10_000


def is_terminal(*, err: bool = False) -> bool:
    stream = sys.stderr if err else sys.stdout
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def forced_width() -> int | None:
    """The width click was told to use (`terminal_width`, e.g. in tests); None: the terminal's."""
    ctx = click.get_current_context(silent=True)
    return ctx.terminal_width if ctx is not None else None


def console(*, err: bool = False) -> Console:
    """A console on the current stdout (or stderr). Markup and highlighting are off: job names,
    URIs and log lines are printed as they are."""
    return Console(file=sys.stderr if err else sys.stdout, width=forced_width(), markup=False, highlight=False,
                   emoji=False)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], right: Sequence[int]) -> Table:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if i in right else "left", overflow="fold")
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    return table


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Sequence[int] = ()) -> str:
    """The table as plain text: columns two spaces apart, `right` columns right-aligned, no
    trailing spaces; at its natural width unless a width is forced."""
    buffer = io.StringIO()
    Console(file=buffer, width=forced_width() or UNLIMITED_WIDTH, color_system=None, markup=False,
            highlight=False, emoji=False).print(_table(headers, rows, right))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Sequence[int] = ()) -> None:
    """On a terminal: a rich table fitted to it; elsewhere: `render_table`'s plain text."""
    if is_terminal():
        console().print(_table(headers, list(rows), right))
    else:
        click.echo(render_table(headers, rows, right=right))
