"""CloudWatch Logs of training jobs: read streams incrementally and parse the trainer's EMF
metric lines (`bertbatch_contract.metrics`) and progress lines (`bertbatch_contract.progress`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from bertbatch_contract import metrics as metrics_contract
from bertbatch_contract.progress import Progress, format_eta, parse_progress

from ..core.aws_clients import error_code


def parse_emf(line: str) -> dict[str, float] | None:
    """Metric name -> value for the contract's metrics in one EMF line; None if not EMF."""
    line = line.strip()
    if not line.startswith("{") or '"_aws"' not in line:
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or "_aws" not in record:
        return None
    names: list[str] = []
    for directive in record["_aws"].get("CloudWatchMetrics", []) or []:
        for metric in directive.get("Metrics", []) or []:
            names.append(metric.get("Name"))
    out: dict[str, float] = {}
    for name in names:
        if name in metrics_contract.BY_NAME and isinstance(record.get(name), (int, float)):
            out[name] = float(record[name])
    return out


@dataclass
class TrainingState:
    """What the log lines have told us so far."""

    progress: Progress | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def feed(self, line: str) -> bool:
        """Update from one log line; True if something changed."""
        p = parse_progress(line)
        if p is not None:
            self.progress = p
            return True
        values = parse_emf(line)
        if values:
            self.metrics.update(values)
            return True
        return False


def bar(fraction: float, width: int = 20) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(round(fraction * width))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


_SHOWN = (
    metrics_contract.EVAL_ACCURACY.name,
    metrics_contract.EVAL_F1.name,
    metrics_contract.SAMPLES_PER_SECOND.name,
    metrics_contract.GPU_UTILIZATION.name,
)


def progress_text(p: Progress) -> str:
    frac = p.step / p.total_steps if p.total_steps else 0.0
    return (
        f"epoch {p.epoch}/{p.epochs} {bar(frac)} {frac:4.0%} step {p.step}/{p.total_steps} "
        f"loss {p.loss:.4f} {p.samples_per_second:.1f} samples/s ETA {format_eta(p.eta_seconds)}"
    )


def metrics_text(state: TrainingState) -> str:
    """The latest eval metrics and throughput, e.g. 'EvalAccuracy 0.875 EvalF1 0.87'."""
    return " ".join(f"{n} {state.metrics[n]:.4g}" for n in _SHOWN if n in state.metrics)


def render(state: TrainingState) -> str:
    """One status line: epoch, bar, step, loss, ETA and the latest eval metrics."""
    parts = [progress_text(state.progress)] if state.progress is not None else []
    shown = metrics_text(state)
    if shown:
        parts.append(shown)
    return " | ".join(parts)


class StreamReader:
    """Reads new events of one log stream on every call (forward tokens, from the start)."""

    def __init__(self, logs: Any, group: str, stream: str):
        self.logs, self.group, self.stream = logs, group, stream
        self.token: str | None = None
        self.missing = False

    def read(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while True:
            kwargs: dict[str, Any] = {"logGroupName": self.group, "logStreamName": self.stream, "startFromHead": True}
            if self.token:
                kwargs["nextToken"] = self.token
            try:
                resp = self.logs.get_log_events(**kwargs)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    self.missing = True
                    return events
                raise
            self.missing = False
            new = resp.get("events", [])
            events.extend(new)
            token = resp.get("nextForwardToken")
            if not new or token == self.token:
                self.token = token or self.token
                return events
            self.token = token
