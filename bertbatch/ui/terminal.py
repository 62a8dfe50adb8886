"""Where output goes: rich consoles on the streams of the moment, and whether a person is watching.

A console is made per use on the current sys.stdout/sys.stderr (click's test runner swaps them),
so rich writes colours, bars and redraws only to a terminal and plain text everywhere else.

Tables fit the terminal (or the width click was told to use): a cell wraps between words, never
inside one, and when even that is too wide the caller's low-priority columns are dropped, with
one line under the table naming them. In a pipe a table keeps its natural width.
"""

from __future__ import annotations

import io
import re
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import click
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

# Width for text that is not going to a terminal: tables keep their natural width in a pipe.
UNLIMITED_WIDTH = 10_000
SEPARATOR = 2  # spaces between two columns (no box, one space of padding each side, none at the edges)
# Where a word wider than its column may break when nothing else fits: after '_' or '/'.
_BREAK_POINTS = re.compile(r"[^_/]*[_/]|[^_/]+")


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


def width(*, err: bool = False) -> int | None:
    """The columns output must fit: the forced width, else the terminal's; None in a pipe."""
    forced = forced_width()
    if forced:
        return forced
    return console(err=err).width if is_terminal(err=err) else None


def wrap_prose(text: str, columns: int | None) -> str:
    """A line of prose wrapped between words to `columns`, continuation lines indented two spaces
    (a word wider than that stays whole); as it is when it fits or `columns` is None."""
    if columns is None or cell_len(text) <= columns:
        return text
    return textwrap.fill(text, columns, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)


def echo_wrapped(text: str, *, err: bool = False) -> None:
    """A line of prose for people, wrapped to `width()`; unchanged in a pipe."""
    click.echo(wrap_prose(text, width(err=err)), err=err)


# --- fitting a table to a width ---------------------------------------------------------------------
@dataclass(frozen=True)
class Fit:
    columns: list[int]  # the columns shown, in order
    widths: list[int] | None  # the width of each shown column; None: every column at its natural width
    dropped: list[str]  # headers of the columns left out


def _pieces(word: str) -> list[str]:
    """A word cut after each '_' or '/': where a header (EVAL_ACCURACY) or, as a last resort, a
    path may break."""
    return _BREAK_POINTS.findall(word) or [word]


def _natural(cells: Sequence[str]) -> int:
    return max((cell_len(line) for cell in cells for line in cell.splitlines() or [""]), default=0)


def _minimum(header: str, cells: Sequence[str]) -> int:
    """The narrowest the column can be without breaking a word: its longest value word, and its
    header's longest piece (a header may break after '_')."""
    words = [w for cell in cells for w in cell.split()]
    pieces = [p for w in header.split() for p in _pieces(w)]
    return max((cell_len(w) for w in [*words, *pieces]), default=0)


def _total(columns: Sequence[int], widths: Sequence[int]) -> int:
    return sum(widths[i] for i in columns) + SEPARATOR * max(len(columns) - 1, 0)


