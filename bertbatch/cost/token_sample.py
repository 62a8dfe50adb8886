"""The tokens a run computes, from a sample of its training file.

`bertbatch estimate --data` and the estimate `submit` records read the first MiB of the training
file (at most SAMPLE_ROWS rows), tokenize those rows with the job's tokenizer, truncated at
max_seq_length with [CLS]/[SEP] counted, as the container does, and take

    computed tokens per row = mean tokens per row / (1 - padding share)

The padding share is the container's measured one (gpu_throughput.json "padding": each
length-grouped batch is padded to its longest row). Without a tokenizer every row counts as
max_seq_length tokens (the padded upper bound) and `TokenCount.fallback` says why.

The rows are read by the container's reader, `bertbatch_contract.tables`: JSON Lines, CSV
(RFC 4180 quoting) or TSV (unquoted, as GLUE's), a header line for CSV/TSV, blank lines skipped.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions

from bertbatch_contract import store, tables

from ..core.aws_clients import is_not_found
from ..core.errors import BertBatchError
from ..core.session import Session
from ..jobs import aws_batch as jobs
from ..models import staging as models

SAMPLE_BYTES = 1 << 20
SAMPLE_ROWS = 2000
TOKENIZER_JSON, VOCAB_TXT, TOKENIZER_CONFIG = "tokenizer.json", "vocab.txt", "tokenizer_config.json"
WORDPIECE_SPECIALS = ("[CLS]", "[SEP]", "[UNK]")

Row = str | tuple[str, str]


# --- the head of the file ---------------------------------------------------------------------
@dataclass(frozen=True)
class Head:
    name: str  # the path or URI, as given
    data: bytes  # at most SAMPLE_BYTES from the start
    size: int  # of the whole file

    @property
    def whole(self) -> bool:
        return len(self.data) >= self.size


def local_head(path: str, flag: str) -> Head:
    p = Path(path)
    if not p.is_file():
        raise BertBatchError(f"{flag} {path}: no such file")
    try:
        with p.open("rb") as fh:
            return Head(path, fh.read(SAMPLE_BYTES), p.stat().st_size)
    except OSError as exc:
        raise BertBatchError(f"{flag} {path}: cannot read ({exc.strerror or exc})") from None


def s3_head(s3: Any, uri: str, flag: str) -> Head:
    bucket, key = jobs.parse_s3_uri(uri)
    try:
        size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
        data = b"" if size == 0 else s3.get_object(Bucket=bucket, Key=key,
                                                    Range=f"bytes=0-{SAMPLE_BYTES - 1}")["Body"].read()
    except botocore.exceptions.ClientError as exc:
        jobs.raise_s3_error(exc, flag, uri)
        raise
    return Head(uri, data, size)


def read_head(session: Session, data: str, flag: str) -> Head:
    return s3_head(session.client("s3"), data, flag) if data.startswith("s3://") else local_head(data, flag)


# --- the rows ---------------------------------------------------------------------------------
def file_format(name: str, flag: str) -> str:
    kind = tables.data_format(name)
    if kind is None:
        raise BertBatchError(f"{flag} {name}: unknown file type (the job reads {tables.extensions()})")
    if kind.fmt == "parquet" or kind.compression == "zstd":
        raise BertBatchError(f"{flag} {name}: the estimate samples .jsonl, .csv and .tsv files, plain or .gz; "
                             "give one of those (or --rows)")
    return kind.fmt


def _text(head: Head, flag: str) -> str:
    data = head.data
    if (kind := tables.data_format(head.name)) is not None and kind.compression == "gzip":
        try:  # the head of a gzip stream decompresses as far as it goes
            data = zlib.decompressobj(wbits=31).decompress(data)
        except zlib.error as exc:
            raise BertBatchError(f"{flag} {head.name}: cannot decompress (gzip: {exc})") from None
        if head.whole:
            return _decoded(data, head, flag)
        end = data.rfind(b"\n")
        if end < 0:
            raise BertBatchError(f"{flag} {head.name}: no complete line in the first {SAMPLE_BYTES >> 20} MiB")
        return _decoded(data[: end + 1], head, flag)
    if not head.whole:  # the sample ends at its last complete line
        end = data.rfind(b"\n")
        if end < 0:
            raise BertBatchError(f"{flag} {head.name}: no complete line in the first {SAMPLE_BYTES >> 20} MiB")
        data = data[: end + 1]
    return _decoded(data, head, flag)


def _decoded(data: bytes, head: Head, flag: str) -> str:
    try:
        return tables.decode(data)
    except tables.TableError as exc:
        raise BertBatchError(exc.at(f"{flag} {head.name}")) from None


def _rows(head: Head, text: str, fmt: str, columns: list[str], flag: str) -> Iterator[list[str]]:
    """The columns' text, row by row; the CLI's wording for a missing column or a value not text."""
    what = f"{flag} {head.name}"
    try:
        for line, values in tables.rows(text, fmt, columns, partial=not head.whole):
            try:
                texts = [tables.json_text(values[c], c) for c in columns]
            except tables.NotText as exc:
                raise BertBatchError(f"{what} line {line}: column {exc.column!r} must be text "
                                     f"(got {json.dumps(exc.value)[:40]})") from None
            yield texts
    except tables.MissingColumn as exc:
        has = ", ".join(exc.present) or "nothing"
        if exc.in_header:
            raise BertBatchError(f"{what}: no column {exc.column!r} in the header (has: {has})") from None
        raise BertBatchError(f"{what} line {exc.line}: no column {exc.column!r} (has: {has})") from None
    except tables.TableError as exc:
        raise BertBatchError(exc.at(what)) from None


def sample_rows(head: Head, *, text_column: str, pair_column: str | None, flag: str = "--data",
                limit: int = SAMPLE_ROWS) -> list[Row]:
    """Up to `limit` rows of the text column (and the pair column) from the head of the file;
    BertBatchError naming the file (and line) for a file the job could not read."""
    fmt = file_format(head.name, flag)
    text = _text(head, flag)
    columns = [text_column] + ([pair_column] if pair_column else [])
    rows: list[Row] = []
    for values in _rows(head, text, fmt, columns, flag):
        rows.append(values[0] if len(values) == 1 else (values[0], values[1]))
        if len(rows) >= limit:
            break
    if fmt == "csv" and not head.whole and len(rows) > 1 and len(rows) < limit:
        rows.pop()  # it may be a quoted field cut short at the end of the sample
    if not rows:
        raise BertBatchError(f"{flag} {head.name}: no data rows")
    return rows


# --- the tokenizer ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Tokenizer:
    tokenizer: Any  # tokenizers.Tokenizer
    source: str  # which file, for the output


def _wordpiece(vocab_text: str, what: str, lowercase: bool) -> Any:
    from tokenizers import BertWordPieceTokenizer
    from tokenizers import Tokenizer as HFTokenizer

    vocab: dict[str, int] = {}
    # One token a line, its line number its id, as BertTokenizer reads it: only "\n" ends a line
    # (str.splitlines would also split at the control and separator characters some vocabs hold).
    lines = vocab_text.replace("\r\n", "\n").split("\n")
    for index, token in enumerate(lines[:-1] if lines and lines[-1] == "" else lines):
        vocab[token] = index
    missing = [t for t in WORDPIECE_SPECIALS if t not in vocab]
    if missing:
        raise BertBatchError(f"{what}: not a WordPiece vocab.txt (lacks {', '.join(missing)})")
    wordpiece = BertWordPieceTokenizer(vocab, lowercase=lowercase)  # the [CLS] ... [SEP] template included
    return HFTokenizer.from_str(wordpiece.to_str())


def tokenizer_from_bytes(name: str, data: bytes, what: str, *, lowercase: bool = True) -> Any:
    """A tokenizers.Tokenizer from a tokenizer.json (name ending .json) or a WordPiece vocab.txt."""
    from tokenizers import Tokenizer as HFTokenizer

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BertBatchError(f"{what}: not UTF-8 text") from None
    if not name.lower().endswith(".json"):
        return _wordpiece(text, what, lowercase)
    try:
        return HFTokenizer.from_str(text)
    except Exception as exc:  # the tokenizers library raises plain Exception
        raise BertBatchError(f"{what}: not a tokenizer.json ({str(exc).splitlines()[0]})") from None


def _lowercase(config: bytes | None) -> bool:
    """do_lower_case of a tokenizer_config.json; BERT's default (True) without one."""
    try:
        value = json.loads(config).get("do_lower_case", True) if config else True
    except (ValueError, AttributeError):
        return True
    return bool(value)


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BertBatchError(f"{what}: cannot read ({exc.strerror or exc})") from None


