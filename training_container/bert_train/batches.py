"""Where the training loop's global batches come from: tokenized examples in memory (a data file
read whole, `data.epoch_batches`) or a tokenized store streamed from disk or S3 (`stream`).

Both give, for an epoch and the number of batches already done in it, each global batch as a
`StepBatch`: positions into an `Encoded` that holds (at least) this rank's rows, and the lengths
of every row of the batch (all ranks), which the padding and token counts need.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from . import data, stream


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
