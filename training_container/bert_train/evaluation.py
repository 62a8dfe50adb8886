"""Evaluation (accuracy, macro-F1, loss; sharded over ranks) and early stopping."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.distributed as dist

from . import data, long_text
from .runtime import Autocast, Dist, StopRequest, any_rank
from .state import TrainState

log = logging.getLogger("bert_train")

HIGHER_IS_BETTER = {"eval_accuracy": True, "eval_f1": True, "eval_loss": False}


@torch.no_grad()
def evaluate(model: torch.nn.Module, enc: data.Encoded, d: Dist, *, batch_size: int, autocast: Autocast,
             pad_id: int, multiple_of: int, num_labels: int, stop: StopRequest,
             unpadded: bool = False) -> dict[str, float] | None:
    """Accuracy, macro-F1 and loss over the eval set (sharded over ranks). None if stopped.
    `unpadded`: `model` is a `modeling.UnpaddedBert` (batches from `data.collate_unpadded`); else
    it takes padded batches (`data.collate`): the model or its `modeling.PaddedBert`."""
    model.eval()
    lengths = enc.lengths
    order = sorted(range(len(enc)), key=lambda i: lengths[i])[d.rank :: d.world_size]
    # Every rank runs the same number of iterations (the collective below must match up), even
    # when the eval set does not split evenly.
    n_batches = math.ceil(math.ceil(len(enc) / d.world_size) / batch_size)
    confusion = torch.zeros(num_labels, num_labels, dtype=torch.float64, device=d.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=d.device)
    stopped = False
    for b in range(n_batches):
        if any_rank(stop.requested, d):  # abandon: the eval reruns after the resume
            stopped = True
            break
        idx = order[b * batch_size : (b + 1) * batch_size]
        if not idx:
            continue
        batch = data.to_device(data.collate_unpadded(enc, idx) if unpadded else
                               data.collate(enc, idx, pad_id, multiple_of), d.device)
        labels = batch.pop("labels")
        window_doc = batch.pop(long_text.WINDOW_DOC, None)  # --long-text chunk: logits per document
        with autocast():
            logits = long_text.pool_logits(model(**batch).logits.float(), window_doc, len(labels))
        loss_sum += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").double()
        confusion.index_put_((labels, logits.argmax(-1)), torch.ones_like(labels, dtype=torch.float64),
                             accumulate=True)
    model.train()
    if stopped:
        return None
    if d.enabled:
        dist.all_reduce(confusion)
        dist.all_reduce(loss_sum)
    total = confusion.sum()
    tp = confusion.diag()
    present = (confusion.sum(0) + confusion.sum(1)) > 0  # macro over labels seen in truth or predictions
    f1 = 2 * tp / (confusion.sum(0) + confusion.sum(1)).clamp(min=1)
    return {
        "eval_accuracy": float(tp.sum() / total),
        "eval_f1": float(f1[present].mean()),
        "eval_loss": float(loss_sum / total),
    }


def record_evaluation(state: TrainState, result: dict[str, float], *, steps_per_epoch: int, metric: str,
                      patience: int) -> dict[str, Any]:
    """Add `result` to the history and update early stopping; returns the history record.

    The record also holds the mean train loss of the steps since the previous evaluation, so the
    history alone draws both curves (`bertbatch compare --plot`)."""
    steps = state.step - state.last_eval_step
    train_loss = (state.loss_sum - state.loss_sum_at_last_eval) / steps if steps > 0 else None
    record = {"step": state.step, "epoch": round(state.step / steps_per_epoch, 4), "train_loss": train_loss, **result}
    state.history.append(record)
    state.last_eval_step, state.loss_sum_at_last_eval = state.step, state.loss_sum
    value = result[metric]
    better = state.best_metric is None or (
        value > state.best_metric if HIGHER_IS_BETTER[metric] else value < state.best_metric
    )
    if better:
        state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
    else:
        state.evals_without_improvement += 1
        if patience and state.evals_without_improvement >= patience:
            state.early_stopped = True
            log.info("early stopping: %s has not improved for %d evaluations (best %.4f at step %d)",
                     metric, state.evals_without_improvement, state.best_metric, state.best_step)
    return record