def from_path(path: str, flag: str) -> Tokenizer:
    """--tokenizer PATH: a tokenizer.json, a WordPiece vocab.txt (lowercased, as the container's
    --vocab), or a model directory holding one of them."""
    p = Path(path)
    what = f"{flag} {path}"
    if p.is_dir():
        return from_directory(p, what)
    if not p.is_file():
        raise BertBatchError(f"{what}: no such file")
    kind = TOKENIZER_JSON if p.name.lower().endswith(".json") else "WordPiece vocab"
    return Tokenizer(tokenizer_from_bytes(p.name, _read_file(p, what), what), f"{kind} {path}")


def from_directory(directory: Path, what: str) -> Tokenizer:
    for name in (TOKENIZER_JSON, VOCAB_TXT):
        p = directory / name
        if p.is_file():
            config = directory / TOKENIZER_CONFIG
            lowercase = _lowercase(_read_file(config, what) if config.is_file() else None)
            return Tokenizer(tokenizer_from_bytes(name, _read_file(p, what), f"{what}/{name}", lowercase=lowercase),
                             f"{name} of {directory}")
    raise BertBatchError(f"{what}: no {TOKENIZER_JSON} or {VOCAB_TXT} in this directory")


def _s3_read(s3: Any, uri: str) -> bytes | None:
    bucket, key = jobs.parse_s3_uri(uri)
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return body


