"""Texts longer than --max-seq-length: the model's own limit, and what happens to the rest.

`--long-text` (`bertbatch_contract.hyperparameters.LONG_TEXT`):

- `truncate`: the first tokens (the tokenizer's own truncation, as before);
- `head+tail`: the first quarter of the token budget from the start of the text and the rest
  from its end (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification": 128 head +
  382 tail tokens of 510 did best on long reviews);
- `chunk`: overlapping windows of `--max-seq-length` tokens, `--chunk-overlap` tokens shared by
  neighbours; the model's logits are averaged per document (training, evaluation, predict).

Training from data files, a tokenized store and predict all tokenize through `fit`, so a row
becomes the same ids everywhere. Every run counts the rows that did not fit (`truncated`).
"""

from __future__ import annotations

from typing import Any

from .config import BadInput


def check_positions(max_seq_length: int, model: Any, model_name: str) -> None:
    """BadInput when the model has fewer position embeddings than --max-seq-length asks for."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions and max_seq_length > positions:
        raise BadInput(f"--max-seq-length {max_seq_length} exceeds the model's {positions} positions "
                       f"(max_position_embeddings of {model_name}); use --max-seq-length {positions} or less, "
                       "with --long-text head+tail or chunk for longer texts")
