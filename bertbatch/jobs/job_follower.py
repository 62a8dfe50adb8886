"""`bertbatch watch`: follow a job's state, its training progress and a fallback resubmission."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bertbatch_contract import discovery, layout, runs, tags

from ..core import input_checks as params
from ..core.errors import BertBatchError, JobFailed
from ..core.session import Session
from ..runs import artifacts
from ..ui.output_format import JSON, print_record
from ..ui.progress_view import TrainingView
from . import aws_batch as jobs
from .log_streams import StreamReader, TrainingState, metrics_text, render

# statusReason of a job the queue's jobStateTimeLimitActions cancelled, e.g. "Canceled by
# JobStateTimeLimit action due to reason: MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT".
TIME_LIMIT_PREFIX = "Canceled by JobStateTimeLimit action"
TIME_LIMIT_REASONS = {
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY": "it waited too long for EC2 capacity",
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT":
        "no instance type of the queue can hold what it asks for (GPUs, vCPUs, memory): "
        "change --gpus/--nodes or the queue's instance types (training.gpu_instance_types)",
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE":
        "it needs more vCPUs than the queue's compute environments may run (training.*_max_vcpus)",
}


def time_limit_explanation(reason: str | None) -> str | None:
    """A readable sentence for a job cancelled by its queue's time-limit action, else None."""
    if not reason or not reason.startswith(TIME_LIMIT_PREFIX):
        return None
    code = reason.rsplit("reason:", 1)[-1].strip() if "reason:" in reason else ""
    why = TIME_LIMIT_REASONS.get(code, f"it stayed RUNNABLE too long ({code or 'no reason given'})")
    return f"the queue cancelled it before it started: {why}"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%H:%M:%S")


def check_poll(poll: float, fallback_grace: float) -> None:
    """--poll > 0 (0 would call DescribeJobs in a tight loop), --fallback-grace >= 0, both finite."""
    params.check_number("--poll", poll, minimum=0, exclusive=True)
    params.check_number("--fallback-grace", fallback_grace, minimum=0)


class Display:
    """State lines with a time, and the training progress: a live bar on a terminal, a plain
    line each time it changes elsewhere. With `err` (--output json) all of it goes to stderr."""

    def __init__(self, *, live: bool | None = None, err: bool = False) -> None:
        self.view = TrainingView(live=live, err=err)
        self.last = ""

    def event(self, text: str) -> None:
        self.view.echo(f"{_now()} {text}")

    def progress(self, state: TrainingState) -> None:
        text = render(state)
        if not text or text == self.last:
            return
        self.last = text
        if state.progress is not None:
            self.view.update(state.progress, plain=text, extra=metrics_text(state))
        else:
            self.view.echo(text)

    def end(self) -> None:
        self.view.close()


def array_summary(job: dict[str, Any]) -> str:
    """Counts of an array job's children by state, e.g. '2 RUNNING, 1 SUCCEEDED'."""
    summary = (job.get("arrayProperties") or {}).get("statusSummary") or {}
    parts = [f"{n} {s}" for s, n in sorted(summary.items()) if n]
    return ", ".join(parts)


def wait_for_fallback(batch: Any, job: dict[str, Any], grace_seconds: float, poll: float,
                      sleep: Callable[[float], None] | None = None) -> str | None:
    """The id of the job that replaced `job` (TAG_FALLBACK_TO), waiting up to grace_seconds for
    the fallback handler to tag it."""
    deadline = time.monotonic() + grace_seconds
    while True:
        target = jobs.fallback_target(batch, job)
        if target or time.monotonic() >= deadline:
            return target
        (sleep or time.sleep)(min(max(poll, 1.0), max(grace_seconds, 0.0)))


def may_fall_back(session: Session, job: dict[str, Any]) -> bool:
    """Only a single-node Spot-first job that is not itself a resubmission can be resubmitted, so
    only then is it worth waiting for the fallback handler."""
    spot_queue = session.deployment.values.get(discovery.QUEUE_SPOT_FIRST)
    job_tags = job.get("tags") or {}
    return (
        jobs.queue_name(job) == spot_queue
        and not job_tags.get(tags.TAG_FALLBACK_FROM)
        and not job.get("nodeProperties")
    )


@dataclass
class Outcome:
    """What `watch --output json` prints at the end."""

    jobs: list[str] = field(default_factory=list)
    run_id: str | None = None
    metrics: dict[str, Any] | None = None
    outputs_uri: str | None = None
    checkpoints_uri: str | None = None

    def record(self, job: dict[str, Any]) -> dict[str, Any]:
        return {"job_id": job["jobId"], "jobs": self.jobs, "run_id": self.run_id, "status": job["status"],
                "status_reason": job.get("statusReason") or None, "metrics": self.metrics,
                "outputs_uri": self.outputs_uri, "checkpoints_uri": self.checkpoints_uri}


