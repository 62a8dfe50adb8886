"""`bertbatch watch`: follow a job's state, its training progress and a fallback resubmission."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Callable

import click

from bert_train import contract

from . import artifacts, discovery, jobs
from .errors import BertBatchError
from .logs import StreamReader, TrainingState, render
from .session import Session


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%H:%M:%S")


class Display:
    """Prints state lines; redraws the progress line in place on a terminal."""

    def __init__(self, tty: bool):
        self.tty = tty
        self.last = ""
        self.pending = False

    def event(self, text: str) -> None:
        self.end()
        click.echo(f"{_now()} {text}")

    def progress(self, text: str) -> None:
        if not text or text == self.last:
            return
        previous, self.last = self.last, text
        if self.tty:
            # back to the line start, overwrite; pad to erase a longer previous line
            click.echo("\r" + text.ljust(len(previous) if self.pending else 0), nl=False)
            self.pending = True
        else:
            click.echo(text)

    def end(self) -> None:
        if self.pending:
            click.echo("")
            self.pending = False


def _array_summary(job: dict) -> str:
    summary = (job.get("arrayProperties") or {}).get("statusSummary") or {}
    parts = [f"{n} {s}" for s, n in sorted(summary.items()) if n]
    return ", ".join(parts)


def wait_for_fallback(batch, job: dict, grace_seconds: float, poll: float,
                      sleep: Callable[[float], None] | None = None) -> str | None:
    """The id of the job that replaced `job` (TAG_FALLBACK_TO), waiting up to grace_seconds for
    the fallback handler to tag it."""
    deadline = time.monotonic() + grace_seconds
    while True:
        target = jobs.fallback_target(batch, job)
        if target or time.monotonic() >= deadline:
            return target
        (sleep or time.sleep)(min(max(poll, 1.0), max(grace_seconds, 0.0)))


def may_fall_back(session: Session, job: dict) -> bool:
    """Only a single-node Spot-first job that is not itself a resubmission can be resubmitted, so
    only then is it worth waiting for the fallback handler."""
    spot_queue = session.deployment.values.get(discovery.QUEUE_SPOT_FIRST)
    tags = job.get("tags") or {}
    return (
        jobs.queue_name(job) == spot_queue
        and not tags.get(contract.TAG_FALLBACK_FROM)
        and not job.get("nodeProperties")
    )


def final_report(session: Session, job: dict, display: Display) -> None:
    run_id = jobs.run_id_of(job)
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
            f"sweep runs: {contract.array_run_id(run_id, 0)} .. {contract.array_run_id(run_id, size - 1)}"
            " (see: bertbatch runs)"
        )
        return
    metrics, _ = artifacts.read_metrics(s3, bucket, run_id)
    if metrics:
        display.event(f"final metrics: {artifacts.summary(metrics)}")
    elif job["status"] == "SUCCEEDED":
        display.event(f"final metrics: not found at s3://{bucket}/{artifacts.run_prefix(run_id)}{contract.METRICS_FILE}")
    display.event(f"outputs: s3://{bucket}/{artifacts.run_prefix(run_id)}")
    display.event(f"checkpoints: s3://{bucket}/{artifacts.checkpoint_prefix(run_id)}")


def watch(session: Session, job_id: str, *, poll: float = 10.0, fallback_grace: float = 60.0,
          tty: bool = False, sleep: Callable[[float], None] | None = None) -> int:
    """Follow `job_id` to the end. Returns 0 on SUCCEEDED; raises BertBatchError on FAILED."""
    sleep = sleep or time.sleep
    batch = session.client("batch")
    logs_client = None
    log_group = session.deployment.values.get(discovery.LOG_GROUP)
    display = Display(tty)
    state = TrainingState()
    readers: dict[str, StreamReader] = {}
    prev_status = prev_array = None
    while True:
        job = jobs.describe(batch, job_id)
        status = job["status"]
        if status != prev_status:
            reason = f" ({job['statusReason']})" if job.get("statusReason") and status in jobs.TERMINAL_STATES else ""
            if prev_status is None:
                run_id = jobs.run_id_of(job) or "-"
                display.event(f"job {job_id} ({job.get('jobName')}, run {run_id}, queue {jobs.queue_name(job)}): {status}{reason}")
            else:
                display.event(f"{prev_status} -> {status}{reason}")
            prev_status = status
        summary = _array_summary(job)
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
            display.progress(render(state))
        if status == "SUCCEEDED":
            final_report(session, job, display)
            display.event(f"job {job_id} SUCCEEDED")
            return 0
        if status == "FAILED":
            grace = fallback_grace if may_fall_back(session, job) else 0.0
            target = wait_for_fallback(batch, job, grace, poll, sleep)
            if target:
                display.event(f"job {job_id} was resubmitted to On-Demand as {target}: following it")
                job_id, prev_status, prev_array, readers = target, None, None, {}
                continue
            final_report(session, job, display)
            display.end()
            raise BertBatchError(
                f"job {job_id} FAILED: {job.get('statusReason') or 'no reason given'} "
                f"(see: bertbatch logs {job_id})"
            )
        sleep(poll)
