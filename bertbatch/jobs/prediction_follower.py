"""`bertbatch predict --wait`: follow a prediction job (or its shards) until it ends.

An array job's shards are counted by state (`arrayProperties.statusSummary`): a live bar of the
shards done on a terminal, a plain line each time the counts change elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn

from ..ui import terminal
from ..ui.progress_view import LiveBar
from . import aws_batch as jobs
from .job_follower import array_summary


class ShardsView(LiveBar):
    """Shards done out of all, and the counts by state."""

    def __init__(self, shards: int, *, live: bool | None = None, err: bool = True) -> None:
        columns: tuple[ProgressColumn, ...] = (
            TextColumn("shards", markup=False), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[states]}", markup=False),
        )
        super().__init__(columns, live=terminal.is_terminal(err=err) if live is None else live, err=err)
        self.shards = shards
        self.last = ""

    def update(self, job: dict[str, Any]) -> None:
        states = array_summary(job) if self.shards > 1 else str(job.get("status"))
        if states == self.last:
            return
        self.last = states
        if not self.live:
            self.echo(f"{job['jobId']}: {states}")
            return
        summary = (job.get("arrayProperties") or {}).get("statusSummary") or {}
        done = int(summary.get("SUCCEEDED", 0)) if self.shards > 1 else int(job.get("status") == "SUCCEEDED")
        bar, task = self._task_of(states=states)
        bar.update(task, total=self.shards, completed=done, states=states)


def wait(batch: Any, job_id: str, shards: int, *, poll: float, view: ShardsView,
         sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """The job once it is SUCCEEDED or FAILED (for an array job: every shard ended)."""
    with view:
        while True:
            job = jobs.describe(batch, job_id)
            view.update(job)
            if job.get("status") in jobs.TERMINAL_STATES:
                return job
            sleep(poll)
