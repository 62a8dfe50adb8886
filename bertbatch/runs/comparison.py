"""Runs side by side: the hyperparameters that differ, final and best metrics, steps, duration,
attempts and cost, with the best run marked (`bertbatch compare`, `runs --sweep`).

A run is read from the artifacts bucket (`runs/<run-id>/metrics.json`, `training_args.json`)
or from a local output directory of `bertbatch local` (the same two files).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions

from bertbatch_contract import hyperparameters as hp
from bertbatch_contract import layout, tasks

from ..core.aws_clients import is_not_found
from ..core.errors import BertBatchError
from ..cost.ledger import Ledger, format_cost
from . import artifacts

# Written by the container beside metrics.json: every argument of the run (bert_train.outputs).
METRICS = hp.EARLY_STOPPING_METRICS
DEFAULT_METRIC = METRICS[0]
FINAL_KEYS = ("eval_accuracy", "eval_f1", "eval_loss", "train_loss")
BEST_MARK = "*"


def higher_is_better(metric: str) -> bool:
    return tasks.HIGHER_IS_BETTER[metric]


@dataclass
class Run:
    run_id: str
    source: str  # "s3" or "local"
    metrics: dict[str, Any] | None  # None: not finished (no metrics.json)
    arguments: dict[str, Any]  # training_args.json, {} when missing
    ledger: Ledger | None = None  # None for a local run

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per-evaluation records ({"step", "epoch", "train_loss", "eval_*"}) from metrics.json."""
        found = (self.metrics or {}).get("history")
        return [h for h in found if isinstance(h, dict)] if isinstance(found, list) else []

    @property
    def train_history(self) -> list[dict[str, Any]]:
        """{"step", "train_loss"} records: `train_history` when a metrics.json has one, else the
        evaluation records, each of which holds the mean train loss since the previous one."""
        found = (self.metrics or {}).get("train_history")
        if isinstance(found, list):
            return [h for h in found if isinstance(h, dict)]
        return [h for h in self.history if h.get("train_loss") is not None]

    def best(self, metric: str) -> tuple[float | None, int | None]:
        """(best value of `metric` over the evaluations, its step), else the final value."""
        points = [(float(h[metric]), h.get("step")) for h in self.history if _number(h.get(metric))]
        if not points:
            final = artifacts.metric_value(self.metrics or {}, metric)
            return (float(final), None) if _number(final) else (None, None)
        value, step = (max if higher_is_better(metric) else min)(points, key=lambda p: p[0])
        return value, step if isinstance(step, int) else None

    @property
    def steps(self) -> Any:
        return artifacts.metric_value(self.metrics or {}, "steps")

    @property
    def seconds(self) -> float | None:
        """Running time of every attempt (Batch), else the trainer's own training time (local)."""
        if self.ledger is not None and self.ledger.attempts:
            return self.ledger.seconds
        value = (self.metrics or {}).get("train_seconds")
        return float(value) if isinstance(value, (int, float)) and _number(value) else None

    @property
    def attempts(self) -> int | None:
        return len(self.ledger.attempts) if self.ledger is not None else None

    @property
    def cost(self) -> float | None:
        return self.ledger.cost if self.ledger is not None else None


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_local(directory: Path) -> Run:
    """A `bertbatch local` output directory (local-runs/runs/<run-id>)."""
    metrics_path = directory / layout.METRICS_FILE
    if not metrics_path.is_file():
        raise BertBatchError(f"{directory}: no {layout.METRICS_FILE} (not a finished run's output directory)")
    metrics = artifacts.read_json_object(metrics_path.read_bytes(), str(metrics_path))
    run_id = str(metrics.get("run_id") or directory.name)
    return Run(run_id=run_id, source="local", metrics=metrics, arguments=_local_arguments(directory))


def _local_arguments(directory: Path) -> dict[str, Any]:
    args_path = directory / layout.TRAINING_ARGS_FILE
    return artifacts.read_json_object(args_path.read_bytes(), str(args_path)) if args_path.is_file() else {}


def load_local_run(root: Path, run_id: str) -> Run:
    """RUN_ID under a local runs directory (local-runs/): its finished output, or a run still
    training (an output directory without metrics.json, or checkpoints only)."""
    directory = root / layout.run_prefix(run_id)
    if (directory / layout.METRICS_FILE).is_file():
        return load_local(directory)
    if not directory.is_dir() and not (root / layout.checkpoint_prefix(run_id)).is_dir():
        raise BertBatchError(f"no such run: {run_id} (no {directory}/ and no "
                             f"{root / layout.checkpoint_prefix(run_id)}/; bertbatch runs --local lists the runs)")
    return Run(run_id=run_id, source="local", metrics=None, arguments=_local_arguments(directory))


def load_s3(s3: Any, bucket: str, run_id: str) -> Run:
    metrics, _ = artifacts.read_metrics(s3, bucket, run_id)
    arguments: dict[str, Any] = {}
    try:
        body = s3.get_object(Bucket=bucket, Key=layout.run_prefix(run_id) + layout.TRAINING_ARGS_FILE)["Body"].read()
        arguments = json.loads(body)
    except botocore.exceptions.ClientError as exc:
        if not is_not_found(exc):
            raise
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass  # unreadable arguments: compared as unknown
    return Run(run_id=run_id, source="s3", metrics=metrics, arguments=arguments if isinstance(arguments, dict) else {})


def differing(runs: list[Run]) -> list[str]:
    """Hyperparameters (table names) whose values are not the same in every run, table order."""
    names = []
    for row in hp.HYPERPARAMETERS:
        values = {json.dumps(r.arguments.get(row.name), default=str, sort_keys=True) for r in runs}
        if len(values) > 1:
            names.append(row.name)
    return names


