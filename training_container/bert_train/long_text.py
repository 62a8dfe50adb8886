"""Texts longer than --max-seq-length: the model's own limit, and what happens to the rest.

`--long-text` (`bertbatch_contract.hyperparameters.LONG_TEXT`):

- `truncate`: the first tokens (the tokenizer's own truncation, as before);
- `head+tail`: the first quarter of the token budget from the start of the text and the rest
  from its end (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification": 128 head +
  382 tail tokens of 510 did best on long reviews);
- `chunk`: overlapping windows of `--max-seq-length` tokens, `--chunk-overlap` tokens shared by
  neighbours; the model's logits are averaged per document (training, evaluation, predict).

Data files (`data.encode`) and predict tokenize through `tokenize`, a tokenized store
(`tokenize_pool`) through the same `head_tail` and the tokenizer's own truncation, so a row
becomes the same ids everywhere (a store holds one row per text: `chunk` is for data files).
Every run counts the rows that did not fit (`truncated`).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: tokenize_pool's workers load only `tokenizers`
    import torch

from bertbatch_contract import hyperparameters

from .config import BadInput


def check_positions(max_seq_length: int, model: Any, model_name: str) -> None:
    """BadInput when the model has fewer position embeddings than --max-seq-length asks for."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions and max_seq_length > positions:
        raise BadInput(f"--max-seq-length {max_seq_length} exceeds the model's {positions} positions "
                       f"(max_position_embeddings of {model_name}); use --max-seq-length {positions} or less, "
                       "with --long-text head+tail or chunk for longer texts")


TRUNCATE, HEAD_TAIL, CHUNK = hyperparameters.LONG_TEXT
WINDOW_DOC = "window_doc"  # a chunked batch's key: each window's document, as a position in the batch


