"""`bertbatch status`, `list` and `cancel`: one job, the jobs on the queues, stopping a job."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import click

from bertbatch_contract import discovery, runs, tags

from ..core import input_checks as params
from ..core import shell_completion as completion
from ..core.aws_clients import error_code
from ..core.errors import BertBatchError
from ..core.options import target_options
from ..core.session import Session, pass_session
from ..cost import cost_cap, ledger
from ..cost import spend_summary as cost_view
from ..jobs import aws_batch as jobs
from ..jobs.job_follower import array_summary
from ..runs import artifacts
from ..ui import terminal
from ..ui import timestamps as times
from ..ui.output_format import JSON, output_option, print_lines, print_record

QUEUE_CHOICES = tuple(jobs.QUEUE_KEYS)


def status_record(batch: Any, job: dict[str, Any]) -> dict[str, Any]:
    """The fields of `bertbatch status` (json_fields["status"])."""
    job_tags = jobs.tags_of(batch, job)
    array_size = (job.get("arrayProperties") or {}).get("size")
    return {
        "job_id": job["jobId"],
        "name": job.get("jobName"),
        "run_id": jobs.run_id_of(job),
        "status": job["status"],
        "status_reason": job.get("statusReason") or None,
        "queue": jobs.queue_name(job),
        "team": jobs.team_of(job, job_tags),
        "job_definition": (job.get("jobDefinition") or "").rsplit("/", 1)[-1] or None,
        "created": times.iso_millis(job.get("createdAt")),
        "started": times.iso_millis(job.get("startedAt")),
        "stopped": times.iso_millis(job.get("stoppedAt")),
        "attempts": len(job.get("attempts") or []),
        "exit_code": (job.get("container") or {}).get("exitCode"),
        "array_size": array_size,
        "array_states": dict((job.get("arrayProperties") or {}).get("statusSummary") or {}) if array_size else None,
        "fallback_from": job_tags.get(tags.TAG_FALLBACK_FROM) or None,
        "fallback_to": job_tags.get(tags.TAG_FALLBACK_TO) or None,
        "console_url": jobs.console_url(batch.meta.region_name, job["jobId"]),
    }


def status_rows(job: dict[str, Any], record: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines of `bertbatch status` for people."""
    rows = [
        ("job", record["job_id"]),
        ("name", record["name"] or "-"),
        ("run id", record["run_id"] or "-"),
        ("status", record["status"] + (f" ({record['status_reason']})" if record["status_reason"] else "")),
        ("queue", record["queue"]),
        ("team", record["team"] or "- (submitted before fair share)"),
        ("job definition", record["job_definition"] or "-"),
        ("created", times.timestamp(job.get("createdAt"))),
        ("started", times.timestamp(job.get("startedAt"))),
        ("stopped", times.timestamp(job.get("stoppedAt"))),
        ("attempts", str(record["attempts"])),
    ]
    if record["exit_code"] is not None:
        reason = cost_cap.exit_reason(record["exit_code"])
        rows.append(("exit code", str(record["exit_code"]) + (f" ({reason})" if reason else "")))
    if record["array_size"]:
        rows.append(("array", f"{record['array_size']} children: {array_summary(job) or '-'}"))
    if record["fallback_from"]:
        rows.append(("fallback from", record["fallback_from"]))
    if record["fallback_to"]:
        rows.append(("fallback to", record["fallback_to"]))
    if record.get("efficiency") is not None:
        rows.append(("efficiency", artifacts.efficiency_text(record["efficiency"])))
    if record.get("cost_attempts") is not None:
        rows.append(("cost", cost_view.summary(record["cost"], record["cost_estimate"])))
    rows.append(("console", record["console_url"]))
    return rows


@click.command()
@click.argument("job_id", metavar="JOB", shell_complete=completion.job_ids)
@output_option
@target_options()
@pass_session
def status(session: Session, job_id: str, output: str) -> None:
    """Show a job's state, run id, queue, team, times, attempts, fallback links and the run's cost.

    JOB may also be a run id: its newest job is shown. The cost is the run's ledger: every
    attempt of every job of the run, priced from the price table, next to the submit's estimate.

    \b
    Examples:
      bertbatch status 4c7e1a2b-0d3f-4a52-9a61-0a5e3f0b2c11
      bertbatch status JOB -o json | jq -r .status
      bertbatch status sst2-try1 -o json | jq .cost
    """
    batch = session.client("batch")
    job = job_or_run(session, job_id)
    record = status_record(batch, job)
    run_ledger = ledger.ledger(batch, queue_names(session, ()), record["run_id"]) if record["run_id"] else None
    record.update(cost_view.status_fields(run_ledger))
    record["efficiency"] = run_efficiency(session, record["run_id"])
    if output == JSON:
        print_record("status", record)
        return
    rows = status_rows(job, record) + (cost_view.breakdown_rows(run_ledger) if run_ledger is not None else [])
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key + ':':<{width + 1}} {value}")


