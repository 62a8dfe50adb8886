"""Where the training loop's global batches come from: tokenized examples in memory (a data file
read whole, `data.epoch_batches`) or a tokenized store streamed from disk or S3 (`stream`).

Both give, for an epoch and the number of batches already done in it, each global batch as a
`StepBatch`: positions into an `Encoded` that holds (at least) this rank's rows, and the lengths
of every row of the batch (all ranks), which the padding and token counts need.

`prefetched` prepares the next batch (collation, pinning) on a background thread while the
training step runs, in the same order as without it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from . import data, stream

T = TypeVar("T")
R = TypeVar("R")
_END = object()  # the source is exhausted


@dataclass(frozen=True)
class StepBatch:
    rows: list[int]  # positions into enc and lengths, in the batch's order
    enc: data.Encoded
    lengths: Sequence[int]


class MemoryBatches:
    def __init__(self, enc: data.Encoded, *, global_batch: int, seed: int, megabatch_factor: int) -> None:
        self.enc, self.global_batch, self.seed, self.megabatch_factor = enc, global_batch, seed, megabatch_factor
        self.lengths = enc.lengths

    @property
    def rows(self) -> int:
        return len(self.enc)

    def epoch(self, epoch: int, start: int, *, accumulation: int, world_size: int, rank: int) -> Iterator[StepBatch]:
        batches = data.epoch_batches(self.lengths, self.global_batch, self.seed, epoch, self.megabatch_factor)
        for batch in batches[start:]:
            yield StepBatch(batch, self.enc, self.lengths)


class StoreBatches:
    def __init__(self, rows: stream.Rows, *, global_batch: int, seed: int, megabatch_factor: int,
                 buffer_rows: int = stream.BUFFER_ROWS) -> None:
        self.source, self.global_batch, self.seed = rows, global_batch, seed
        self.megabatch_factor, self.buffer_rows = megabatch_factor, buffer_rows

    @property
    def rows(self) -> int:
        return self.source.layout.rows

    def epoch(self, epoch: int, start: int, *, accumulation: int, world_size: int, rank: int) -> Iterator[StepBatch]:
        positions = list(range(self.global_batch))
        mine = [p for micro in data.split_step_batch(positions, accumulation, world_size, rank) for p in micro]
        order = stream.epoch_batches(self.source.layout, self.source.lengths, seed=self.seed, epoch=epoch,
                                     global_batch=self.global_batch, window_batches=self.megabatch_factor,
                                     buffer_rows=self.buffer_rows)
        for k, (rows, lengths) in enumerate(order):
            if k >= start:  # the batches before `start` are planned (lengths only), never fetched
                yield StepBatch(positions, self.source.fetch(rows, mine), lengths.tolist())


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def prefetched(source: Iterator[T], work: Callable[[T], R], *, background: bool,
               depth: int = 2) -> Generator[R, None, None]:
    """`work(item)` for each item of `source`, in order. With `background`, one thread draws the
    items and runs `work` up to `depth` items ahead of the consumer (the next batch is collated
    while the step runs); an error there is raised here, at the item it happened on. Close the
    generator (or drop it) to stop the thread. Without `background`, each item is prepared
    when it is asked for, on this thread."""
    if not background:
        yield from (work(item) for item in source)
        return
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    closed = threading.Event()
    worker = threading.Thread(target=_produce, args=(source, work, ready, closed), name="bert_train-prefetch",
                              daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]  # what `work` returned
    finally:
        closed.set()
        while worker.is_alive():  # unblock a worker waiting for room, then let it see `closed`
            _drain(ready)
            worker.join(timeout=0.05)


def _produce(source: Iterator[T], work: Callable[[T], R], ready: queue.Queue[object], closed: threading.Event) -> None:
    try:
        for item in source:
            if not _put(ready, work(item), closed):
                return
    except BaseException as exc:  # handed to the consumer, which raises it
        _put(ready, _Failed(exc), closed)
        return
    _put(ready, _END, closed)


def _put(ready: queue.Queue[object], value: object, closed: threading.Event) -> bool:
    """Queue `value` once there is room; False when the consumer has gone."""
    while not closed.is_set():
        try:
            ready.put(value, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _drain(ready: queue.Queue[object]) -> None:
    try:
        while True:
            ready.get_nowait()
    except queue.Empty:
        return
