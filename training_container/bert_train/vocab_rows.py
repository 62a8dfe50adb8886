"""Keep the word-embedding rows the training data never uses out of the optimizer.

A BERT vocabulary has 30,522 rows; SST-2 uses 11,544 of them. A row that no training token
selects gets an exactly zero gradient at every step, so AdamW leaves its moments at zero and
moves it by weight decay alone. Updating, clipping and zeroing those rows anyway is most of a
small BERT's optimizer time (BERT-mini: 7.8M of its 11M parameters are the word embeddings).

`RowSplitEmbedding` holds the used rows as the trained parameter and the others as a buffer
that `decay` shrinks the way AdamW's decoupled weight decay would. Same training as the dense
embedding up to float rounding; its `state_dict` is the dense one (key `weight`, all rows in
the original order), so checkpoints and saved models are unchanged. Evaluation text may use any
row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class RowSplitEmbedding(torch.nn.Module):
    used_ids: torch.Tensor  # buffers (not saved: the state_dict holds the dense weight)
    unused_ids: torch.Tensor
    slot: torch.Tensor  # position of each token id among the used rows, -1 if unused
    unused_weight: torch.Tensor

    def __init__(self, embedding: torch.nn.Embedding, used_ids: Iterable[int]) -> None:
        super().__init__()
        rows = embedding.num_embeddings
        used = torch.tensor(sorted(set(used_ids)), dtype=torch.long)
        if used.numel() == 0 or int(used[0]) < 0 or int(used[-1]) >= rows:
            raise ValueError(f"token ids outside the embedding's {rows} rows")
        unused = torch.ones(rows, dtype=torch.bool)
        unused[used] = False
        weight = embedding.weight.detach()
        self.num_embeddings, self.embedding_dim = rows, embedding.embedding_dim
        self.register_buffer("used_ids", used, persistent=False)
        self.register_buffer("unused_ids", unused.nonzero().flatten(), persistent=False)
        slot = torch.full((rows,), -1, dtype=torch.long)
        slot[used] = torch.arange(used.numel())
        self.register_buffer("slot", slot, persistent=False)
        self.used_weight = torch.nn.Parameter(weight[used].clone())
        self.register_buffer("unused_weight", weight[self.unused_ids].clone(), persistent=False)
        pad = embedding.padding_idx
        self.padding_idx = pad
        # nn.Embedding gives the padding row no gradient; the same row among the used ones
        self.used_padding_idx = int(slot[pad]) if pad is not None and int(slot[pad]) >= 0 else None
        self._eval_weight: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        """All rows in token-id order (a copy; what `nn.Embedding.weight` would hold)."""
        full = torch.empty(self.num_embeddings, self.embedding_dim, dtype=self.used_weight.dtype,
                           device=self.used_weight.device)
        full[self.used_ids] = self.used_weight.detach()
        full[self.unused_ids] = self.unused_weight
        return full

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.training:  # training batches hold only used rows, by construction
            self._eval_weight = None
            return torch.nn.functional.embedding(self.slot[input_ids], self.used_weight, self.used_padding_idx)
        if self._eval_weight is None:  # evaluation text may use any row; rows are fixed until training resumes
            self._eval_weight = self.weight
        return torch.nn.functional.embedding(input_ids, self._eval_weight, self.padding_idx)

    def train(self, mode: bool = True) -> RowSplitEmbedding:
        self._eval_weight = None
        return super().train(mode)

    @torch.no_grad()
    def decay(self, factor: float) -> None:
        """What AdamW does to a row with zero gradient and zero moments: p *= 1 - lr * weight_decay."""
        self._eval_weight = None
        if factor != 1.0:
            self.unused_weight.mul_(factor)

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.weight

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: Any, strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
        key = prefix + "weight"
        if key not in state_dict:
            missing_keys.append(key)
            return
        full = state_dict[key]
        if tuple(full.shape) != (self.num_embeddings, self.embedding_dim):
            error_msgs.append(f"{key}: shape {tuple(full.shape)}, expected {(self.num_embeddings, self.embedding_dim)}")
            return
        self._eval_weight = None
        with torch.no_grad():
            self.used_weight.copy_(full[self.used_ids.to(full.device)])
            self.unused_weight.copy_(full[self.unused_ids.to(full.device)])

    def to_embedding(self) -> torch.nn.Embedding:
        """A plain `nn.Embedding` with the current rows."""
        plain = torch.nn.Embedding(self.num_embeddings, self.embedding_dim, padding_idx=self.padding_idx,
                                   device=self.used_weight.device, dtype=self.used_weight.dtype)
        with torch.no_grad():
            plain.weight.copy_(self.weight)
        return plain


def word_embeddings_owner(model: torch.nn.Module) -> Any | None:
    """The module whose `word_embeddings` is a plain, untied `nn.Embedding` (BERT-style models)."""
    get_output = getattr(model, "get_output_embeddings", None)
    if get_output is not None and get_output() is not None:
        return None  # tied to an output layer: every row gets gradient
    for module in model.modules():
        if type(getattr(module, "word_embeddings", None)) is torch.nn.Embedding:
            return module
    return None


def install(model: torch.nn.Module, used_ids: Iterable[int]) -> RowSplitEmbedding | None:
    """Split `model`'s word embeddings at the rows `used_ids` (every training token id and the
    padding id); None where the model has no such embedding."""
    owner = word_embeddings_owner(model)
    if owner is None:
        return None
    split = RowSplitEmbedding(owner.word_embeddings, used_ids)
    owner.word_embeddings = split
    return split


def uninstall(model: torch.nn.Module) -> None:
    """Put a plain `nn.Embedding` back (before `save_pretrained`)."""
    for module in model.modules():
        split = getattr(module, "word_embeddings", None)
        if isinstance(split, RowSplitEmbedding):
            module.word_embeddings = split.to_embedding()
