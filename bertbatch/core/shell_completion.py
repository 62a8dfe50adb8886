"""Shell completion of job ids and run ids from the profile (click's `_BERTBATCH_COMPLETE`).

Cheap and silent: one SSM read for the deployment, then one ListJobs per queue (jobs of the last
week) or one ListObjectsV2 (runs). Any error, missing credentials included, completes nothing:
completion must never print a traceback into the user's shell.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import click
from click.shell_completion import CompletionItem

from bertbatch_contract import discovery, layout

from ..jobs import aws_batch as jobs
from .options import ALL_TARGETS
from .session import Session

RECENT_DAYS = 7
MAX_ITEMS = 100


def session_of(ctx: click.Context) -> Session:
    """The Session the command would get. Completion parses without running the root group, so it
    is built from the root's options; options given after the command (ctx.obj) win."""
    root = ctx.find_root().params
    session = Session(**{name: root[name] for name in ALL_TARGETS if root.get(name) is not None})
    given = ctx.obj if isinstance(ctx.obj, Session) else None
    defaults = Session()
    for name in ALL_TARGETS:
        value = getattr(given, name, None)
        if value is not None and value != getattr(defaults, name):
            setattr(session, name, value)
    return session


def _recent_jobs(session: Session) -> list[dict[str, Any]]:
    batch = session.client("batch")
    since = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=RECENT_DAYS)
    found: list[dict[str, Any]] = []
    for key in jobs.QUEUE_KEYS.values():
        queue = session.deployment.values.get(key)
        if queue:  # with a filter ListJobs returns jobs in every state
            found += batch.list_jobs(jobQueue=queue, maxResults=MAX_ITEMS, filters=[
                {"name": "AFTER_CREATED_AT", "values": [str(int(since.timestamp() * 1000))]}]).get("jobSummaryList", [])
    return sorted(found, key=lambda s: s.get("createdAt", 0), reverse=True)


def job_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    try:
        summaries = _recent_jobs(session_of(ctx))
    except Exception:  # any failure: complete nothing (see the module docstring)
        return []
    return [CompletionItem(s["jobId"], help=f"{s.get('jobName', '')} {s.get('status', '')}".strip())
            for s in summaries if s["jobId"].startswith(incomplete)][:MAX_ITEMS]


def run_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    try:
        session = session_of(ctx)
        resp = session.client("s3").list_objects_v2(
            Bucket=session.get(discovery.ARTIFACTS_BUCKET), Prefix=layout.RUNS_PREFIX + incomplete, Delimiter="/",
            MaxKeys=MAX_ITEMS)
    except Exception:  # any failure: complete nothing (see the module docstring)
        return []
    prefixes = [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
    return [CompletionItem(p[len(layout.RUNS_PREFIX):].rstrip("/")) for p in prefixes]
