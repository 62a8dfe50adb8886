"""How a data file is read: JSON Lines, CSV or TSV, chosen by the file's extension.

The training container (`bert_train.data`, for training, evaluation and prediction input) and
the CLI's token sample (`bertbatch.token_sample`) both read rows here, so an estimate sees the
rows a job will see. CSV and TSV have a header line; blank lines are skipped everywhere.

Every problem is a `TableError` with the line it is on (None: the whole file) and a message
that does not name the file: each caller adds its own prefix and error type.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Sequence

FORMATS: dict[str, str] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}

Rows = Iterator[tuple[int, dict[str, object]]]


class TableError(ValueError):
    """A file, or one line of it, that cannot be read as a table."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def at(self, prefix: str) -> str:
        """The one-line message behind `prefix` (the file's name, a flag before it)."""
        return f"{prefix} line {self.line}: {self.message}" if self.line is not None else f"{prefix}: {self.message}"


class MissingColumn(TableError):
    """A wanted column is not in the header (CSV/TSV) or not in a line's object (JSONL)."""

    def __init__(self, column: str, present: Sequence[str], line: int, *, in_header: bool) -> None:
        self.column = column
        self.present = tuple(present)
        self.in_header = in_header
        has = f"header: {', '.join(self.present)}" if in_header else f"has: {', '.join(self.present) or 'nothing'}"
        super().__init__(f"missing column {column!r} ({has})", line)


class NotText(TableError):
    """A JSON value that is not text; `value` is the value as parsed."""

    def __init__(self, column: str, value: object) -> None:
        self.column = column
        self.value = value
        if value is None:
            message = f"column {column!r} is empty"
        else:
            kind = {dict: "an object", list: "a list", bool: "true/false"}.get(type(value), repr(value))
            message = f"column {column!r} must be text, not {kind}"
        super().__init__(message)


def format_of(name: str) -> str | None:
    """"jsonl", "csv" or "tsv" by the name's extension (any case); None for any other name."""
    for ext, fmt in FORMATS.items():
        if name.lower().endswith(ext):
            return fmt
    return None


def decode(data: bytes) -> str:
    """UTF-8 text (a byte-order mark dropped); TableError on the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TableError("not UTF-8 text", data[: exc.start].count(b"\n") + 1) from None


def json_text(value: object, column: str) -> str:
    """A text value: a string, or a finite number taken as its text. Anything else (an object, a
    list, true/false, NaN, null) would be trained on as its Python repr, so it is refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    raise NotText(column, value)


def rows(text: str, fmt: str, wanted: Sequence[str], *, partial: bool = False) -> Rows:
    """(line number, {column: value}) for each data row, with the `wanted` columns checked.

    JSONL values are as parsed (see `json_text`); CSV/TSV values are strings. `partial`: `text`
    is the head of a longer file, whose end may fall inside a quoted CSV field: a CSV error, or a
    last CSV row with too few or too many fields, then ends the rows instead of raising.
    """
    return _jsonl_rows(text, wanted) if fmt == "jsonl" else _delimited_rows(text, fmt, wanted, partial=partial)


def _jsonl_rows(text: str, wanted: Sequence[str]) -> Rows:
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TableError(f"malformed JSON ({exc.msg})", n) from None
        if not isinstance(row, dict):
            raise TableError(f"expected a JSON object, got {type(row).__name__}", n)
        for column in wanted:
            if column not in row:
                raise MissingColumn(column, list(row), n, in_header=False)
        yield n, {column: row[column] for column in wanted}


def _delimited_rows(text: str, fmt: str, wanted: Sequence[str], *, partial: bool = False) -> Rows:
    # GLUE TSVs are unquoted (sentences contain bare quotes); CSV follows RFC 4180 quoting.
    stream = io.StringIO(text, newline="")
    reader = csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv" else csv.reader(stream)
    try:
        header = [h.strip() for h in next(reader, [])]
        for column in wanted:
            if column not in header:
                raise MissingColumn(column, header, 1, in_header=True)
        index = {column: header.index(column) for column in wanted}
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                if partial and fmt == "csv" and stream.tell() == len(text):
                    return  # the last row may be a quoted field cut short at the end of the text
                raise TableError(f"expected {len(header)} fields, found {len(row)}", reader.line_num)
            yield reader.line_num, {column: row[i] for column, i in index.items()}
    except csv.Error as exc:
        if not partial:
            raise TableError(f"malformed {fmt.upper()} ({exc})", reader.line_num) from None