def from_s3_prefix(s3: Any, prefix: str) -> Tokenizer | str:
    """The tokenizer of the model at an s3:// prefix: its tokenizer.json, else its vocab.txt (one
    small file; tokenizer_config.json too for a vocab.txt, for its lowercasing); else the reason."""
    for name in (TOKENIZER_JSON, VOCAB_TXT):
        uri = prefix.rstrip("/") + "/" + name
        data = _s3_read(s3, uri)
        if data is not None:
            config = _s3_read(s3, prefix.rstrip("/") + "/" + TOKENIZER_CONFIG) if name == VOCAB_TXT else None
            return Tokenizer(tokenizer_from_bytes(name, data, uri, lowercase=_lowercase(config)), uri)
    return f"no {TOKENIZER_JSON} or {VOCAB_TXT} under {prefix}"


def find(session: Session, *, tokenizer: str | None, model: str, offline: bool,
         flag: str = "--tokenizer") -> Tokenizer | str:
    """The job's tokenizer: --tokenizer PATH, else the model's (a local directory, an s3://
    prefix, a staged or registered name); or, when there is none to be had, why not."""
    if tokenizer:
        return from_path(tokenizer, flag)
    if model.startswith("random:"):
        return f"--model {model} takes its vocab from --vocab (give --tokenizer FILE)"
    if Path(model).is_dir():
        return from_directory(Path(model), f"--model {model}")
    if model.startswith("s3://"):
        return from_s3_prefix(session.client("s3"), model)
    if offline:
        return f"the model {model} was not looked up (--offline; give --tokenizer FILE)"
    try:
        location = models.resolve(session, model)
    except BertBatchError as exc:
        return exc.message
    if location.startswith("s3://"):
        return from_s3_prefix(session.client("s3"), location)
    if location.startswith("/"):
        return f"the model {model} is on the jobs' FSx, not on this machine (give --tokenizer FILE)"
    return f"the model {model} is not staged (bertbatch models import {model}; or give --tokenizer FILE)"


