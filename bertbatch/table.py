"""Plain-text tables for terminal output."""

from __future__ import annotations

from typing import Iterable, Sequence


def render(headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Sequence[int] = ()) -> str:
    """Columns separated by two spaces; columns whose index is in `right` are right-aligned."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))

    def fmt(row: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(row):
            out.append(v.rjust(widths[i]) if i in right else v.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return "\n".join([fmt(list(headers))] + [fmt(r) for r in cells])
