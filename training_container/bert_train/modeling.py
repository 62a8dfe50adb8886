"""The model and tokenizer: from a local directory, an s3:// prefix, the hub, or a config.

`random:*` specs build a randomly initialised BERT from a config and a WordPiece vocab; tests
and benchmarks use them so nothing is ever downloaded from a model hub.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch

from bertbatch_contract import layout

from . import storage
from .config import BadInput
from .dropout import attention as dropout_attention
from .errors import unreadable_input

log = logging.getLogger("bert_train")

# Small enough to train in seconds on a laptop CPU, big enough to learn SST-2 above chance.
TINY_BERT = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                 max_position_embeddings=128)
BASE_BERT = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 max_position_embeddings=512)


def random_config(spec: str, vocab_size: int):
    """The transformers config of a `random:tiny`, `random:base` or `random:CONFIG.json` spec."""
    from transformers import AutoConfig

    name = spec[len("random:"):]
    if name == "tiny":
        return AutoConfig.for_model("bert", vocab_size=vocab_size, **TINY_BERT)
    if name == "base":
        return AutoConfig.for_model("bert", vocab_size=vocab_size, **BASE_BERT)
    path = Path(name)
    if not path.is_file():
        raise BadInput(f"{name}: model config file not found (expected random:tiny, random:base or random:CONFIG.json)")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{name} line {exc.lineno}: malformed JSON ({exc.msg})") from None
    values.setdefault("vocab_size", vocab_size)
    return AutoConfig.for_model(values.pop("model_type", "bert"), **values)


def _fetch_s3_model(uri: str, cache_dir: str) -> str:
    """Download an s3:// model prefix once; later runs (and retries on the same host) reuse it."""
    target = Path(cache_dir) / "models" / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    done = target / ".complete"
    if done.exists():
        log.info("model %s: using cached copy in %s", uri, target)
        return str(target)
    try:
        files = storage.list_files(uri)
    except storage.StorageError as exc:
        raise unreadable_input(uri, exc) from None
    staged = layout.staged_model_name_of(uri)
    if staged is not None and layout.MODEL_MANIFEST not in files:
        # models/<name>/ is complete only with its manifest (written last by `models import`).
        raise BadInput(f"{uri}: model {staged} is not staged (no {layout.MODEL_MANIFEST}): "
                       f"run bertbatch models import {staged.replace('--', '/')}")
    if not files:
        raise BadInput(f"{uri}: no model files under this prefix")
    log.info("model %s: downloading %d files to %s", uri, len(files), target)
    for rel in files:
        try:
            storage.download_file(storage.join(uri, rel), target / rel)
        except storage.StorageError as exc:
            raise unreadable_input(uri, exc) from None
    done.write_text(uri + "\n")  # written last: a half download is fetched again
    return str(target)


HUB_PROBE_SECONDS = 5.0


