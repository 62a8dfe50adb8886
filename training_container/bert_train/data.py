"""Inputs: read data files from S3 or disk, validate, tokenize, and batch by length.

An input is one file, or the data files under a folder or an S3 prefix (`sources`); each is
read as a stream (`readers`: JSONL/CSV/TSV, optionally gzip or zstd compressed, and Parquet),
its rows parsed by `bertbatch_contract.tables` (the CLI's token sample reads them there too).
Every problem with the data is a `BadInput` naming the file and line, raised before any
training starts. Batching is length-grouped (like transformers' LengthGroupedSampler) and a pure
function of (seed, epoch), so a resumed run rebuilds the same batches and skips the ones
already done.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bertbatch_contract import tables, tasks

from . import long_text, readers, sources, storage
from . import tasks as tasks_
from .config import BadInput
from .errors import unreadable_input


@dataclass
class Example:
    text: str
    pair: str | None
    label: str  # the canonical label text (`bertbatch_contract.tasks.label_text`)
    line: int
    file: str = ""  # the file (shard) the row is in, for messages


def label_text(value: Any, uri: str, line: int, problem_type: str = tasks.SINGLE_LABEL,
               separator: str = ",") -> str:
    """A label value as its canonical text for the problem type; BadInput naming the file and line."""
    try:
        return tasks.label_text(value, problem_type, separator)
    except tasks.LabelError as exc:
        raise BadInput(f"{uri} line {line}: {exc}") from None


def text_field(value, column: str, uri: str, line: int) -> str:
    """A text field (`tables.json_text`: a string or a finite number); BadInput naming the line."""
    try:
        return tables.json_text(value, column)
    except tables.TableError as exc:
        raise BadInput(f"{uri} line {line}: {exc.message}") from None


def check_vocab(path: str) -> None:
    """A WordPiece vocab for a `random:` model: one token a line, not empty. (A missing file is
    reported by the model module.)"""
    try:
        with open(path, encoding="utf-8") as f:
            tokens = {line.strip() for line in f} - {""}
    except FileNotFoundError:
        return
    except UnicodeDecodeError:
        raise BadInput(f"{path}: vocab file is not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read vocab file ({exc.strerror or exc})") from None
    if not tokens:
        raise BadInput(f"{path}: vocab file is empty")
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in tokens]
    if missing:
        raise BadInput(f"{path}: vocab file lacks the special token(s) {', '.join(missing)}")


def read_table(uri: str, wanted: Sequence[str]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(file, line number, {column: raw value}) for every data row of every data file at `uri`
    (a file, a folder or an S3 prefix of shards), read as a stream, with the `wanted` columns
    checked. Raises BadInput naming the file (shard) and line. Blank lines are skipped."""
    for source in sources.list_sources(uri):
        yield from file_rows(source.uri, wanted)


