"""Tokenizing large batches fast: the fast tokenizer's own `encode_batch_fast` (no offsets), in
worker processes that each load the tokenizer from its JSON definition (the `tokenizers`
library only, no transformers import), returning flat numpy arrays rather than Python lists.

    with Tokenize(tokenizer, max_seq_length, workers=4) as tok:
        for batch in tok.map(chunks_of_texts):   # in order
            batch.ids, batch.offsets, batch.types

The ids are exactly what `tokenizer(texts, pairs, truncation=True, max_length=N)` gives (the
tokenizer's post-processor adds [CLS]/[SEP]; pairs are truncated longest-first).
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

Texts = tuple[Sequence[str], Sequence[str] | None]  # (texts, pairs)


@dataclass
class Encoded:
    """A batch of tokenized rows: row i's ids are ids[offsets[i]:offsets[i + 1]]."""

    ids: np.ndarray  # int32, every row's ids one after another
    offsets: np.ndarray  # int64, len(rows) + 1
    types: np.ndarray | None  # int8 token type ids (sentence pairs only), aligned with ids

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


_worker: Any = None  # the tokenizer of this worker process


def _load(spec: str, max_length: int) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(spec)
    tok.enable_truncation(max_length)
    tok.no_padding()
    return tok


def _init(spec: str, max_length: int) -> None:
    global _worker
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    _worker = _load(spec, max_length)


def _encode_with(tok: Any, texts: Texts) -> Encoded:
    single, pairs = texts
    inputs = list(single) if pairs is None else list(zip(single, pairs, strict=True))
    encodings = tok.encode_batch_fast(inputs, add_special_tokens=True)
    lengths = np.fromiter((len(e) for e in encodings), dtype=np.int64, count=len(encodings))
    offsets = np.zeros(len(encodings) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int32, count=total)
    types = (np.fromiter(itertools.chain.from_iterable(e.type_ids for e in encodings), dtype=np.int8, count=total)
             if pairs is not None else None)
    return Encoded(ids=ids, offsets=offsets, types=types)


def _encode(texts: Texts) -> Encoded:
    return _encode_with(_worker, texts)


class Tokenize:
    """Tokenize batches in `workers` processes (1: in this process)."""

    def __init__(self, tokenizer: Any, max_length: int, *, workers: int | None = None) -> None:
        self.spec = definition(tokenizer)
        self.max_length = max_length
        self.workers = workers or os.cpu_count() or 1
        self._pool: Any = None
        self._local: Any = None

    def __enter__(self) -> Tokenize:
        if self.workers > 1:
            # spawn: the parent may hold threads (boto3, tokenizers) that fork would copy mid-lock
            ctx = multiprocessing.get_context("spawn")
            self._pool = ctx.Pool(self.workers, initializer=_init, initargs=(self.spec, self.max_length))
        else:
            self._local = _load(self.spec, self.max_length)
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
