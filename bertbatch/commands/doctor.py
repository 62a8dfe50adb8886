"""`bertbatch doctor`: is the deployed profile ready for its first job?"""

from __future__ import annotations

import click

from ..core import preflight_checks as checks
from ..core.options import target_options
from ..core.session import Session, pass_session
from ..ui import terminal
from ..ui.output_format import JSON, output_option, print_lines


@click.command()
@output_option
@target_options()
@pass_session
@click.pass_context
def doctor(ctx: click.Context, session: Session, output: str) -> None:
    """Check that the profile's platform can run jobs: SSM parameters, queues and compute
    environments, the Batch and Spot service-linked roles, the G/P vCPU quotas against the
    compute environments' caps, the data and artifacts buckets, the job definitions, the log
    group, FSx, the staged default model, the budget and its alert subscriptions.

    Prints one row per check (ok, warn or fail) and, for each failure, the command that fixes
    it (-o json: one JSON line per check). Every check runs whatever the others find. Exit code
    1 when a check fails. Read-only: it changes nothing.

    \b
    Examples:
      bertbatch doctor
      bertbatch --profile prod doctor --region eu-west-1
      bertbatch doctor -o json | jq -r 'select(.status == "fail") | .fix'
    """
    results = checks.run(session)
    if output == JSON:
        print_lines("doctor", ({"check": c.name, "status": c.status, "detail": c.detail, "fix": c.fix or None}
                               for c in results))
        ctx.exit(1 if any(c.status == checks.FAIL for c in results) else 0)
    terminal.print_table(["check", "status", "detail"], [(c.name, c.status, c.detail) for c in results])
    failed = [c for c in results if c.status == checks.FAIL]
    fixes = [c for c in results if c.fix and c.status != checks.OK]
    if fixes:
        click.echo("\nTo fix:")
        for c in fixes:
            click.echo(f"  {c.name}: {c.fix}")
    if failed:
        where = f"profile {session.profile!r} in {session.region_name}"
        click.echo(f"\n{len(failed)} check(s) failed for {where}.", err=True)
        ctx.exit(1)
    click.echo(f"\nProfile {session.profile!r} in {session.region_name} is ready.")
