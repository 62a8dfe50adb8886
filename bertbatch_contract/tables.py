"""How a data file is read: JSON Lines, CSV or TSV, chosen by the file's extension.

The training container (`bert_train.data`, for training, evaluation and prediction input) and
the CLI's token sample (`bertbatch.cost.token_sample`) both read rows here, so an estimate sees the
rows a job will see. CSV and TSV have a header line; blank lines are skipped everywhere. Lines
end at `\n` only (a `\r` before it is dropped): U+2028, U+2029 and U+0085 are valid inside a
JSON string and do not end a line.

`data_format` names what the container reads beyond these (gzip or zstd compression, Parquet);
`stream_rows` reads a text format from a binary stream line by line, in bounded memory.

Every problem is a `TableError` with the line it is on (None: the whole file) and a message
that does not name the file: each caller adds its own prefix and error type.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

FORMATS: dict[str, str] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}
# Compression suffixes after a text format's extension (`train.jsonl.gz`, `part-0.csv.zst`).
COMPRESSIONS: dict[str, str] = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
PARQUET = ".parquet"

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


@dataclass(frozen=True)
class DataFormat:
    """What a data file's name says about how to read it."""

    fmt: str  # "jsonl", "csv", "tsv" or "parquet"
    compression: str | None  # "gzip", "zstd" or None (Parquet compresses inside the file)


def data_format(name: str) -> DataFormat | None:
    """The format and compression of a data file by its name (any case): `.jsonl`, `.ndjson`,
    `.csv`, `.tsv`, each optionally followed by `.gz`, `.zst` or `.zstd`, or `.parquet`."""
    lower = name.lower()
    if lower.endswith(PARQUET):
        return DataFormat("parquet", None)
    compression = None
    for ext, kind in COMPRESSIONS.items():
        if lower.endswith(ext):
            compression, lower = kind, lower[: -len(ext)]
            break
    fmt = format_of(lower)
    return DataFormat(fmt, compression) if fmt else None


def extensions() -> str:
    """Every readable extension, for messages."""
    text = ", ".join(FORMATS)
    return f"{text} (each optionally {', '.join(COMPRESSIONS)}), {PARQUET}"


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


def stream_rows(lines: Iterable[bytes], fmt: str, wanted: Sequence[str]) -> Rows:
    """`rows` over a binary stream (an open file, a decompressing reader): one line in memory at
    a time. A file with nothing but blank lines is a TableError "file is empty"."""
    return _stream_jsonl(lines, wanted) if fmt == "jsonl" else _stream_delimited(lines, fmt, wanted)


def _stream_jsonl(lines: Iterable[bytes], wanted: Sequence[str]) -> Rows:
    empty = True
    for n, raw in enumerate(lines, start=1):  # a binary stream splits at b"\n" only
        try:
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError:
            raise TableError("not UTF-8 text", n) from None
        if not line.strip():
            continue
        empty = False
        yield n, _jsonl_row(line, n, wanted)
    if empty:
        raise TableError("file is empty")


def _stream_delimited(lines: Iterable[bytes], fmt: str, wanted: Sequence[str]) -> Rows:
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    line_no = 0

    def text_lines() -> Iterator[str]:
        nonlocal line_no
        for raw in lines:
            line_no += 1
            try:
                yield decoder.decode(raw)
            except UnicodeDecodeError:
                raise TableError("not UTF-8 text", line_no) from None

    yield from _delimited_rows_of(text_lines(), fmt, wanted, whole_file=True)


def _jsonl_row(line: str, n: int, wanted: Sequence[str]) -> dict[str, object]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TableError(f"malformed JSON ({exc.msg})", n) from None
    if not isinstance(row, dict):
        raise TableError(f"expected a JSON object, got {type(row).__name__}", n)
    for column in wanted:
        if column not in row:
            raise MissingColumn(column, list(row), n, in_header=False)
    return {column: row[column] for column in wanted}


def _jsonl_rows(text: str, wanted: Sequence[str]) -> Rows:
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines(): see the module doc
        if not line.strip():
            continue
        yield n, _jsonl_row(line, n, wanted)


def _delimited_rows(text: str, fmt: str, wanted: Sequence[str], *, partial: bool = False) -> Rows:
    stream = io.StringIO(text, newline="")
    at_end = (lambda: stream.tell() == len(text)) if partial else None
    return _delimited_rows_of(stream, fmt, wanted, at_end=at_end)


def _delimited_rows_of(lines: Iterable[str], fmt: str, wanted: Sequence[str], *,
                       at_end: Callable[[], bool] | None = None, whole_file: bool = False) -> Rows:
    """CSV/TSV rows from text lines that keep their line ends. `at_end` (a partial text): says
    whether the reader has reached the end of the text, where a CSV row may be cut short.
    `whole_file`: a file with nothing but blank lines is "file is empty"."""
    # GLUE TSVs are unquoted (sentences contain bare quotes); CSV follows RFC 4180 quoting.
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv" else csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader, [])]
        if whole_file and not any(header) and not any(any(c.strip() for c in row) for row in reader):
            raise TableError("file is empty")
        for column in wanted:
            if column not in header:
                raise MissingColumn(column, header, 1, in_header=True)
        index = {column: header.index(column) for column in wanted}
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                if at_end is not None and fmt == "csv" and at_end():
                    return  # the last row may be a quoted field cut short at the end of the text
                raise TableError(f"expected {len(header)} fields, found {len(row)}", reader.line_num)
            yield reader.line_num, {column: row[i] for column, i in index.items()}
    except csv.Error as exc:
        if at_end is None:
            raise TableError(f"malformed {fmt.upper()} ({exc})", reader.line_num) from None
