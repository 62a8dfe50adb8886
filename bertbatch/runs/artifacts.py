"""Run outputs in the artifacts bucket: runs/<run-id>/ (metrics.json last) and checkpoints/<run-id>/,
and the same layout under `bertbatch local`'s local-runs/ directory."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions

from bertbatch_contract import efficiency, layout
from bertbatch_contract.layout import checkpoint_prefix, run_prefix

from ..core.aws_clients import is_not_found
from ..core.errors import BertBatchError
from ..ui.progress_view import TransferView

# Final-metric keys shown by `runs` (metrics.json may hold more, or fewer: missing shows '-').
RUN_COLUMNS = ("eval_accuracy", "eval_f1", "eval_loss", "train_loss", "epochs", "steps")


def list_objects(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(page.get("Contents", []))
    return out


def list_run_ids(s3: Any, bucket: str) -> list[str]:
    ids: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=layout.RUNS_PREFIX, Delimiter="/"):
        for cp in page.get("CommonPrefixes", []):
            ids.append(cp["Prefix"][len(layout.RUNS_PREFIX):].rstrip("/"))
    return ids


def parse_metrics(body: bytes) -> dict[str, Any]:
    """A metrics.json's object; a stand-in naming the problem when it is not one."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"error": "unreadable metrics.json"}
    return data if isinstance(data, dict) else {"error": "unexpected metrics.json"}


def read_metrics(s3: Any, bucket: str, run_id: str) -> tuple[dict[str, Any] | None, _dt.datetime | None]:
    """(final metrics or None if not written yet, LastModified of metrics.json or None)."""
    key = run_prefix(run_id) + layout.METRICS_FILE
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        if is_not_found(exc):
            return None, None
        raise
    return parse_metrics(obj["Body"].read()), obj.get("LastModified")


def read_local_metrics(directory: Path) -> tuple[dict[str, Any] | None, _dt.datetime | None]:
    """`read_metrics` for a local output directory: the time is metrics.json's modification time."""
    path = directory / layout.METRICS_FILE
    if not path.is_file():
        return None, None
    return parse_metrics(path.read_bytes()), _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.UTC)


@dataclass(frozen=True)
class RunSummary:
    """A run as `bertbatch runs` lists it."""

    run_id: str
    metrics: dict[str, Any] | None  # None: no metrics.json yet (running)
    finished: _dt.datetime | None  # when metrics.json was written


def s3_runs(s3: Any, bucket: str) -> list[RunSummary]:
    """Every runs/<run-id>/ of the artifacts bucket."""
    return [RunSummary(run_id, *read_metrics(s3, bucket, run_id)) for run_id in list_run_ids(s3, bucket)]


def local_runs(root: Path) -> list[RunSummary]:
    """Every runs/<run-id>/ under a local runs directory (`bertbatch local`'s local-runs/)."""
    base = root / layout.RUNS_PREFIX
    if not base.is_dir():
        return []
    directories = sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    return [RunSummary(d.name, *read_local_metrics(d)) for d in directories]


def newest_first(found: list[RunSummary]) -> list[RunSummary]:
    """The runs still training (no metrics.json) first, then the finished ones, newest first."""
    epoch = _dt.datetime.min.replace(tzinfo=_dt.UTC)
    return sorted(found, key=lambda r: (r.finished is None, r.finished or epoch), reverse=True)