def final_report(session: Session, job: dict[str, Any], display: Display, outcome: Outcome | None = None) -> None:
    outcome = outcome if outcome is not None else Outcome()
    run_id = outcome.run_id = jobs.run_id_of(job)
    if not run_id:
        return
    try:
        bucket = session.get(discovery.ARTIFACTS_BUCKET)
    except BertBatchError:
        return
    s3 = session.client("s3")
    if job.get("arrayProperties", {}).get("size"):
        size = job["arrayProperties"]["size"]
        display.event(
            f"sweep runs: {runs.array_run_id(run_id, 0)} .. {runs.array_run_id(run_id, size - 1)}"
            " (see: bertbatch runs)"
        )
        return
    metrics, _ = artifacts.read_metrics(s3, bucket, run_id)
    outcome.metrics = metrics
    if metrics:
        display.event(f"final metrics: {artifacts.summary(metrics)}")
    elif job["status"] == "SUCCEEDED":
        metrics_uri = layout.s3_uri(bucket, layout.run_prefix(run_id) + layout.METRICS_FILE)
        display.event(f"final metrics: not found at {metrics_uri}")
    outcome.outputs_uri = layout.s3_uri(bucket, layout.run_prefix(run_id))
    outcome.checkpoints_uri = layout.s3_uri(bucket, layout.checkpoint_prefix(run_id))
    display.event(f"outputs: {outcome.outputs_uri}")
    display.event(f"checkpoints: {outcome.checkpoints_uri}")


def watch(session: Session, job_id: str, *, poll: float = 10.0, fallback_grace: float = 60.0,
          output: str = "table", sleep: Callable[[float], None] | None = None) -> int:
    """Follow `job_id` to the end. Returns 0 on SUCCEEDED; raises JobFailed on FAILED."""
    check_poll(poll, fallback_grace)
    display = Display(err=output == JSON)
    outcome = Outcome()
    try:
        job = _follow(session, job_id, poll=poll, fallback_grace=fallback_grace, display=display,
                      outcome=outcome, sleep=sleep or session.sleep)
        final_report(session, job, display, outcome)
        if job["status"] == "SUCCEEDED":
            display.event(f"job {job['jobId']} SUCCEEDED")
    finally:
        display.end()
    if output == JSON:
        print_record("watch", outcome.record(job))
    if job["status"] != "SUCCEEDED":
        explanation = time_limit_explanation(job.get("statusReason"))
        if explanation:
            raise JobFailed(f"job {job['jobId']} FAILED: {explanation} ({job['statusReason']})")
        raise JobFailed(
            f"job {job['jobId']} FAILED: {job.get('statusReason') or 'no reason given'} "
            f"(see: bertbatch logs {job['jobId']})"
        )
    return 0


def _follow(session: Session, job_id: str, *, poll: float, fallback_grace: float, display: Display,
            outcome: Outcome, sleep: Callable[[float], None]) -> dict[str, Any]:
    """Poll until the job (or the On-Demand job that replaced it) ends; returns its record."""
    batch = session.client("batch")
    logs_client = None
    log_group = session.deployment.values.get(discovery.LOG_GROUP)
    state = TrainingState()
    readers: dict[str, StreamReader] = {}
    prev_status: str | None = None
    prev_array: str | None = None
    outcome.jobs.append(job_id)
    while True:
        job = jobs.describe(batch, job_id)
        status = job["status"]
        if status != prev_status:
            reason = f" ({job['statusReason']})" if job.get("statusReason") and status in jobs.TERMINAL_STATES else ""
            if prev_status is None:
                run_id = jobs.run_id_of(job) or "-"
                where = f"{job.get('jobName')}, run {run_id}, queue {jobs.queue_name(job)}"
                display.event(f"job {job_id} ({where}): {status}{reason}")
            else:
                display.event(f"{prev_status} -> {status}{reason}")
            explanation = time_limit_explanation(job.get("statusReason"))
            if explanation and status == "FAILED":
                display.event(explanation)
            prev_status = status
        summary = array_summary(job)
        if summary and summary != prev_array:
            display.event(f"array: {summary}")
            prev_array = summary
        if status in ("STARTING", "RUNNING") + jobs.TERMINAL_STATES and log_group:
            if logs_client is None:
                logs_client = session.client("logs")
            for stream in jobs.log_streams(batch, job):
                reader = readers.setdefault(stream, StreamReader(logs_client, log_group, stream))
                for event in reader.read():
                    state.feed(event.get("message", ""))
            display.progress(state)
        if status == "SUCCEEDED":
            return job
        if status == "FAILED":
            grace = fallback_grace if may_fall_back(session, job) else 0.0
            target = wait_for_fallback(batch, job, grace, poll, sleep)
            if not target:
                return job
            display.event(f"job {job_id} was resubmitted to On-Demand as {target}: following it")
            job_id, prev_status, prev_array, readers = target, None, None, {}
            outcome.jobs.append(job_id)
            continue
        sleep(poll)
