"""`bertbatch watch`: follow a job to its end (the loop is `bertbatch.jobs.job_follower`)."""

from __future__ import annotations

import click

from ..core import shell_completion as completion
from ..core.options import target_options
from ..core.session import Session, pass_session
from ..jobs import job_follower as watch_mod
from ..ui.output_format import output_option


@click.command()
@click.argument("job_id", metavar="JOB", shell_complete=completion.job_ids)
@click.option("--poll", type=float, default=10.0, show_default=True, metavar="SECONDS", help="Seconds between polls")
@click.option("--fallback-grace", type=float, default=60.0, show_default=True, metavar="SECONDS",
              help="After a failure, how long to wait for an On-Demand fallback resubmission")
@output_option
@target_options()
@pass_session
@click.pass_context
def watch(ctx: click.Context, session: Session, job_id: str, poll: float, fallback_grace: float, output: str) -> None:
    """Follow a job: state changes, training progress (epoch, step, ETA) and the latest metrics.

    Ends with the final metrics and artifact URIs. Exit code 0 when the job SUCCEEDED, 3 when it
    FAILED, 1 when it could not be watched. When a Spot job fails and the fallback handler
    resubmits it to On-Demand (tag bert-batch:fallback-to on the old job), watch follows the new
    job. On a terminal the progress is a live bar; with -o json the progress goes to stderr and
    stdout gets one JSON record at the end.

    \b
    Examples:
      bertbatch watch 4c7e1a2b-0d3f-4a52-9a61-0a5e3f0b2c11
      bertbatch watch JOB --poll 30 && bertbatch artifacts RUN --download ./out
      bertbatch watch JOB -o json | jq .metrics
    """
    ctx.exit(watch_mod.watch(session, job_id, poll=poll, fallback_grace=fallback_grace, output=output))
