"""Problem types: what a label is, and which metrics a run of each type reports.

The names are transformers' (`PretrainedConfig.problem_type`). A label value from a data file
becomes one canonical text (`label_text`), which the training data, the tokenized store and
the checks all carry:

- single_label_classification: a string or an integer ("pos", "3");
- multi_label_classification: a JSON list of strings or integers in JSONL (an empty list is a
  row with no label), or a string split by the label separator (CSV/TSV); the text is the
  sorted, de-duplicated JSON list (`["insult", "toxic"]`), read back by `label_list`;
- regression: a number (JSON number or numeric string); the text is its decimal repr.
"""

from __future__ import annotations

import json
import math

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)

# The metrics each problem type reports at every evaluation (metrics.json and the history); the
# first is the default early-stopping and best-model metric. eval_f1 is the macro-F1 over classes
# (single-label) or labels (multi-label), so `bertbatch compare` lines runs of both up.
METRICS: dict[str, tuple[str, ...]] = {
    SINGLE_LABEL: ("eval_accuracy", "eval_f1", "eval_loss"),
    MULTI_LABEL: ("eval_micro_f1", "eval_f1", "eval_accuracy", "eval_loss"),
    REGRESSION: ("eval_loss", "eval_mse", "eval_mae", "eval_pearson", "eval_spearman"),
}
HIGHER_IS_BETTER: dict[str, bool] = {
    "eval_accuracy": True, "eval_f1": True, "eval_micro_f1": True, "eval_loss": False, "eval_mse": False,
    "eval_mae": False, "eval_pearson": True, "eval_spearman": True,
}
ALL_METRICS = tuple(HIGHER_IS_BETTER)
CLASS_WEIGHTS = ("none", "balanced")


class LabelError(ValueError):
    """str() is the problem in words, without the file and line (the caller adds them)."""


def default_metric(problem_type: str) -> str:
    return METRICS[problem_type][0]


def label_text(value: object, problem_type: str, separator: str) -> str:
    """The canonical text of one label value (a JSON value, or a CSV/TSV field's string)."""
    if problem_type == MULTI_LABEL:
        return json.dumps(_label_set(value, separator), ensure_ascii=False)
    if problem_type == REGRESSION:
        return repr(_number(value))
    return _single(value)


def label_list(text: str) -> list[str]:
    """The labels of a multi-label canonical text."""
    values = json.loads(text)
    assert isinstance(values, list)
    return [str(x) for x in values]


def _single(value: object) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise LabelError("empty label")
    if isinstance(value, list):
        raise LabelError(f"label must be a string or an integer (got a list {value!r}; for several labels "
                         f"a row pass --problem-type {MULTI_LABEL})")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise LabelError(f"label must be a string or an integer (got {value!r})")
    if isinstance(value, float):
        if not value.is_integer():
            raise LabelError(f"label must be a string or an integer (got {value!r}; for numeric targets "
                             f"pass --problem-type {REGRESSION})")
        value = int(value)
    return str(value).strip()


def _label_set(value: object, separator: str) -> list[str]:
    if value is None:
        raise LabelError("empty label field (an empty JSON list [] is a row with no label)")
    items: list[object]
    if isinstance(value, str):
        items = [] if not value.strip() else list(value.split(separator))
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    labels = set()
    for item in items:
        if isinstance(item, str) and item.strip():
            labels.add(item.strip())
        elif isinstance(item, int) and not isinstance(item, bool):
            labels.add(str(item))
        else:
            raise LabelError(f"each label must be a non-empty string or an integer (got {item!r} in {value!r})")
    return sorted(labels)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise LabelError(f"label must be a number (got {value!r})")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except ValueError:
        raise LabelError(f"label must be a number (got {value!r})") from None
    if not math.isfinite(number):
        raise LabelError(f"label must be a finite number (got {value!r})")
    return number