def check_hub_reachable(model: str) -> None:
    """A hub id that is not in the local Hugging Face cache needs the hub. When the hub cannot be
    reached, say so at once: transformers would retry for about a minute first (jobs on this
    platform have no internet; a laptop may be offline)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE or isinstance(try_to_load_from_cache(model, "config.json"), str):
        return  # offline mode fails at once by itself; a cached model needs no hub
    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "", port), timeout=HUB_PROBE_SECONDS).close()
    except OSError as exc:
        raise BadInput(f"--model {model}: not in the local Hugging Face cache and the hub ({constants.ENDPOINT}) "
                       f"cannot be reached ({exc.strerror or exc}): give a model directory, an s3:// prefix "
                       "staged with bertbatch models import, or random:tiny with --vocab") from None


def build_tokenizer(model: str, vocab: str | None, cache_dir: str):
    """Returns (tokenizer, resolved model location). Local or S3 models bring their own tokenizer."""
    from transformers import AutoTokenizer
    from transformers.models.bert.tokenization_bert import BertTokenizerFast

    if model.startswith("random:"):
        if not vocab:
            raise BadInput(f"--model {model} needs --vocab PATH (a WordPiece vocab.txt)")
        if not os.path.isfile(vocab):
            raise BadInput(f"{vocab}: vocab file not found")
        return BertTokenizerFast(vocab=vocab, do_lower_case=True), model
    location = _fetch_s3_model(model, cache_dir) if storage.is_s3(model) else model
    looks_local = location.startswith(("/", "./", "../", "~")) or os.path.exists(location)
    if looks_local and not os.path.isdir(location):
        raise BadInput(f"{location}: model directory not found")
    if not looks_local:
        check_hub_reachable(location)
    try:
        return AutoTokenizer.from_pretrained(location), location
    except OSError as exc:
        raise BadInput(f"{model}: cannot load tokenizer ({str(exc).splitlines()[0]})") from None


def build_model(location: str, labels: list[str], vocab_size: int,
                problem_type: str = "single_label_classification"):
    """A sequence model with a head for `labels` (one output for regression), its config saying
    the problem type, so transformers and predict read the outputs the same way."""
    from transformers import AutoModelForSequenceClassification

    if labels and not location.startswith("random:"):
        labels = fine_tuned_order(location, labels)  # continuing a fine-tuned model: its class order
    outputs = labels or ["value"]  # regression: one output
    id2label = {i: label for i, label in enumerate(outputs)}
    label2id = {label: i for i, label in id2label.items()}
    head = dict(num_labels=len(outputs), id2label=id2label, label2id=label2id, problem_type=problem_type)
    if location.startswith("random:"):
        config = random_config(location, vocab_size)
        for key, value in head.items():
            setattr(config, key, value)
        return AutoModelForSequenceClassification.from_config(config)
    try:
        # A checkpoint fine-tuned on other labels has a differently shaped head: start it fresh.
        return AutoModelForSequenceClassification.from_pretrained(location, ignore_mismatched_sizes=True, **head)
    except OSError as exc:
        raise BadInput(f"{location}: cannot load model ({str(exc).splitlines()[0]})") from None


def token_types_used(model: torch.nn.Module, tokenizer: Any, *, pairs: bool) -> bool:
    """Whether `model` is given token type ids: for sentence pairs, when it has segment embeddings
    (BERT, ALBERT, ELECTRA). Those get them asked for explicitly (ALBERT's tokenizer leaves them
    out unless asked). Models without segments get none: DistilBERT and ModernBERT take no token
    types, and a single type embedding (RoBERTa, XLM-R) or none (DeBERTa-v3) means the model was
    pretrained without segments; their own tokenizers give none, and a BERT tokenizer shipped with
    one (as some RoBERTa checkpoints do) would give pair ids of 1 the model has no embedding for.
    Dropping them runs these models as they were pretrained, rather than refusing the checkpoint.
    BadInput when the tokenizer gives pair ids beyond the model's segments."""
    if not pairs or "token_type_ids" not in inspect.signature(model.forward).parameters:
        return False
    config: Any = model.config
    segments = int(getattr(config, "type_vocab_size", 0) or 0)
    if segments <= 1:
        return False
    # The tokenizer's pair template sets the ids by position, whatever the words: one probe shows them.
    highest = max(tokenizer("a", "b", return_token_type_ids=True)["token_type_ids"])
    if highest >= segments:
        raise BadInput(f"{config.name_or_path or config.model_type}: the tokenizer gives sentence pairs token type "
                       f"id {highest} but the model has type_vocab_size {segments} (ids 0-{segments - 1})")
    return True


def model_labels(model: torch.nn.Module) -> list[str]:
    """The labels in the order of the model's classes (`build_model` chose it)."""
    config: Any = model.config
    return [str(config.id2label[i]) for i in range(config.num_labels)]


def fine_tuned_order(location: str, labels: list[str]) -> list[str]:
    """`labels` in the order of the checkpoint's classes when it was fine-tuned on the same label
    set, so that class i stays class i (and keeps its trained head row); otherwise `labels`."""
    from transformers import AutoConfig

    try:
        trained = AutoConfig.from_pretrained(location).id2label
    except (OSError, ValueError):
        return labels  # loading the model reports it
    ordered = [str(trained[i]) for i in sorted(trained)]
    return ordered if sorted(ordered) == sorted(labels) else labels


# --- direct execution: the model's own modules, called without transformers' forward -------------


# Unpadded execution is off by default: on the 2-core CPU benchmark machine it measured 0.87x the
# padded path (bench/results/throughput-small-unpadded.json: per-sequence attention calls cost
# more than the 0.5 % padding they save). Turn it on where `python -m bench.throughput --sides
# contender_unpadded,contender` shows a win. It never runs on CUDA (`cpu_tuned`): a GPU's
# unpadded path would need a varlen attention kernel, measured by bench/gpu.sh first.
UNPADDED_BY_DEFAULT = False


def cpu_tuned(device: torch.device) -> bool:
    """Whether the step work tuned on the CPU benchmark runs: `PaddedBert`/`UnpaddedBert`,
    `vocab_rows`' split and train.clip_in_step's `grad_scale` hook. They rest on private
    torch/transformers internals and were measured on CPU only, so on CUDA the stock path runs
    (transformers' own model with SDPA attention, dense embeddings, clip_grad_norm_) until
    bench/gpu.sh (against the tuned Trainer on the same GPU) shows that one of them pays there."""
    return device.type == "cpu"


