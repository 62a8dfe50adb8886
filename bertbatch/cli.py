"""The `bertbatch` command line: the root group. The commands are in `bertbatch.commands`."""

from __future__ import annotations

from typing import Any

import click

from . import __version__
from .commands import COMMANDS
from .core import debug_report as debug
from .core.aws_clients import aws_errors
from .core.errors import UsageError
from .core.options import root_target_options
from .core.session import Session


class Group(click.Group):
    """Every error is one line: AWS errors that escape a command (exit code 1) and usage errors
    such as a missing argument (exit code 2, with a pointer to --help instead of the usage).
    With --debug, the traceback and the AWS request id come first."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with aws_errors():
                return super().invoke(ctx)
        except click.UsageError as exc:
            path = exc.ctx.command_path if exc.ctx is not None else "bertbatch"
            raise UsageError(f"{exc.format_message()} (see: {path} --help)") from None
        except click.ClickException as exc:
            if ctx.params.get("debug"):
                debug.report(exc)
            raise


@click.group(cls=Group)
@click.version_option(__version__, prog_name="bertbatch")
@root_target_options
@click.option("--debug", is_flag=True, envvar="BERT_BATCH_DEBUG",
              help="On an error, print the traceback and the AWS request id (for a problem report)")
@click.pass_context
def cli(ctx: click.Context, profile: str, project: str, region: str | None, aws_profile: str | None,
        debug: bool) -> None:
    """Submit, watch and collect BERT fine-tuning jobs on the bert-batch platform.

    Queues, job definitions, buckets and the log group are found from the SSM parameters the
    Training stack publishes under /bert-batch/<profile>/: pick the platform with --profile
    (or BERT_BATCH_PROFILE), the AWS account with --aws-profile and the region with --region.
    These options go before or after the command. --output json on the commands that print a
    table or a record is for scripts; shell completion: see docs/cli.md.

    \b
    Examples:
      bertbatch estimate --rows 67000 --epochs 3
      bertbatch local --train data/train.tsv --eval data/dev.tsv --model random:tiny --vocab vocab.txt
      bertbatch submit --train sst2/train.tsv --eval sst2/dev.tsv --epochs 3 --wait
      bertbatch --profile prod list --state RUNNING
      bertbatch runs --region eu-west-1
      bertbatch --debug status JOB
    """
    # One Session for the invocation; options given after the command update it (core/options.py).
    # A caller may pass its own Session as `obj` (tests: a clock that does not wait); its sleep is kept.
    sleep = ctx.obj.sleep if isinstance(ctx.obj, Session) else Session.sleep
    ctx.obj = Session(profile=profile, project=project, region=region, aws_profile=aws_profile, sleep=sleep)


for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="bertbatch")


if __name__ == "__main__":
    main()