def _shrink(widths: list[int], columns: Sequence[int], floor: Sequence[int], limit: int) -> None:
    """Narrow the widest column that can still narrow, one column at a time, until the table
    fits `limit` or every column is at its floor."""
    excess = _total(columns, widths) - limit
    while excess > 0:
        narrowable = [i for i in columns if widths[i] > floor[i]]
        if not narrowable:
            return
        widest = max(narrowable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1


def _to_drop(headers: Sequence[str], minimum: Sequence[int], limit: int, drop: Sequence[str]) -> list[int]:
    """The columns of `drop`, in its order, that go until the words of the rest fit `limit`; then
    each that would fit again comes back, the most important first."""
    shown, out = list(range(len(headers))), []
    for name in drop:
        if _total(shown, minimum) <= limit:
            break
        if name in headers and headers.index(name) in shown:
            shown.remove(headers.index(name))
            out.append(headers.index(name))
    for i in reversed(list(out)):
        if _total(sorted([*shown, i]), minimum) <= limit:
            shown = sorted([*shown, i])
            out.remove(i)
    return out


def fit(headers: Sequence[str], rows: Sequence[Sequence[str]], limit: int | None, drop: Sequence[str] = ()) -> Fit:
    """Which columns to show and how wide, for a table that must fit `limit` columns (None: no
    limit). Wrapping between words comes first; the columns named in `drop` (first dropped first;
    names not among the headers are skipped) go only when the words alone are too wide, and a
    dropped column that fits again once later ones are gone comes back. If even the columns that
    stay cannot fit, their longest words break (after '_' or '/', else anywhere)."""
    columns = list(range(len(headers)))
    cells = [[headers[i], *(row[i] for row in rows)] for i in columns]
    natural = [max(_natural(c), 1) for c in cells]
    if limit is None or _total(columns, natural) <= limit:
        return Fit(columns, None, [])
    minimum = [max(_minimum(headers[i], cells[i][1:]), 1) for i in columns]
    dropped = _to_drop(headers, minimum, limit, drop)
    columns = [i for i in columns if i not in dropped]
    widths = list(natural)
    _shrink(widths, columns, minimum, limit)
    _shrink(widths, columns, [1] * len(widths), limit)  # the last resort: words break
    return Fit(columns, [widths[i] for i in columns], [headers[i] for i in dropped])


def wrap_cell(text: str, columns: int) -> str:
    """`text` in lines of at most `columns`, broken between words; a word wider than that breaks
    after '_' or '/', and a piece still too wide anywhere (filling the line)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            pieces = [word] if cell_len(word) <= columns else [
                part for piece in _pieces(word) for part in (list(piece) if cell_len(piece) > columns else [piece])]
            for n, piece in enumerate(pieces):
                joined = line + (" " if n == 0 and line else "") + piece
                if line and cell_len(joined) > columns:
                    lines.append(line)
                    line = piece
                else:
                    line = joined
        lines.append(line)
    return "\n".join(lines)


# --- printing ---------------------------------------------------------------------------------------
def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int], fitted: Fit) -> Table:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    widths = fitted.widths
    for n, i in enumerate(fitted.columns):
        header = headers[i] if widths is None else wrap_cell(headers[i], widths[n])
        table.add_column(header, justify="right" if i in right else "left", overflow="fold",
                         width=None if widths is None else widths[n])
    for row in rows:
        table.add_row(*(row[i] if widths is None else wrap_cell(row[i], widths[n])
                        for n, i in enumerate(fitted.columns)))
    return table


def _cells(rows: Iterable[Sequence[object]]) -> list[list[str]]:
    return [["-" if v is None else str(v) for v in row] for row in rows]


def _dropped_note(fitted: Fit, columns: int | None) -> str | None:
    if not fitted.dropped:
        return None
    return (f"Not shown at {columns} columns: {', '.join(fitted.dropped)} "
            "(a wider terminal or -o json shows them)")


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Sequence[int] = (),
                 drop: Sequence[str] = ()) -> str:
    """The table as plain text: columns two spaces apart, `right` columns right-aligned, no
    trailing spaces; at its natural width unless a width is forced (then fitted to it, with the
    line naming dropped columns under it)."""
    cells, limit = _cells(rows), forced_width()
    fitted = fit(headers, cells, limit, drop)
    buffer = io.StringIO()
    Console(file=buffer, width=limit or UNLIMITED_WIDTH, color_system=None, markup=False,
            highlight=False, emoji=False).print(_table(headers, cells, right, fitted))
    text = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())
    note = _dropped_note(fitted, limit)
    return text if note is None else f"{text}\n{wrap_prose(note, limit)}"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Sequence[int] = (),
                drop: Sequence[str] = ()) -> None:
    """On a terminal: a rich table fitted to it; elsewhere: `render_table`'s plain text. `drop`
    names the columns that may be left out, least important first, when the words do not fit."""
    if not is_terminal():
        click.echo(render_table(headers, rows, right=right, drop=drop))
        return
    cells, limit = _cells(rows), width()
    fitted = fit(headers, cells, limit, drop)
    console().print(_table(headers, cells, right, fitted))
    note = _dropped_note(fitted, limit)
    if note is not None:
        echo_wrapped(note)