def read_json_object(text: str | bytes, where: str) -> dict[str, Any]:
    """A JSON object from `text` (a record this project wrote), else one line naming `where`."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BertBatchError(f"{where}: not valid JSON") from None
    if not isinstance(data, dict):
        raise BertBatchError(f"{where}: expected a JSON object")
    return data


def metric_value(metrics: dict[str, Any], key: str) -> Any:
    """Tolerant lookup: the key, a few aliases, or a nested {"final": {...}} object."""
    aliases = {"epochs": ("epochs", "epochs_completed", "epoch"), "steps": ("steps", "global_step", "step")}
    for candidate in aliases.get(key, (key,)):
        if candidate in metrics:
            return metrics[candidate]
    nested = metrics.get("final")
    if isinstance(nested, dict):
        return metric_value(nested, key)
    return None


# Shown by `watch` at the end, in this order, when present (the trainer writes more).
SUMMARY_KEYS = ("eval_accuracy", "eval_f1", "eval_loss", "train_loss", "global_step", "epochs_completed",
                "samples_per_second", "tokens_per_second", "mfu", "gpu_memory_peak_mb", "train_seconds",
                "early_stopped", "resumed_from_step")
# A run's throughput and efficiency as metrics.json has them (bertbatch_contract.efficiency):
# `efficiency` of `status` and `compare`.
EFFICIENCY_KEYS = ("samples_per_second", "tokens_per_second", *efficiency.RECORD_KEYS)


def summary(metrics: dict[str, Any]) -> str:
    keys = [k for k in SUMMARY_KEYS if k in metrics] or [
        k for k, v in metrics.items() if not isinstance(v, (dict, list))]
    return ", ".join(f"{k} {format_value(metrics[k])}" for k in keys)


def efficiency_of(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run's EFFICIENCY_KEYS (null where its metrics.json has none); None without metrics.json."""
    return None if metrics is None else {k: metrics.get(k) for k in EFFICIENCY_KEYS}


def efficiency_text(fields: dict[str, Any]) -> str:
    """'1,234 tokens/s, 9.6 samples/s, MFU 0.412 (NVIDIA A10G, peak 125 TFLOPS), GPU memory peak 3,072 MB'."""
    def number(key: str, fmt: str) -> str:
        value = fields.get(key)
        return "-" if value is None else format(value, fmt)

    if fields.get("mfu") is not None:
        mfu = f"MFU {fields['mfu']:.3f} ({fields['gpu_name']}, peak {fields['gpu_peak_tflops']:g} TFLOPS)"
    else:
        mfu = f"MFU - ({fields.get('mfu_unavailable') or 'not recorded by this run'})"
    text = (f"{number('tokens_per_second', ',.0f')} tokens/s, {number('samples_per_second', ',.1f')} samples/s, "
            f"{mfu}")
    if fields.get("gpu_memory_peak_mb") is not None:
        text += f", GPU memory peak {fields['gpu_memory_peak_mb']:,.0f} MB"
    return text


def format_value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def run_objects(s3: Any, bucket: str, run_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(outputs under runs/<id>/, checkpoints under checkpoints/<id>/); unknown run -> error."""
    outputs = list_objects(s3, bucket, run_prefix(run_id))
    checkpoints = list_objects(s3, bucket, checkpoint_prefix(run_id))
    if not outputs and not checkpoints:
        raise BertBatchError(
            f"no such run: {run_id} (nothing under s3://{bucket}/{run_prefix(run_id)} "
            f"or s3://{bucket}/{checkpoint_prefix(run_id)})"
        )
    return outputs, checkpoints


def download(s3: Any, bucket: str, objects: list[dict[str, Any]], strip_prefix: str, dest: Path,
             view: TransferView | None = None) -> dict[str, Path]:
    """Download `objects` below `dest`, keeping their paths relative to `strip_prefix`.
    Returns key -> the file written; `view` shows the bytes moved."""
    written: dict[str, Path] = {}
    root = dest.resolve()
    for obj in objects:
        rel = obj["Key"][len(strip_prefix):]
        if not rel or rel.endswith("/"):
            continue
        target = (dest / rel).resolve()
        if root not in target.parents:
            raise BertBatchError(f"refusing to write outside {dest}: {obj['Key']}")
        target.parent.mkdir(parents=True, exist_ok=True)
        callback = view.callback(rel) if view is not None else None
        s3.download_file(bucket, obj["Key"], str(target), Callback=callback)
        if view is not None:
            view.done(layout.s3_uri(bucket, obj["Key"]), str(target), human_size(obj.get("Size", 0)))
        written[obj["Key"]] = target
    return written


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
