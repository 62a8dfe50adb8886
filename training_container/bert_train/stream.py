"""Global batches streamed from a tokenized store, in one order whatever the number of ranks.

The sequence of global batches of an epoch is a pure function of (manifest, seed, epoch):

1. shuffle the shards, and the row groups inside each shard (a generator seeded by (seed, epoch));
2. stream the rows, as references (global row number, length), through a bounded shuffle buffer:
   when it holds `buffer_rows`, a random half of it leaves, in random order;
3. gather what leaves into windows of `window_batches` global batches, sort each window by
   length (longest first) and cut it into global batches, whose order inside the window is
   shuffled (the longest batch of the epoch's first window goes first, so an out-of-memory shows
   at step 1); the incomplete last batch of the epoch is dropped.

Only the `length` column is read to plan the order, so skipping the batches done before a resume
reads no tokens. A rank then fetches the tokens of its own slice of each global batch
(`Rows.fetch`), reading the row groups those rows are in (a few are kept in memory). The number of
batches per epoch is rows // global batch, known from the manifest without reading anything.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from bertbatch_contract import store as contract

from . import token_store
from .data import Encoded
from .tasks import Task

BUFFER_ROWS = 1 << 16  # the shuffle buffer, in rows (references: 16 bytes each)
CACHED_GROUPS = 64  # row groups whose tokens stay in memory


class Layout:
    """The store's row groups in manifest order and the global row number each starts at."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.groups = token_store.row_groups(manifest)
        sizes = np.array([g.rows for g in self.groups], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.rows = int(self.starts[-1])
        self.by_shard: dict[int, list[int]] = collections.defaultdict(list)
        for i, g in enumerate(self.groups):
            self.by_shard[g.shard].append(i)

    def group_of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, rows, side="right") - 1


def epoch_batches(layout: Layout, lengths_of: Any, *, seed: int, epoch: int, global_batch: int,
                  window_batches: int, buffer_rows: int = BUFFER_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(global row numbers, their lengths) of each global batch of the epoch, in order.
    `lengths_of(group index)` gives the lengths of a row group's rows."""
    g = np.random.Generator(np.random.PCG64([seed, epoch, 0x5EED]))
    window = global_batch * window_batches
    buf_rows, buf_lens = np.empty(0, np.int64), np.empty(0, np.int64)
    win_rows, win_lens = [], []
    win_size = 0
    first = True
    for shard in g.permutation(sorted(layout.by_shard)):
        for gi in g.permutation(layout.by_shard[int(shard)]):
            gi = int(gi)
            lens = np.asarray(lengths_of(gi), dtype=np.int64)
            buf_rows = np.concatenate([buf_rows, layout.starts[gi] + np.arange(len(lens), dtype=np.int64)])
            buf_lens = np.concatenate([buf_lens, lens])
            while len(buf_rows) >= buffer_rows:
                perm = g.permutation(len(buf_rows))
                out, keep = perm[: len(perm) - buffer_rows // 2], perm[len(perm) - buffer_rows // 2:]
                win_rows.append(buf_rows[out])
                win_lens.append(buf_lens[out])
                win_size += len(out)
                buf_rows, buf_lens = buf_rows[keep], buf_lens[keep]
                while win_size >= window:
                    rows, lens_w = np.concatenate(win_rows), np.concatenate(win_lens)
                    yield from _cut(rows[:window], lens_w[:window], global_batch, g, first)
                    first = False
                    win_rows, win_lens, win_size = [rows[window:]], [lens_w[window:]], len(rows) - window
    perm = g.permutation(len(buf_rows))
    rows = np.concatenate([*win_rows, buf_rows[perm]])
    lens_all = np.concatenate([*win_lens, buf_lens[perm]])
    for start in range(0, len(rows), window):
        yield from _cut(rows[start:start + window], lens_all[start:start + window], global_batch, g, first)
        first = False


def _cut(rows: np.ndarray, lens: np.ndarray, global_batch: int, g: np.random.Generator,
         first: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    order = np.argsort(-lens, kind="stable")
    full = len(order) // global_batch
    if full == 0:
        return
    batches = order[: full * global_batch].reshape(full, global_batch)
    sequence = g.permutation(full)
    if first:  # the batch holding the window's longest row (batch 0 of the sorted order) goes first
        sequence = np.concatenate([[0], sequence[sequence != 0]])
    for b in sequence:
        idx = batches[int(b)]
        yield rows[idx], lens[idx]


class Rows:
    """Fetches tokenized rows by global row number: the row groups they are in are read whole
    (tokens and labels) and the most recent `CACHED_GROUPS` are kept."""

    def __init__(self, reader: token_store.Reader, layout: Layout, task: Task, pairs: bool) -> None:
        self.reader, self.layout, self.task, self.pairs = reader, layout, task, pairs
        self._cache: collections.OrderedDict[int, tuple[np.ndarray, ...]] = collections.OrderedDict()
        self._lengths: dict[int, np.ndarray] = {}

    def lengths(self, gi: int) -> np.ndarray:
        table = self.reader.read(self.layout.groups[gi], [contract.COL_LENGTH])
        return table.column(contract.COL_LENGTH).to_numpy()

    def _group(self, gi: int) -> tuple[np.ndarray, ...]:
        if gi in self._cache:
            self._cache.move_to_end(gi)
            return self._cache[gi]
        columns = [contract.COL_INPUT_IDS, contract.COL_LABEL] + ([contract.COL_TOKEN_TYPE_IDS] if self.pairs else [])
        table = self.reader.read(self.layout.groups[gi], columns).combine_chunks()
        ids = table.column(contract.COL_INPUT_IDS).chunk(0)
        labels = self.task.target_array(table.column(contract.COL_LABEL).to_pylist())
        entry: tuple[np.ndarray, ...] = (ids.offsets.to_numpy(), ids.values.to_numpy(), labels)
        if self.pairs:
            entry += (table.column(contract.COL_TOKEN_TYPE_IDS).chunk(0).values.to_numpy(),)
        self._cache[gi] = entry
        while len(self._cache) > CACHED_GROUPS:
            self._cache.popitem(last=False)
        return entry

    def fetch(self, rows: Sequence[int] | np.ndarray, wanted: Sequence[int]) -> Encoded:
        """An Encoded of len(rows) entries where the positions in `wanted` hold their rows' tokens
        (the others are empty: another rank's)."""
        rows = np.asarray(rows, dtype=np.int64)
        groups = self.layout.group_of(rows)
        input_ids: list[list[int]] = [[] for _ in range(len(rows))]
        types: list[list[int]] | None = [[] for _ in range(len(rows))] if self.pairs else None
        labels: list[Any] = [0] * len(rows)
        for pos in wanted:
            gi = int(groups[pos])
            offsets, values, group_labels, *rest = self._group(gi)
            r = int(rows[pos] - self.layout.starts[gi])
            a, b = int(offsets[r]), int(offsets[r + 1])
            input_ids[pos] = values[a:b].tolist()
            if types is not None:
                types[pos] = rest[0][a:b].tolist()
            labels[pos] = group_labels[r].tolist()  # a class index, a value, or a multi-hot list
        return Encoded(input_ids=input_ids, token_type_ids=types, labels=labels)

    def all(self) -> Encoded:
        """Every row in store order (a small eval set held in memory)."""
        everything = np.arange(self.layout.rows, dtype=np.int64)
        return self.fetch(everything, range(self.layout.rows))
