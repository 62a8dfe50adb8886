"""Tokenizing large batches fast: the fast tokenizer's own `encode_batch_fast` (no offsets), in
worker processes that each load the tokenizer from its JSON definition (the `tokenizers`
library only, no transformers import), returning flat numpy arrays rather than Python lists.

    with Tokenize(tokenizer, max_seq_length, workers=4, mode="head+tail") as tok:
        for batch in tok.map(chunks_of_texts):   # in order
            batch.ids, batch.offsets, batch.types, batch.truncated

The ids are exactly what `long_text.tokenize` gives for the same `--long-text`: for `truncate`
what `tokenizer(texts, pairs, truncation=True, max_length=N)` gives (the tokenizer's
post-processor adds [CLS]/[SEP]; pairs are truncated longest-first).
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import long_text

Texts = tuple[Sequence[str], Sequence[str] | None]  # (texts, pairs)


@dataclass
class Encoded:
    """A batch of tokenized rows: row i's ids are ids[offsets[i]:offsets[i + 1]]."""

    ids: np.ndarray  # int32, every row's ids one after another
    offsets: np.ndarray  # int64, len(rows) + 1
    types: np.ndarray | None  # int8 token type ids (sentence pairs only), aligned with ids
    truncated: int = 0  # rows longer than the max length

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def definition(tokenizer: Any) -> str:
    """The fast tokenizer's whole definition (vocabulary, normaliser, post-processor) as JSON."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer: preparing a store needs one")
    return str(backend.to_str())


def fingerprint(tokenizer: Any) -> str:
    """sha256 of the tokenizer's definition: equal fingerprints tokenize alike. The truncation and
    padding state is left out (transformers changes it on each call; the max length is a setting
    of its own)."""
    spec = json.loads(definition(tokenizer))
    spec.pop("truncation", None)
    spec.pop("padding", None)
    text = json.dumps(spec, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{type(tokenizer).__name__}\n{text}".encode()).hexdigest()


@dataclass(frozen=True)
class _Tokenizers:
    """A worker's tokenizer, untruncated (`full`: to see which rows are too long) and truncating."""

    full: Any
    cut: Any
    fit: long_text.Fit


_worker: _Tokenizers | None = None  # the tokenizers of this worker process


def _load(spec: str, max_length: int, mode: str = long_text.TRUNCATE) -> _Tokenizers:
    from tokenizers import Tokenizer

    full, cut = Tokenizer.from_str(spec), Tokenizer.from_str(spec)
    full.no_truncation()
    cut.enable_truncation(max_length)
    for tok in (full, cut):
        tok.no_padding()
    return _Tokenizers(full, cut, long_text.Fit(max_length, mode))


def _init(spec: str, max_length: int, mode: str) -> None:
    global _worker
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    _worker = _load(spec, max_length, mode)


def _fitted(tok: _Tokenizers, inputs: list[Any]) -> tuple[list[Any], int]:
    """Encodings (anything with .ids and .type_ids) fitted to the max length, and how many were too long."""
    rows: list[Any] = tok.full.encode_batch_fast(inputs, add_special_tokens=True)
    over = [i for i, e in enumerate(rows) if len(e) > tok.fit.max_length]
    if tok.fit.mode == long_text.CHUNK:
        raise ValueError("--long-text chunk: a tokenized store holds one row per text")
    if tok.fit.mode == long_text.HEAD_TAIL:
        for i in over:
            kept = long_text.head_tail(rows[i].ids, rows[i].special_tokens_mask, tok.fit.max_length)
            rows[i] = _Row(kept, [0] * len(kept))
    elif over:
        for i, e in zip(over, tok.cut.encode_batch_fast([inputs[i] for i in over], add_special_tokens=True),
                        strict=True):
            rows[i] = e
    return rows, len(over)


@dataclass(frozen=True)
class _Row:
    ids: list[int]
    type_ids: list[int]


def _encode_with(tok: _Tokenizers, texts: Texts) -> Encoded:
    single, pairs = texts
    inputs = list(single) if pairs is None else list(zip(single, pairs, strict=True))
    encodings, truncated = _fitted(tok, inputs)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    offsets = np.zeros(len(encodings) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int32, count=total)
    types = (np.fromiter(itertools.chain.from_iterable(e.type_ids for e in encodings), dtype=np.int8, count=total)
             if pairs is not None else None)
    return Encoded(ids=ids, offsets=offsets, types=types, truncated=truncated)


def _encode(texts: Texts) -> Encoded:
    assert _worker is not None, "not a worker process"
    return _encode_with(_worker, texts)


class Tokenize:
    """Tokenize batches in `workers` processes (1: in this process)."""

    def __init__(self, tokenizer: Any, max_length: int, *, workers: int | None = None,
                 mode: str = long_text.TRUNCATE) -> None:
        self.spec = definition(tokenizer)
        self.max_length = max_length
        self.mode = mode  # --long-text
        self.workers = workers or os.cpu_count() or 1
        self._pool: Any = None
        self._local: Any = None

    def __enter__(self) -> Tokenize:
        if self.workers > 1:
            # spawn: the parent may hold threads (boto3, tokenizers) that fork would copy mid-lock
            ctx = multiprocessing.get_context("spawn")
            self._pool = ctx.Pool(self.workers, initializer=_init, initargs=(self.spec, self.max_length, self.mode))
        else:
            self._local = _load(self.spec, self.max_length, self.mode)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()

    def map(self, batches: Iterable[Texts]) -> Iterator[Encoded]:
        """Encoded batches in the order given; at most 2 x workers batches in flight."""
        if self._pool is None:
            for texts in batches:
                yield _encode_with(self._local, texts)
            return
        # Not Pool.imap: its feeder thread would read the whole input ahead into memory.
        pending: collections.deque[Any] = collections.deque()
        for texts in batches:
            pending.append(self._pool.apply_async(_encode, (texts,)))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