def file_rows(uri: str, wanted: Sequence[str]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """`read_table` for one data file."""
    try:
        for line, row in readers.rows(uri, wanted):
            yield uri, line, row
    except tables.TableError as exc:
        raise BadInput(exc.at(uri)) from None
    except storage.StorageError as exc:
        raise unreadable_input(uri, exc) from None


@dataclass(frozen=True)
class Columns:
    """Where a row's fields are, and how its label reads."""

    text: str
    label: str
    pair: str | None = None
    problem_type: str = tasks.SINGLE_LABEL
    separator: str = ","

    @property
    def wanted(self) -> list[str]:
        return [self.text, self.label] + ([self.pair] if self.pair else [])


def example(row: dict[str, Any], file: str, line: int, columns: Columns) -> Example:
    """One checked row (BadInput naming the file and line)."""
    return Example(
        text=text_field(row[columns.text], columns.text, file, line),
        pair=text_field(row[columns.pair], columns.pair, file, line) if columns.pair else None,
        label=label_text(row[columns.label], file, line, columns.problem_type, columns.separator),
        line=line,
        file=file,
    )


def read_examples(uri: str, text_column: str, label_column: str, pair_column: str | None = None, *,
                  problem_type: str = tasks.SINGLE_LABEL, separator: str = ",") -> list[Example]:
    """Read and validate a data file (or the shards under a folder or prefix). Raises BadInput
    with file and line on any problem."""
    columns = Columns(text_column, label_column, pair_column, problem_type, separator)
    examples = [example(row, file, n, columns) for file, n, row in read_table(uri, columns.wanted)]
    if not examples:
        raise BadInput(f"{uri}: no data rows")
    return examples


def label_counts(label_texts: Iterable[str], problem_type: str) -> collections.Counter[str]:
    """Rows per class, or per label for multi-label (a row counts for each of its labels); none for
    regression, whose every value would be a class of its own."""
    counts: collections.Counter[str] = collections.Counter()
    if problem_type == tasks.MULTI_LABEL:
        for text in label_texts:
            counts.update(tasks.label_list(text))
    elif problem_type == tasks.SINGLE_LABEL:
        counts.update(label_texts)
    return counts


def infer_labels(train: Sequence[Example], train_uri: str, problem_type: str = tasks.SINGLE_LABEL) -> list[str]:
    """The classes (or labels), ordered numerically when every one is an integer, else
    alphabetically; [] for regression."""
    return check_label_set(order_labels(label_counts((e.label for e in train), problem_type)), train_uri,
                           problem_type)


def check_label_set(labels: list[str], uri: str, problem_type: str) -> list[str]:
    """BadInput when the training data cannot train a classifier of this type."""
    needed = {tasks.SINGLE_LABEL: 2, tasks.MULTI_LABEL: 1}.get(problem_type, 0)
    if len(labels) < needed:
        raise BadInput(f"{uri}: found {len(labels)} distinct label(s) ({', '.join(labels)}); "
                       f"need at least {needed} for {problem_type}")
    return labels


def order_labels(labels: Iterable[str]) -> list[str]:
    """Labels ordered numerically when every one is an integer, else alphabetically."""
    ordered = sorted(set(labels))
    if all(_is_int(x) for x in ordered):
        ordered.sort(key=int)
    return ordered


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def check_eval_labels(eval_examples: Sequence[Example], task: tasks_.Task, eval_uri: str) -> None:
    for e in eval_examples:
        unknown = task.unknown([e.label])
        if unknown is not None:
            raise BadInput(
                f"{e.file or eval_uri} line {e.line}: label {unknown!r} does not appear in the training data "
                f"(labels: {', '.join(task.labels)})"
            )


@dataclass
class Encoded:
    """Tokenized examples: ragged lists, padded per batch (dynamic padding)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[Any]  # targets (`tasks.Task.target`): class index, multi-hot tuple or value
    # --long-text chunk: the rows are windows, document d's are rows window_starts[d]:window_starts[d + 1]
    window_starts: list[int] | None = None
    truncated: int = 0  # documents longer than the max length (cut, or split into windows)

    @property
    def lengths(self) -> list[int]:
        """Tokens per document (a chunked one's: all its windows')."""
        if self.window_starts is not None:
            return long_text.document_lengths(self.input_ids, self.window_starts)
        return [len(x) for x in self.input_ids]

    def __len__(self) -> int:
        return len(self.labels)


def encode(examples: Sequence[Example], tokenizer, task: tasks_.Task, max_seq_length: int | long_text.Fit, *,
           token_types: bool = True) -> Encoded:
    """Tokenized to fit `max_seq_length` (a length: truncated, keeping the start; or a
    `long_text.Fit`: --long-text). `token_types`: whether the model takes the pairs' token type ids
    (`modeling.token_types_used`); single sentences have all-zero token types: the model defaults them."""
    fit = long_text.Fit.of_length(max_seq_length)
    texts = [e.text for e in examples]
    pairs = [e.pair or "" for e in examples] if examples and examples[0].pair is not None else None
    tok = long_text.tokenize(tokenizer, texts, pairs, fit, token_types=token_types)
    return Encoded(input_ids=tok.input_ids, token_type_ids=tok.token_type_ids,
                   labels=[task.target(e.label) for e in examples], window_starts=tok.window_starts,
                   truncated=tok.truncated)


def epoch_batches(
    lengths: Sequence[int], global_batch: int, seed: int, epoch: int, megabatch_factor: int = 500
) -> list[list[int]]:
    """Global batches (lists of example indices) for one epoch, grouped by length.

    Shuffle with a generator seeded from (seed, epoch); cut into windows of
    `megabatch_factor` global batches; sort each window by length (longest first) so a batch
    holds similar lengths and little padding; then shuffle the order of the batches so lengths
    do not drift through the epoch, and put the longest batch first so an out-of-memory shows up
    at step 1. The incomplete last batch is dropped (a different random remainder each epoch):
    every optimizer step then sees the same number of examples on every rank, which keeps DDP
    and single-process runs equivalent. Independent of the number of ranks.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    n = len(lengths)
    perm = torch.randperm(n, generator=g).tolist()
    window = global_batch * megabatch_factor
    batches: list[list[int]] = []
    for start in range(0, n, window):
        chunk = sorted(perm[start : start + window], key=lambda i: -lengths[i])  # stable sort
        batches.extend(chunk[k : k + global_batch] for k in range(0, len(chunk), global_batch))
    batches = [b for b in batches if len(b) == global_batch]
    order = torch.randperm(len(batches), generator=g).tolist()
    batches = [batches[i] for i in order]
    if batches:
        longest = max(range(len(batches)), key=lambda i: lengths[batches[i][0]])
        batches.insert(0, batches.pop(longest))
    return batches


def split_step_batch(batch: Sequence[int], accumulation: int, world_size: int, rank: int) -> list[list[int]]:
    """This rank's micro-batches of one global batch: contiguous slices keep similar lengths together."""
    per_micro = len(batch) // accumulation
    per_rank = per_micro // world_size
    out = []
    for m in range(accumulation):
        micro = batch[m * per_micro : (m + 1) * per_micro]
        out.append(list(micro[rank * per_rank : (rank + 1) * per_rank]))
    return out


def padded_tokens(batch: Sequence[int], lengths: Sequence[int], accumulation: int, world_size: int,
                  multiple_of: int = 1) -> int:
    """Tokens actually computed for one global batch (rows x padded length, over all ranks)."""
    total = 0
    for r in range(world_size):
        for micro in split_step_batch(batch, accumulation, world_size, r):
            longest = max(lengths[i] for i in micro)
            longest = -(-longest // multiple_of) * multiple_of
            total += longest * len(micro)
    return total


def collate(enc: Encoded, indices: Sequence[int], pad_token_id: int, multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Pad a micro-batch to its own longest example (rounded up to `multiple_of` on GPUs)."""
    if enc.window_starts is not None:  # documents: their windows, and which document each is
        return long_text.collate_documents(enc, indices, lambda e, rows: collate(e, rows, pad_token_id, multiple_of))
    longest = max(len(enc.input_ids[i]) for i in indices)
    longest = -(-longest // multiple_of) * multiple_of
    ids = torch.full((len(indices), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(indices), longest), dtype=torch.long)
    token_type_ids = enc.token_type_ids
    types = torch.zeros((len(indices), longest), dtype=torch.long) if token_type_ids is not None else None
    for row, i in enumerate(indices):
        n = len(enc.input_ids[i])
        ids[row, :n] = torch.tensor(enc.input_ids[i])
        mask[row, :n] = 1
        if types is not None and token_type_ids is not None:
            types[row, :n] = torch.tensor(token_type_ids[i])
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([enc.labels[i] for i in indices])}
    if types is not None:
        batch["token_type_ids"] = types
    return batch


def collate_unpadded(enc: Encoded, indices: Sequence[int]) -> dict[str, Any]:
    """A micro-batch for `modeling.UnpaddedBert`: its tokens concatenated (no padding), longest
    sequence first, with per-sequence positions, each sequence's [CLS] offset and the runs of
    equally long sequences (count, length) that attention takes one call each."""
    if enc.window_starts is not None:
        return long_text.collate_documents(enc, indices, collate_unpadded)
    order = sorted(indices, key=lambda i: -len(enc.input_ids[i]))  # stable: ties keep the batch order
    lengths = [len(enc.input_ids[i]) for i in order]
    length_t = torch.tensor(lengths)
    starts = torch.cumsum(length_t, 0) - length_t
    total = int(length_t.sum())
    groups: list[tuple[int, int]] = []
    for n in lengths:
        if groups and groups[-1][1] == n:
            groups[-1] = (groups[-1][0] + 1, n)
        else:
            groups.append((1, n))
    batch: dict[str, Any] = {
        "input_ids": torch.tensor(list(itertools.chain.from_iterable(enc.input_ids[i] for i in order))),
        "position_ids": torch.arange(total) - torch.repeat_interleave(starts, length_t),
        "cls_index": starts,
        "groups": tuple(groups),
        "labels": torch.tensor([enc.labels[i] for i in order]),
    }
    if enc.token_type_ids is not None:
        types = enc.token_type_ids
        batch["token_type_ids"] = torch.tensor(list(itertools.chain.from_iterable(types[i] for i in order)))
    return batch


def pinned(batch: dict[str, Any]) -> dict[str, Any]:
    """A collated batch with its tensors in page-locked host memory (CUDA only): copies from
    there to the GPU run asynchronously (`to_device`'s non_blocking)."""
    return {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a collated batch onto `device` (the rest, e.g. the length groups, as they are)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