def run_efficiency(session: Session, run_id: str | None) -> dict[str, Any] | None:
    """The run's throughput and efficiency from its metrics.json; None until the run has written it."""
    if not run_id:
        return None
    try:
        bucket = session.get(discovery.ARTIFACTS_BUCKET)
    except BertBatchError:  # a platform without an artifacts bucket parameter: nothing to read
        return None
    metrics, _ = artifacts.read_metrics(session.client("s3"), bucket, run_id)
    return artifacts.efficiency_of(metrics)


def job_or_run(session: Session, job_id: str) -> dict[str, Any]:
    """JOB, or for a run id the run's newest job (the On-Demand fallback, a resubmission)."""
    batch = session.client("batch")
    try:
        return jobs.describe(batch, job_id)
    except BertBatchError:
        if not runs.PATTERN.fullmatch(job_id):
            raise
        found = ledger.run_jobs(batch, queue_names(session, ()), job_id)
        if not found:
            raise
        newest = found[-1]
        parent = str(newest["jobId"]).split(":", 1)[0]  # a sweep: the array job, not one child
        return jobs.describe(batch, parent) if parent != newest["jobId"] else newest


def queue_names(session: Session, queues: tuple[str, ...]) -> list[str]:
    """--queue values (spot-first, on-demand, multi-node, prepare or a queue name) as queue names; none
    given: every queue the deployment has, reserved ones included."""
    names = []
    for q in queues or QUEUE_CHOICES:
        if q in jobs.QUEUE_KEYS:
            if not queues and jobs.QUEUE_KEYS[q] not in session.deployment.values:
                continue
            names.append(session.get(jobs.QUEUE_KEYS[q]))
        else:
            names.append(q)
    if not queues:  # and the reserved-capacity queues (training.reservations)
        names += [session.get(discovery.reserved_queue_key(name)) for name in sorted(session.deployment.reservations)]
    return names


@click.command(name="list")
@click.option("--state", "states", multiple=True, type=click.Choice(jobs.ALL_STATES, case_sensitive=False),
              help="Only jobs in this state (repeatable; default: all)")
@click.option("--queue", "queues", multiple=True, metavar="QUEUE",
              help=f"Only this queue: {', '.join(QUEUE_CHOICES)} or a queue name (repeatable; default: all three)")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many jobs, newest first")
@output_option
@target_options()
@pass_session
def list_(session: Session, states: tuple[str, ...], queues: tuple[str, ...], limit: int, output: str) -> None:
    """List jobs on the profile's queues as a table, newest first.

    \b
    Examples:
      bertbatch list
      bertbatch list --state RUNNING --state RUNNABLE
      bertbatch list --queue spot-first --state FAILED
      bertbatch list --state RUNNING -o json | jq -r .job_id
    """
    params.check_int("--limit", limit, 1)
    batch = session.client("batch")
    names = queue_names(session, queues)
    wanted = [s.upper() for s in states] or list(jobs.ALL_STATES)
    try:
        summaries = jobs.list_jobs(batch, names, wanted)
    except botocore.exceptions.ClientError as exc:  # an unknown queue name
        if error_code(exc) == "ClientException":
            raise BertBatchError(f"--queue: {exc.response['Error'].get('Message', 'unknown queue')}") from None
        raise
    summaries = summaries[:limit]
    if output == JSON:
        print_lines("list", ({
            "job_id": s["jobId"], "name": s.get("jobName"), "status": s.get("status"), "queue": s["_queue"],
            "created": times.iso_millis(s.get("createdAt")), "stopped": times.iso_millis(s.get("stoppedAt")),
        } for s in summaries))
        return
    if not summaries:
        click.echo("No jobs.")
        return
    rows = [
        (s["jobId"], s.get("jobName", "-"), s.get("status", "-"), s["_queue"], times.timestamp(s.get("createdAt")),
         times.timestamp(s.get("stoppedAt")))
        for s in summaries
    ]
    terminal.print_table(("JOB ID", "NAME", "STATE", "QUEUE", "CREATED (UTC)", "STOPPED (UTC)"), rows,
                         drop=("STOPPED (UTC)", "QUEUE", "CREATED (UTC)", "NAME"))


@click.command()
@click.argument("job_id", metavar="JOB", shell_complete=completion.job_ids)
@click.option("--reason", default="Cancelled with bertbatch", show_default=True, help="Reason recorded on the job")
@target_options()
@pass_session
def cancel(session: Session, job_id: str, reason: str) -> None:
    """Stop a job: cancel it if it has not started, terminate it if it has.

    If the job was resubmitted to On-Demand by the fallback handler, the job that replaced it
    is the one stopped.

    \b
    Examples:
      bertbatch cancel 4c7e1a2b-0d3f-4a52-9a61-0a5e3f0b2c11
      bertbatch cancel JOB --reason "wrong learning rate"
    """
    batch = session.client("batch")
    job = jobs.describe(batch, job_id)
    latest = jobs.latest_in_chain(batch, job)
    if latest["jobId"] != job["jobId"]:
        click.echo(f"Job {job_id} was resubmitted as {latest['jobId']}; stopping that one.")
    done = jobs.cancel(batch, latest, reason)
    if done == "nothing":
        click.echo(f"Job {latest['jobId']} already ended ({latest['status']}); nothing to cancel.")
    else:
        click.echo(f"Job {latest['jobId']} {done} (was {latest['status']}).")