def best_index(runs: list[Run], metric: str) -> int | None:
    scored = [(value, i) for i, r in enumerate(runs) if (value := r.best(metric)[0]) is not None]
    if not scored:
        return None
    pick = max if higher_is_better(metric) else min
    return pick(scored, key=lambda s: s[0])[1]


def records(runs: list[Run], metric: str) -> list[dict[str, Any]]:
    """One record per run (json_fields["compare"])."""
    best = best_index(runs, metric)
    diff = differing(runs)
    out = []
    for i, r in enumerate(runs):
        value, step = r.best(metric)
        out.append({
            "run_id": r.run_id,
            "best": i == best,
            "source": r.source,
            "state": "finished" if r.metrics is not None else "running",
            "hyperparameters": {name: r.arguments.get(name) for name in diff},
            "final": {k: artifacts.metric_value(r.metrics or {}, k) for k in FINAL_KEYS},
            "best_metric": {"metric": metric, "value": value, "step": step},
            "steps": r.steps,
            "duration_seconds": None if r.seconds is None else round(r.seconds, 1),
            "attempts": r.attempts,
            "cost": None if r.cost is None else round(r.cost, 4),
            "cost_estimate": r.ledger.estimate if r.ledger is not None else None,
            "team": r.ledger.team if r.ledger is not None else None,
            "problem_type": (r.metrics or {}).get("problem_type"),
            "per_class": per_class(r.metrics or {}),
            "confusion_matrix": (r.metrics or {}).get("confusion_matrix"),
            "efficiency": artifacts.efficiency_of(r.metrics),
        })
    return out


def per_class(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The published model's precision, recall, F1 and support per class (single-label) or per
    label at its tuned threshold (multi-label); None for regression or a run from before them."""
    found = metrics.get("per_class") or metrics.get("per_label")
    return found if isinstance(found, dict) else None


def per_class_table(rec: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple[str, ...]], tuple[int, ...]]:
    """(headers, rows, right-aligned columns) of one run's classes, then its confusion matrix
    columns (single-label: a row per true class, a column per predicted class)."""
    matrix = rec.get("confusion_matrix") or {}
    predicted = [f"-> {label}" for label in matrix.get("labels", [])]
    counts = dict(zip(matrix.get("labels", []), matrix.get("counts", []), strict=False))
    rows = []
    for label, numbers in (rec["per_class"] or {}).items():
        numbers = numbers if isinstance(numbers, dict) else {}
        rows.append((label, *(artifacts.format_value(numbers.get(k)) for k in ("precision", "recall", "f1", "support")),
                     *(str(n) for n in counts.get(label, [""] * len(predicted)))))
    headers = ("CLASS", "PRECISION", "RECALL", "F1", "SUPPORT", *predicted)
    return headers, rows, tuple(range(1, len(headers)))


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def hyperparameter_text(value: object) -> str:
    """A hyperparameter as the command line takes it (2e-5, not a metric's 0.0000)."""
    if value is None:
        return "-"
    return hp.format_value(value) if isinstance(value, (int, float, str)) else str(value)


def table(recs: list[dict[str, Any]], metric: str) -> tuple[tuple[str, ...], list[tuple[str, ...]], tuple[int, ...]]:
    """(headers, rows, right-aligned columns) for people."""
    diff = list(recs[0]["hyperparameters"]) if recs else []
    headers = ("", "RUN ID", "TEAM", *(d.upper() for d in diff), *(k.upper() for k in FINAL_KEYS),
               f"BEST {metric.upper()}", "AT STEP", "STEPS", "DURATION", "ATTEMPTS", "COST")
    rows = []
    for rec in recs:
        best = rec["best_metric"]
        rows.append((
            BEST_MARK if rec["best"] else "", rec["run_id"] + ("" if rec["state"] == "finished" else " (running)"),
            rec["team"] or "-",
            *(hyperparameter_text(rec["hyperparameters"][d]) for d in diff),
            *(artifacts.format_value(rec["final"][k]) for k in FINAL_KEYS),
            artifacts.format_value(best["value"]), artifacts.format_value(best["step"]),
            artifacts.format_value(rec["steps"]), duration_text(rec["duration_seconds"]),
            artifacts.format_value(rec["attempts"]), format_cost(rec["cost"]),
        ))
    first_number = 3 + len(diff)
    return headers, rows, tuple(range(first_number, len(headers)))


def drop_order(headers: tuple[str, ...]) -> list[str]:
    """The columns a narrow terminal leaves out first: the details, then the final metrics, then the
    differing hyperparameters from the last; the run id, the best mark and the best value stay."""
    details = ["ATTEMPTS", "AT STEP", "STEPS", "EVAL_LOSS", "TRAIN_LOSS", "EVAL_F1", "TEAM", "DURATION", "COST",
               "EVAL_ACCURACY"]
    fixed = {"", "RUN ID", *details, *(k.upper() for k in FINAL_KEYS)}
    hyperparameters = [h for h in headers if h not in fixed and not h.startswith("BEST ")]
    return [*details, *reversed(hyperparameters)]


def csv_text(recs: list[dict[str, Any]]) -> str:
    """The records flattened for a spreadsheet: nested fields as <field>.<key> columns."""
    flat = []
    for rec in recs:
        row: dict[str, Any] = {}
        for key, value in rec.items():
            if isinstance(value, dict):
                row.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                row[key] = value
        flat.append(row)
    columns: list[str] = []
    for row in flat:
        columns.extend(c for c in row if c not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()