@dataclass(frozen=True)
class Fit:
    """How a text is fitted into `max_length` tokens (special tokens included)."""

    max_length: int
    mode: str = TRUNCATE
    overlap: int = 0  # chunk: tokens a window shares with the one before

    @classmethod
    def of_length(cls, max_length: int | Fit) -> Fit:
        """A Fit, or a bare length: the start kept (the tokenizer's truncation)."""
        return max_length if isinstance(max_length, Fit) else cls(max_length)

    @classmethod
    def build(cls, max_length: int, mode: str | None, overlap: int | None) -> Fit:
        """--long-text (None: truncate) and --chunk-overlap (None: a quarter of the max length)."""
        return cls(max_length, mode or TRUNCATE, max_length // 4 if overlap is None else overlap)

    @classmethod
    def of(cls, config: Any) -> Fit:
        """A TrainConfig's."""
        return cls.build(config.max_seq_length, config.long_text, config.chunk_overlap)

    def describe(self) -> str:
        """What became of the rows that were too long, for the log line."""
        return {TRUNCATE: "truncated (the start kept)", HEAD_TAIL: "truncated (head+tail kept)",
                CHUNK: "split into overlapping windows"}[self.mode]


def _content(ids: Sequence[int], special: Sequence[int]) -> tuple[int, int]:
    """Where a row's text starts and ends between the special tokens around it ([CLS] ... [SEP])."""
    start, end = 0, len(ids)
    while start < end and special[start]:
        start += 1
    while end > start and special[end - 1]:
        end -= 1
    return start, end


def head_tail(ids: Sequence[int], special: Sequence[int], max_length: int) -> list[int]:
    """A row too long for `max_length`: its first quarter of the budget from the start, the rest
    from the end (128 + 382 at 512 tokens, as Sun et al. 2019 chose), its special tokens kept."""
    start, end = _content(ids, special)
    budget = max_length - start - (len(ids) - end)
    head = budget // 4
    return [*ids[:start + head], *ids[end - (budget - head):]]


def windows(ids: Sequence[int], special: Sequence[int], max_length: int, overlap: int) -> list[list[int]]:
    """A row as windows of at most `max_length` tokens, each with the row's special tokens, each
    sharing `overlap` text tokens with the one before; one window when the row fits."""
    start, end = _content(ids, special)
    prefix, suffix, text = list(ids[:start]), list(ids[end:]), ids[start:end]
    budget = max_length - len(prefix) - len(suffix)
    step = max(1, budget - overlap)
    out = []
    for first in range(0, max(len(text), 1), step):
        out.append([*prefix, *text[first:first + budget], *suffix])
        if first + budget >= len(text):
            break
    return out


@dataclass
class Tokenized:
    """Rows fitted to their `Fit`: one row per text, or (chunk) its windows, document d's being
    rows window_starts[d]:window_starts[d + 1]."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    window_starts: list[int] | None
    too_long: list[int]  # the texts longer than max_length (cut, or split into windows)

    @property
    def truncated(self) -> int:
        return len(self.too_long)


def tokenize(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, fit: Fit, *,
             token_types: bool = True) -> Tokenized:
    """`tokenizer(texts, pairs)` fitted to `fit.max_length`. Truncate: the tokenizer's own truncation
    (pairs longest first), so the ids are what `truncation=True` gives. `token_types`: the pairs'
    token type ids are asked for (`modeling.token_types_used`), else left out."""
    with_types = token_types and pairs is not None
    full = tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=False, padding=False,
                     return_special_tokens_mask=fit.mode != TRUNCATE, return_token_type_ids=with_types, verbose=False)
    ids: list[list[int]] = full["input_ids"]
    types = full["token_type_ids"] if with_types else None
    over = [i for i, row in enumerate(ids) if len(row) > fit.max_length]
    if fit.mode == CHUNK:
        rows = [windows(row, mask, fit.max_length, fit.overlap)
                for row, mask in zip(ids, full["special_tokens_mask"], strict=True)]
        starts = [0, *itertools.accumulate(len(r) for r in rows)]
        return Tokenized([w for r in rows for w in r], None, starts, over)
    if over and fit.mode == HEAD_TAIL:
        for i in over:
            ids[i] = head_tail(ids[i], full["special_tokens_mask"][i], fit.max_length)
    elif over:
        cut = tokenizer([texts[i] for i in over], [pairs[i] for i in over] if pairs is not None else None,
                        truncation=True, max_length=fit.max_length, padding=False, return_token_type_ids=with_types)
        for k, i in enumerate(over):
            ids[i] = cut["input_ids"][k]
            if types is not None:
                types[i] = cut["token_type_ids"][k]
    return Tokenized(ids, types, None, over)


def document_lengths(input_ids: Sequence[Sequence[int]], window_starts: Sequence[int]) -> list[int]:
    """Tokens per document: the sum of its windows'."""
    window = [len(x) for x in input_ids]
    return [sum(window[a:b]) for a, b in itertools.pairwise(window_starts)]


class _DocumentOf:
    """Window row -> its document's index, without a list as long as the data."""

    def __init__(self, window_starts: Sequence[int]) -> None:
        self.starts = window_starts

    def __getitem__(self, row: int) -> int:
        return bisect.bisect_right(self.starts, row) - 1


def collate_documents(enc: Any, documents: Sequence[int], collate_rows: Callable[[Any, list[int]], dict[str, Any]]
                      ) -> dict[str, Any]:
    """A batch of chunked documents (`data.Encoded` with window_starts): every window of each, collated
    by `collate_rows` as rows, with `WINDOW_DOC` (each window's document as a position in
    `documents`, in the collated order) and the documents' labels."""
    import torch

    starts = enc.window_starts
    rows = [w for d in documents for w in range(starts[d], starts[d + 1])]
    windows = dataclasses.replace(enc, labels=_DocumentOf(starts), window_starts=None)  # "label": its document
    batch = collate_rows(windows, rows)
    position = {d: k for k, d in enumerate(documents)}
    batch[WINDOW_DOC] = torch.tensor([position[int(d)] for d in batch["labels"]])
    batch["labels"] = torch.tensor([enc.labels[d] for d in documents])
    return batch


def pool_logits(logits: torch.Tensor, window_doc: torch.Tensor | None, documents: int) -> torch.Tensor:
    """Windows' logits averaged per document (`window_doc`: each row's document); None: as they are."""
    if window_doc is None:
        return logits
    import torch

    sums = torch.zeros(documents, logits.shape[-1], dtype=logits.dtype, device=logits.device)
    sums.index_add_(0, window_doc, logits)
    counts = torch.bincount(window_doc, minlength=documents).clamp(min=1).to(logits.dtype)
    return sums / counts[:, None]


def batch_loss(model: torch.nn.Module, batch: dict[str, Any],
               loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The mean `loss` (the task's: `tasks.Task.loss`) of a collated batch, on each row's logits, or
    for chunked documents on their pooled logits."""
    window_doc = batch.pop(WINDOW_DOC, None)
    labels = batch.pop("labels")
    logits = model(**batch).logits
    return loss(pool_logits(logits.float(), window_doc, len(labels)) if window_doc is not None else logits, labels)