# --- the count --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenCount:
    """What the estimate assumes a row costs, and where that came from."""

    # "sample": tokenized rows; "store": a prepared store's manifest (every row, counted when it was
    # tokenized); "max_seq_length": every row counted as max_seq_length tokens
    source: str
    computed_tokens_per_row: float  # what the GPU computes per row, padding included
    rows_sampled: int | None = None
    whole_file: bool | None = None  # the sample is every row of the file, not those of its first MiB
    tokenizer: str | None = None
    mean_tokens_per_row: float | None = None  # real tokens, truncated at max_seq_length, [CLS]/[SEP] included
    padding_share: float | None = None
    padding_source: str | None = None
    fallback: str | None = None  # why the rows were not tokenized

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, seq_len: int) -> str:
        if self.source == "store":
            return (f"Tokens: the store's manifest, all {self.rows_sampled or 0:,} rows as {self.tokenizer} tokenized "
                    f"them: {self.mean_tokens_per_row:.1f} tokens a row (truncated at {seq_len}, [CLS]/[SEP] "
                    f"included) + {self.padding_share or 0:.1%} padding ({self.padding_source}) = "
                    f"{self.computed_tokens_per_row:.1f} computed tokens a row.")
        if self.source != "sample":
            return (f"Tokens: every row counted as {seq_len} tokens (--max-seq-length), an upper bound: "
                    f"{self.fallback}.")
        n = self.rows_sampled or 0
        sampled = f"all {n:,} rows" if self.whole_file else f"a sample, the first {n:,} rows,"
        return (f"Tokens: {sampled} tokenized with {self.tokenizer}: "
                f"{self.mean_tokens_per_row:.1f} tokens a row (truncated at {seq_len}, [CLS]/[SEP] included) "
                f"+ {self.padding_share or 0:.1%} padding ({self.padding_source}) = "
                f"{self.computed_tokens_per_row:.1f} computed tokens a row.")


def store_manifest(session: Session, location: str, flag: str) -> dict[str, Any] | None:
    """The manifest of the tokenized store at a local folder or an s3:// prefix (written last by
    `prepare`), or None when `location` holds none (it is data files, or not there)."""
    if tables.data_format(location) is not None:
        return None  # a data file's name is never a store
    if location.startswith("s3://"):
        uri = location.rstrip("/") + "/" + store.MANIFEST
        bucket, key = jobs.parse_s3_uri(uri)
        try:
            body = session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except botocore.exceptions.ClientError as exc:
            if is_not_found(exc):
                return None
            jobs.raise_s3_error(exc, flag, uri)
            raise
    else:
        path = Path(location) / store.MANIFEST
        if not path.is_file():
            return None
        body = path.read_bytes()
    try:
        manifest = json.loads(body)
        rows, tokens = int(manifest["rows"]), int(manifest["tokens"])
        if manifest.get("format") != store.FORMAT or rows < 1 or tokens < rows:
            raise ValueError(manifest.get("format"))
    except (ValueError, KeyError, TypeError):
        raise BertBatchError(f"{flag} {location}: {store.MANIFEST} is not a {store.FORMAT} manifest") from None
    return dict(manifest)


def from_store(manifest: dict[str, Any], *, location: str, flag: str, seq_len: int, padding_share: float,
               padding_source: str) -> TokenCount:
    """The computed tokens a row of a prepared store: its real token count, every row."""
    if int(manifest["max_seq_length"]) != seq_len:
        # The trainer refuses such a store before step 1; say so before anything is paid for.
        raise BertBatchError(f"{flag} {location}: the store was prepared with --max-seq-length "
                             f"{manifest['max_seq_length']}, not {seq_len}: prepare it again or use its length")
    rows = int(manifest["rows"])
    mean = int(manifest["tokens"]) / rows
    return TokenCount(source="store", computed_tokens_per_row=min(float(seq_len), mean / (1 - padding_share)),
                      rows_sampled=rows, whole_file=True,
                      tokenizer=str((manifest.get("tokenizer") or {}).get("model") or "its tokenizer"),
                      mean_tokens_per_row=mean, padding_share=padding_share, padding_source=padding_source)


def fallback(seq_len: int, reason: str) -> TokenCount:
    return TokenCount(source="max_seq_length", computed_tokens_per_row=float(seq_len), fallback=reason)


def mean_tokens(tokenizer: Any, rows: list[Row], seq_len: int) -> float:
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=seq_len)  # longest first, room left for [CLS]/[SEP], as the container
    encodings = tokenizer.encode_batch(rows)
    return sum(len(e.ids) for e in encodings) / len(encodings)


def count(rows: list[Row], tokenizer: Tokenizer, *, seq_len: int, padding_share: float, padding_source: str,
          total_rows: int) -> TokenCount:
    mean = mean_tokens(tokenizer.tokenizer, rows, seq_len)
    # A batch is padded to its longest row, never beyond max_seq_length.
    computed = min(float(seq_len), mean / (1 - padding_share))
    return TokenCount(source="sample", computed_tokens_per_row=computed, rows_sampled=len(rows),
                      whole_file=len(rows) >= total_rows,
                      tokenizer=tokenizer.source, mean_tokens_per_row=mean, padding_share=padding_share,
                      padding_source=padding_source)
