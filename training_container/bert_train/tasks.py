"""The problem type of a run (`bertbatch_contract.tasks`): its targets, its loss and its metrics.

A `Task` turns a label's canonical text into the training target (a class index, a multi-hot
tuple, a float), computes the loss from the logits (softmax cross-entropy, sigmoid binary
cross-entropy, mean squared error; optionally class-weighted), and the metrics of an
evaluation from all its logits (`evaluate`): the scalars every evaluation reports, and the
details the published model's `metrics.json` holds (per-class precision/recall/F1 and the
confusion matrix, or per-label thresholds tuned on the eval set).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from bertbatch_contract import tasks
from bertbatch_contract.tasks import MULTI_LABEL, REGRESSION, SINGLE_LABEL

DEFAULT_THRESHOLD = 0.5
_ONE, _ZERO = 1.0, 0.0  # shared float objects: a multi-hot tuple holds references only


@dataclass(frozen=True)
class Task:
    problem_type: str
    labels: tuple[str, ...]  # classes (single-label) or labels (multi-label); () for regression
    class_weights: tuple[float, ...] | None = None  # single: per class; multi: positive weight per label

    @property
    def num_labels(self) -> int:
        return 1 if self.problem_type == REGRESSION else len(self.labels)

    @property
    def key(self) -> str:
        """What encoded targets depend on (the token cache's key)."""
        return f"{self.problem_type}:{'|'.join(self.labels)}"

    def target(self, text: str) -> Any:
        if self.problem_type == SINGLE_LABEL:
            return self._index[text]
        if self.problem_type == REGRESSION:
            return float(text)
        present = set(tasks.label_list(text))
        return tuple(_ONE if x in present else _ZERO for x in self.labels)

    def target_array(self, texts: Sequence[str]) -> np.ndarray:
        """Targets of many rows: int64 class indices, float32 values, or a float32 (rows, labels) matrix."""
        if self.problem_type == SINGLE_LABEL:
            return np.array([self._index[x] for x in texts], dtype=np.int64)
        if self.problem_type == REGRESSION:
            return np.array([float(x) for x in texts], dtype=np.float32)
        return np.array([self.target(x) for x in texts], dtype=np.float32).reshape(len(texts), self.num_labels)

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {x: i for i, x in enumerate(self.labels)}

    def unknown(self, texts: Iterable[str]) -> str | None:
        """The first label in `texts` that the training data did not have (None: all known)."""
        if self.problem_type == REGRESSION:
            return None
        known = set(self.labels)
        for text in texts:
            for label in tasks.label_list(text) if self.problem_type == MULTI_LABEL else [text]:
                if label not in known:
                    return label
        return None

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean loss of a batch, in float32 whatever the autocast dtype."""
        logits = logits.float()
        weight = (torch.tensor(self.class_weights, device=logits.device)
                  if self.class_weights is not None else None)
        if self.problem_type == SINGLE_LABEL:
            return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1), weight=weight)
        if self.problem_type == MULTI_LABEL:
            return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weight)
        return F.mse_loss(logits.view(-1), labels.float().view(-1))

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """What predict writes: class probabilities, per-label probabilities, or the value."""
        logits = logits.float()
        if self.problem_type == SINGLE_LABEL:
            return logits.softmax(-1)
        if self.problem_type == MULTI_LABEL:
            return logits.sigmoid()
        return logits.view(-1)


def balanced_weights(problem_type: str, labels: Sequence[str], counts: Mapping[str, int], rows: int
                     ) -> tuple[float, ...]:
    """`--class-weights balanced`: rows / (classes x count) per class (scikit-learn's 'balanced'),
    or negatives / positives per label (BCE's pos_weight). A label never seen weighs 1."""
    if problem_type == MULTI_LABEL:
        return tuple((rows - counts[x]) / counts[x] if counts.get(x) else 1.0 for x in labels)
    return tuple(rows / (len(labels) * counts[x]) if counts.get(x) else 1.0 for x in labels)


# --- metrics ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    scalars: dict[str, float]  # eval_* of tasks.METRICS[problem_type]: every evaluation's record
    details: dict[str, Any]  # per class / label, confusion matrix, thresholds: the published model's


def evaluate(task: Task, logits: np.ndarray, labels: np.ndarray, loss: float) -> Evaluation:
    """The metrics of an eval set from all its logits and targets (rows in any order)."""
    if task.problem_type == SINGLE_LABEL:
        return _single_label(task, logits, labels, loss)
    if task.problem_type == MULTI_LABEL:
        return _multi_label(task, logits, labels, loss)
    return _regression(logits.reshape(-1), labels.reshape(-1), loss)


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / np.maximum(tp + fn, 1)
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return precision, recall, f1


def _per_class(labels: Sequence[str], tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, Any]:
    precision, recall, f1 = _prf(tp, fp, fn)
    return {label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                    "support": int(tp[i] + fn[i])} for i, label in enumerate(labels)}


def _single_label(task: Task, logits: np.ndarray, labels: np.ndarray, loss: float) -> Evaluation:
    k = task.num_labels
    confusion = np.zeros((k, k), dtype=np.int64)  # rows: truth, columns: prediction
    np.add.at(confusion, (labels.astype(np.int64), logits.argmax(-1)), 1)
    tp = np.diag(confusion)
    fp, fn = confusion.sum(0) - tp, confusion.sum(1) - tp
    present = (confusion.sum(0) + confusion.sum(1)) > 0  # macro over classes seen in truth or predictions
    _, _, f1 = _prf(tp, fp, fn)
    scalars = {"eval_accuracy": float(tp.sum() / max(confusion.sum(), 1)),
               "eval_f1": float(f1[present].mean()) if present.any() else 0.0, "eval_loss": loss}
    return Evaluation(scalars, {"per_class": _per_class(task.labels, tp, fp, fn),
                                "confusion_matrix": {"labels": list(task.labels), "rows": "truth",
                                                     "columns": "prediction", "counts": confusion.tolist()}})


def _multi_label_counts(probabilities: np.ndarray, truth: np.ndarray, thresholds: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    predicted = probabilities >= thresholds
    tp = (predicted & truth).sum(0)
    fp = (predicted & ~truth).sum(0)
    fn = (~predicted & truth).sum(0)
    exact = float((predicted == truth).all(1).mean()) if len(truth) else 0.0
    return tp, fp, fn, exact


def tune_thresholds(probabilities: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per label, the threshold in 0.05..0.95 with the best F1 on these rows (ties: the one nearest
    0.5); a label with no positive row keeps 0.5."""
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    best = np.full(truth.shape[1], DEFAULT_THRESHOLD)
    for j in range(truth.shape[1]):
        if not truth[:, j].any():
            continue
        predicted = probabilities[:, j][:, None] >= grid[None, :]
        positive = truth[:, j][:, None]
        tp, fp, fn = (predicted & positive).sum(0), (predicted & ~positive).sum(0), (~predicted & positive).sum(0)
        f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        candidates = np.flatnonzero(f1 == f1.max())
        best[j] = grid[candidates[np.argmin(np.abs(grid[candidates] - DEFAULT_THRESHOLD))]]
    return best


def _multi_label(task: Task, logits: np.ndarray, labels: np.ndarray, loss: float) -> Evaluation:
    probabilities = 1 / (1 + np.exp(-logits.astype(np.float64)))
    truth = labels > 0.5
    tp, fp, fn, exact = _multi_label_counts(probabilities, truth, np.full(truth.shape[1], DEFAULT_THRESHOLD))
    _, _, f1 = _prf(tp, fp, fn)
    micro = float(2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1))
    scalars = {"eval_micro_f1": micro, "eval_f1": float(f1.mean()), "eval_accuracy": exact, "eval_loss": loss}
    thresholds = tune_thresholds(probabilities, truth)
    tp_t, fp_t, fn_t, exact_t = _multi_label_counts(probabilities, truth, thresholds)
    _, _, f1_t = _prf(tp_t, fp_t, fn_t)
    details = {
        "thresholds": {label: float(thresholds[i]) for i, label in enumerate(task.labels)},
        "tuned": {"eval_micro_f1": float(2 * tp_t.sum() / max(2 * tp_t.sum() + fp_t.sum() + fn_t.sum(), 1)),
                  "eval_f1": float(f1_t.mean()), "eval_accuracy": exact_t},
        "per_label": _per_class(task.labels, tp_t, fp_t, fn_t),  # at the tuned thresholds
    }
    return Evaluation(scalars, details)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), as Spearman's rho takes them."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    ranks = np.empty(len(x))
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b - 1) / 2
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return 0.0  # undefined for a constant prediction or target: no correlation shown
    return float(np.corrcoef(x, y)[0, 1])


def _regression(predicted: np.ndarray, truth: np.ndarray, loss: float) -> Evaluation:
    predicted, truth = predicted.astype(np.float64), truth.astype(np.float64)
    error = predicted - truth
    scalars = {"eval_loss": loss, "eval_mse": float((error ** 2).mean()), "eval_mae": float(np.abs(error).mean()),
               "eval_pearson": _pearson(predicted, truth),
               "eval_spearman": _pearson(_ranks(predicted), _ranks(truth))}
    return Evaluation(scalars, {"truth": {"mean": float(truth.mean()), "std": float(truth.std()),
                                          "min": float(truth.min()), "max": float(truth.max())}})
