"""Evaluation (the task's metrics over the eval set, sharded over ranks) and early stopping."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.distributed as dist

from bertbatch_contract import tasks as problem_types

from . import data, long_text, tasks
from .runtime import Autocast, Dist, StopRequest, any_rank
from .state import TrainState
from .tasks import Evaluation, Task

log = logging.getLogger("bert_train")

HIGHER_IS_BETTER = problem_types.HIGHER_IS_BETTER


@torch.no_grad()
def evaluate(model: torch.nn.Module, enc: data.Encoded, d: Dist, *, batch_size: int, autocast: Autocast,
             pad_id: int, multiple_of: int, task: Task, stop: StopRequest,
             unpadded: bool = False) -> Evaluation | None:
    """The task's metrics over the eval set (sharded over ranks, the logits gathered). None if
    stopped. `unpadded`: `model` is a `modeling.UnpaddedBert` (batches from
    `data.collate_unpadded`); else it takes padded batches (`data.collate`): the model or its
    `modeling.PaddedBert`."""
    model.eval()
    lengths = enc.lengths
    order = sorted(range(len(enc)), key=lambda i: lengths[i])[d.rank :: d.world_size]
    # Every rank runs the same number of iterations (the collectives below must match up), even
    # when the eval set does not split evenly.
    n_batches = math.ceil(math.ceil(len(enc) / d.world_size) / batch_size)
    all_logits, all_labels = [], []
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
        all_labels.append(labels)
        all_logits.append(logits.view(len(labels), task.num_labels))
    model.train()
    if stopped:
        return None
    logits, labels = _gather(all_logits, all_labels, d, task)
    loss = float(task.loss(logits, labels)) if len(labels) else math.nan
    return tasks.evaluate(task, logits.cpu().numpy(), labels.cpu().numpy(), loss)


def _gather(logits: list[torch.Tensor], labels: list[torch.Tensor], d: Dist, task: Task
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's logits and targets on every rank (padded to the longest shard for the collective)."""
    local_logits = torch.cat(logits) if logits else torch.zeros(0, task.num_labels, device=d.device)
    label_shape = (0, task.num_labels) if task.problem_type == problem_types.MULTI_LABEL else (0,)
    dtype = torch.long if task.problem_type == problem_types.SINGLE_LABEL else torch.float
    local_labels = torch.cat(labels) if labels else torch.zeros(label_shape, dtype=dtype, device=d.device)
    if not d.enabled:
        return local_logits, local_labels
    sizes = [torch.zeros((), dtype=torch.long, device=d.device) for _ in range(d.world_size)]
    dist.all_gather(sizes, torch.tensor(len(local_labels), device=d.device))
    longest = int(max(sizes))

    def gathered(x: torch.Tensor) -> torch.Tensor:
        padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[: len(x)] = x
        parts = [torch.empty_like(padded) for _ in range(d.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[: int(n)] for part, n in zip(parts, sizes, strict=True)])

    return gathered(local_logits), gathered(local_labels)


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