def use_unpadded(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether training and evaluation run `model` through `UnpaddedBert` on `device`."""
    return UNPADDED_BY_DEFAULT and cpu_tuned(device) and supports_direct(model)


def runner(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """What the training loop calls: on CPU a BERT classifier's modules directly (`UnpaddedBert`
    or `PaddedBert`: same weights, same loss); on CUDA the model itself, with SDPA attention."""
    if not cpu_tuned(device):
        use_sdpa(model)
        return model
    if use_unpadded(model, device):
        return UnpaddedBert(model)
    return PaddedBert(model) if supports_direct(model) else model


def use_sdpa(model: torch.nn.Module) -> None:
    """transformers' SDPA attention (flash or memory-efficient kernels on GPUs) where the model
    has it; a model without it keeps its own attention."""
    try:
        model.set_attn_implementation("sdpa")  # type: ignore[operator]
    except (ValueError, ImportError) as exc:
        log.info("%s keeps its own attention: %s", type(model).__name__, str(exc).splitlines()[0])


def supports_direct(model: torch.nn.Module) -> bool:
    """Whether `PaddedBert` and `UnpaddedBert` compute exactly what `model` computes: a BERT
    sequence classifier with absolute positions, no decoder parts and no chunked feed-forward."""
    from transformers import BertForSequenceClassification

    config: Any = model.config
    return bool(
        isinstance(model, BertForSequenceClassification)
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and not config.is_decoder
        and not config.add_cross_attention
        and not config.chunk_size_feed_forward
        and config.problem_type in (None, "single_label_classification")
        and config.num_labels > 1
    )


class _DirectBert(torch.nn.Module):
    """A `BertForSequenceClassification` run by calling its modules directly: same weights, same
    state_dict (the wrapped model's, under `model.`), same loss up to float rounding. It skips
    transformers' generic forward (output recording, mask and attention interfaces, checkpointing
    wrappers), about 5 % of a BERT-mini training step on CPU (bench.throughput)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        if not supports_direct(model):
            raise ValueError(f"{type(model).__name__}: direct execution supports BERT sequence classifiers only")
        self.model: Any = model  # the HF model: its submodules are untyped

    def _layers(self, x: torch.Tensor, attend: Callable[[Any, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The encoder; `attend(self_attention, x)` is the self-attention before its output layer."""
        for layer in self.model.bert.encoder.layer:
            attention = layer.attention.output(attend(layer.attention.self, x), x)
            x = layer.output(layer.intermediate(attention), attention)
        return x

    def _classify(self, cls_tokens: torch.Tensor, labels: torch.Tensor | None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        pooler = self.model.bert.pooler
        logits = self.model.classifier(self.model.dropout(pooler.activation(pooler.dense(cls_tokens))))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.view(-1, self.model.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)


class PaddedBert(_DirectBert):
    """Padded batches (`data.collate`), as the model itself takes them."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        batch, length = input_ids.shape
        x = self.model.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        # SDPA's format: True = attend. On CPU None when nothing is padding (length-grouped batches
        # often); on a GPU that check would wait for the device every step.
        unpadded = attention_mask.device.type == "cpu" and bool(attention_mask.all())
        keys = None if unpadded else attention_mask.bool()[:, None, None, :]

        def attend(sa: Any, h: torch.Tensor) -> torch.Tensor:
            heads, size = sa.num_attention_heads, sa.attention_head_size
            q, k, v = (lin(h).view(batch, length, heads, size).transpose(1, 2) for lin in (sa.query, sa.key, sa.value))
            p = sa.dropout.p if sa.training else 0.0
            out, _ = dropout_attention(sa, q, k, v, keys, scaling=sa.scaling, dropout=p)
            return out.reshape(batch, length, heads * size)

        return self._classify(self._layers(x, attend)[:, 0], labels)


class UnpaddedBert(_DirectBert):
    """A batch's tokens concatenated (`data.collate_unpadded`): no compute is spent on padding.
    The dense layers see one (tokens, hidden) matrix; attention runs per sequence, on each run of
    equally long sequences as one attention call without a mask (length-grouped batches hold few
    distinct lengths)."""

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, cls_index: torch.Tensor,
                groups: tuple[tuple[int, int], ...], token_type_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None):
        emb = self.model.bert.embeddings
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        # Same order of additions as BertEmbeddings.
        x = emb.word_embeddings(input_ids) + emb.token_type_embeddings(token_type_ids)
        x = emb.dropout(emb.LayerNorm(x + emb.position_embeddings(position_ids)))
        x = self._layers(x, lambda sa, h: self._attention(sa, h, groups))
        return self._classify(x[cls_index], labels)

    def _attention(self, sa: Any, x: torch.Tensor, groups: tuple[tuple[int, int], ...]) -> torch.Tensor:
        tokens = x.shape[0]
        heads, head_size = sa.num_attention_heads, sa.attention_head_size
        q = sa.query(x).view(tokens, heads, head_size)
        k = sa.key(x).view(tokens, heads, head_size)
        v = sa.value(x).view(tokens, heads, head_size)
        dropout = sa.dropout.p if sa.training else 0.0
        outputs, start = [], 0
        for count, length in groups:
            end = start + count * length
            q_g, k_g, v_g = (t[start:end].view(count, length, heads, head_size).transpose(1, 2) for t in (q, k, v))
            # SDPA, or on CPU with dropout the cheaper masks of bert_train.dropout; (count, length, heads, head)
            out, _ = dropout_attention(sa, q_g, k_g, v_g, None, scaling=sa.scaling, dropout=dropout)
            outputs.append(out.reshape(end - start, heads * head_size))
            start = end
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
