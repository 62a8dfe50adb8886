"""Dropout with cheap masks on CPU.

PyTorch's CPU dropout draws one Bernoulli sample per element from its Mersenne Twister: about
5 ns an element, 10 % of a BERT-mini training step on the benchmark machine, more than every
matmul of the attention. Here the keep mask comes from numpy's PCG64 as 16-bit integers
(0.4 ns an element) compared with a threshold: the drop probability is `p` rounded to 1/65536
and the kept values are scaled by the exact inverse of the keep probability, so the layer stays
unbiased. On CUDA the native kernel is already fast and is left alone.

`install(model)` swaps a transformers model's `nn.Dropout` modules for `MaskedDropout` and its
attention for `attention` (the eager attention with this dropout; without dropout, evaluation,
it is transformers' SDPA attention unchanged). The generator's state travels in checkpoints
(`runtime.rng_state`), so a resumed run draws the same masks.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import torch

ATTENTION = "bert_batch_cpu_dropout"  # the name `install` registers with transformers
_LEVELS = 1 << 16
_generator = np.random.Generator(np.random.PCG64(0))
_replaced_attention: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()


def seed(value: int) -> None:
    global _generator
    _generator = np.random.Generator(np.random.PCG64(value))


def get_state() -> dict[str, Any]:
    return dict(_generator.bit_generator.state)


def set_state(state: dict[str, Any]) -> None:
    _generator.bit_generator.state = state


def keep_mask(shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
    """A boolean keep mask (each element dropped with probability p rounded to 1/65536) and the
    scale of the kept elements."""
    threshold = round(p * _LEVELS)
    n = shape.numel()
    # four uniform 16-bit draws from each raw 64-bit output (twice as fast as Generator.integers)
    draws = _generator.bit_generator.random_raw((n + 3) // 4).view(np.int16)[:n]
    keep = torch.from_numpy(draws).view(shape) >= threshold - _LEVELS // 2
    return keep, _LEVELS / (_LEVELS - threshold)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x * keep * scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return grad * keep * ctx.scale, None, None


def apply_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or round(p * _LEVELS) >= _LEVELS:  # GPUs; p that rounds to 1
        return torch.nn.functional.dropout(x, p, training=True)
    keep, scale = keep_mask(x.shape, p)
    out: torch.Tensor = _Dropout.apply(x, keep, scale)
    return out


class MaskedDropout(torch.nn.Module):
    """`nn.Dropout` with the masks above (same `p`, same train/eval behaviour)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
              **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers' attention interface: its eager attention with the dropout above while
    training; its SDPA attention when there is no dropout to apply. `attention_mask` is SDPA's
    (boolean, True = attend, or None without padding): the mask function registered with it."""
    if not module.training or dropout == 0.0 or query.device.type != "cpu":
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout if module.training else 0.0, **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
    weights = apply_dropout(torch.nn.functional.softmax(weights, dim=-1), dropout, True)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


def install(model: torch.nn.Module) -> int:
    """Use these masks in `model` (a transformers model on CPU); returns the dropouts replaced."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, MaskedDropout(child.p).train(child.training))
                replaced += 1
    config: Any = getattr(model, "config", None)
    if config is not None and getattr(config, "_attn_implementation", None) in ("sdpa", "eager"):
        _replaced_attention[model] = config._attn_implementation
        config._attn_implementation = ATTENTION
    return replaced


def uninstall(model: torch.nn.Module) -> None:
    """Put `nn.Dropout` and the model's own attention back (before `save_pretrained`)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is MaskedDropout:
                setattr(parent, name, torch.nn.Dropout(child.p).train(child.training))
    if model in _replaced_attention:
        model.config._attn_implementation = _replaced_attention.pop(model)  # type: ignore[union-attr]
