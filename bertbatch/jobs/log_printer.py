"""`bertbatch logs`: print a job's log, every attempt's stream in order; with --follow, keep
printing new lines until the job ends."""

from __future__ import annotations

from collections.abc import Callable

import click

from bertbatch_contract import discovery

from ..core.errors import BertBatchError
from ..core.session import Session
from . import aws_batch as jobs
from .log_streams import StreamReader, parse_emf


def print_logs(session: Session, job_id: str, *, follow: bool = False, hide_emf: bool = False,
               poll: float = 5.0, sleep: Callable[[float], None] | None = None) -> None:
    """Echo the job's log lines; raises BertBatchError when there is nothing to show."""
    sleep = sleep or session.sleep
    batch = session.client("batch")
    group = session.get(discovery.LOG_GROUP)
    logs_client = session.client("logs")
    readers: dict[str, StreamReader] = {}
    while True:
        job = jobs.describe(batch, job_id)
        if (job.get("arrayProperties") or {}).get("size"):
            raise BertBatchError(f"job {job_id} is an array job: give one child, e.g. bertbatch logs {job_id}:0")
        streams = jobs.log_streams(batch, job)
        if not streams and not follow:
            raise BertBatchError(f"job {job_id} has no logs yet (status {job['status']})")
        for stream in streams:
            if stream not in readers:
                readers[stream] = StreamReader(logs_client, group, stream)
                if len(streams) > 1:
                    click.echo(f"--- {stream}")
            for event in readers[stream].read():
                message = event.get("message", "").rstrip("\n")
                if hide_emf and parse_emf(message) is not None:
                    continue
                click.echo(message)
        done = job["status"] in jobs.TERMINAL_STATES
        if not follow or done:
            if streams and all(r.missing for r in readers.values()) and not follow:
                raise BertBatchError(f"no log stream {streams[-1]} in log group {group}")
            target = jobs.fallback_target(batch, job) if done and job["status"] == "FAILED" else None
            if target:
                click.echo(f"(job {job_id} was resubmitted as {target}: bertbatch logs {target})", err=True)
            return
        sleep(poll)
