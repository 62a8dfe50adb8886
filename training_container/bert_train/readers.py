"""Data files as row streams, in bounded memory: JSONL/CSV/TSV (optionally gzip or zstd
compressed) and Parquet, from a local path (FSx included) or an `s3://` key.

Text formats are read line by line from a buffered binary stream (S3 objects straight from the
response body, no copy on disk) and parsed by `bertbatch_contract.tables`; Parquet is read one
record batch at a time with pyarrow (an S3 object is first downloaded to a temporary file, since
Parquet needs to seek). Every problem is a `tables.TableError` (with its line) or a
`storage.StorageError` (with the URI); `data.read_table` turns them into one-line BadInputs.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from typing import IO, Any

from bertbatch_contract import tables

from . import storage

READ_BUFFER_BYTES = 1 << 20
PARQUET_BATCH_ROWS = 8192


class _Body(io.RawIOBase):
    """An S3 response body as a raw stream, so io.BufferedReader can split it into lines."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        super().close()


@contextlib.contextmanager
def open_raw(uri: str) -> Iterator[IO[bytes]]:
    """The object's bytes as a buffered stream (not decompressed). StorageError naming the URI."""
    if storage.is_s3(uri):
        bucket, key = storage.split_s3(uri)
        try:
            body = storage.make_s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as exc:
            raise storage.s3_error(uri, "read", exc) from None
        stream: IO[bytes] = io.BufferedReader(_Body(body), buffer_size=READ_BUFFER_BYTES)
    else:
        try:
            stream = open(uri, "rb", buffering=READ_BUFFER_BYTES)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise storage.NotFound(f"{uri}: file not found") from None
        except OSError as exc:
            raise storage.StorageError(f"{uri}: cannot read ({exc.strerror or exc})") from None
    try:
        yield stream
    finally:
        stream.close()


def _decompressed(stream: IO[bytes], compression: str | None) -> IO[bytes]:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        return io.BufferedReader(reader, buffer_size=READ_BUFFER_BYTES)
    return stream


def _broken(compression: str) -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile)
    if compression == "zstd":
        import zstandard

        errors += (zstandard.ZstdError,)
    return errors


def rows(uri: str, wanted: Sequence[str]) -> tables.Rows:
    """(line, {column: value}) for each data row of one file; the format by its name."""
    kind = tables.data_format(uri)
    if kind is None:
        raise tables.TableError(f"unknown file type (expected one of {tables.extensions()})")
    if kind.fmt == "parquet":
        yield from _parquet_rows(uri, wanted)
        return
    with open_raw(uri) as raw:
        stream = _decompressed(raw, kind.compression)
        if kind.compression is None:
            yield from tables.stream_rows(stream, kind.fmt, wanted)
            return
        try:
            yield from tables.stream_rows(stream, kind.fmt, wanted)
        except _broken(kind.compression) as exc:
            raise tables.TableError(f"cannot decompress ({kind.compression}: {exc})") from None


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path holding the object: the path itself, or a temporary download of an S3 object."""
    if not storage.is_s3(uri):
        if not os.path.exists(uri):
            raise storage.NotFound(f"{uri}: file not found")
        yield uri
        return
    fd, tmp = tempfile.mkstemp(prefix="bert_train-", suffix=os.path.basename(uri))
    os.close(fd)
    try:
        storage.download_file(uri, tmp)
        yield tmp
    finally:
        os.unlink(tmp)


def _parquet_rows(uri: str, wanted: Sequence[str]) -> tables.Rows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with local_copy(uri) as path:
        try:
            pf = pq.ParquetFile(path, memory_map=True)
        except (pa.ArrowException, OSError) as exc:
            raise tables.TableError(f"not a Parquet file ({str(exc).splitlines()[0]})") from None
        names = pf.schema_arrow.names
        for column in wanted:
            if column not in names:
                raise tables.TableError(f"missing column {column!r} (columns: {', '.join(names)})")
        if pf.metadata.num_rows == 0:
            raise tables.TableError("file is empty")
        n = 0
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=list(dict.fromkeys(wanted))):
            columns = [batch.column(c).to_pylist() for c in wanted]
            for values in zip(*columns, strict=True):
                n += 1
                yield n, dict(zip(wanted, values, strict=True))


def count_rows(uri: str) -> int:
    """How many data rows one file has, without parsing them where the format allows: JSONL and
    TSV rows are the non-blank lines (TSV less its header; neither has quoting that spans lines),
    Parquet's come from its footer; CSV is parsed (a quoted field may hold a newline). Agrees
    with `rows` on every file `rows` reads without error."""
    kind = tables.data_format(uri)
    if kind is None:
        raise tables.TableError(f"unknown file type (expected one of {tables.extensions()})")
    if kind.fmt == "parquet":
        import pyarrow.parquet as pq

        with local_copy(uri) as path:
            return int(pq.ParquetFile(path).metadata.num_rows)
    if kind.fmt == "csv":
        return sum(1 for _ in rows(uri, []))
    with open_raw(uri) as raw:
        stream = _decompressed(raw, kind.compression)
        try:
            lines = sum(1 for line in stream if line.decode("utf-8", "replace").strip())
        except _broken(kind.compression or "gzip") as exc:
            raise tables.TableError(f"cannot decompress ({kind.compression}: {exc})") from None
    return max(0, lines - 1) if kind.fmt == "tsv" else lines
