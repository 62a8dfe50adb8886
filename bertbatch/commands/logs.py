"""`bertbatch logs`: a job's log (the reading and --follow loop are `bertbatch.jobs.log_printer`)."""

from __future__ import annotations

import click

from ..core import input_checks as params
from ..core import shell_completion as completion
from ..core.options import target_options
from ..core.session import Session, pass_session
from ..jobs import log_printer as job_logs


@click.command()
@click.argument("job_id", metavar="JOB", shell_complete=completion.job_ids)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends")
@click.option("--no-emf", is_flag=True, help="Hide the metric (EMF JSON) lines")
@click.option("--poll", type=float, default=5.0, show_default=True, metavar="SECONDS",
              help="Poll interval for --follow")
@target_options()
@pass_session
def logs(session: Session, job_id: str, follow: bool, no_emf: bool, poll: float) -> None:
    """Print a job's log (every attempt's stream, in order).

    \b
    Examples:
      bertbatch logs 4c7e1a2b-0d3f-4a52-9a61-0a5e3f0b2c11
      bertbatch logs JOB --follow --no-emf
    """
    params.check_number("--poll", poll, minimum=0, exclusive=True)
    job_logs.print_logs(session, job_id, follow=follow, hide_emf=no_emf, poll=poll)
