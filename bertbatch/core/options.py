"""Options shared by several commands: which deployment (profile, project, region, AWS
profile) and the hyperparameters, generated from the contract's table.

The deployment options are declared here once. The root group turns them into the `Session`
in `ctx.obj` (with the environment and the defaults); the same options after a command
override that Session's fields, so `bertbatch --profile prod list` and
`bertbatch list --profile prod` mean the same and the command's own wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from bertbatch_contract import hyperparameters as hp
from bertbatch_contract import job, teams
from bertbatch_contract.naming import DEFAULT_PROJECT

from .errors import BertBatchError
from .session import Session

F = TypeVar("F", bound=Callable[..., Any])

ENV_PROJECT = "BERT_BATCH_PROJECT"  # read by the CLI only


@dataclass(frozen=True)
class TargetOption:
    flag: str
    field: str  # Session attribute
    description: str
    default: str | None = None  # applied by the root group
    envvar: str | None = None  # read by the root group

    @property
    def help(self) -> str:
        notes = []
        if self.default:
            notes.append(f"default: {self.default}")
        if self.envvar:
            notes.append(f"env: {self.envvar}")
        return self.description + (f" [{'; '.join(notes)}]" if notes else "")


TARGET_OPTIONS: dict[str, TargetOption] = {
    o.field: o
    for o in (
        TargetOption("--profile", "profile", "bert-batch profile (the deployment), e.g. dev or prod",
                     default="dev", envvar=job.ENV_PROFILE),
        TargetOption("--project", "project", "Project name of the deployment, the SSM prefix",
                     default=DEFAULT_PROJECT, envvar=ENV_PROJECT),
        TargetOption("--region", "region", "AWS region (else AWS_DEFAULT_REGION or the AWS profile's region)",
                     envvar="AWS_REGION"),
        TargetOption("--aws-profile", "aws_profile", "Named AWS profile for credentials (default: AWS_PROFILE)"),
    )
}
ALL_TARGETS = tuple(TARGET_OPTIONS)


def team_option(fn: F) -> F:
    """--team: whose fair share of the queues a job runs in, and the team its cost counts for."""
    return click.option(
        "--team", envvar=teams.ENV_TEAM, metavar="NAME",
        help="Team the job runs for: its fair share of the queues, and the team tag its cost is counted "
             f"under [default: the deployment's teams.default; env: {teams.ENV_TEAM}]",
    )(fn)


def resolve_team(session: Session, given: str | None) -> str:
    """The team of a job: --team (or its environment variable), else the deployment's default;
    one line naming the teams when it is not one of them."""
    try:
        return session.deployment.teams.resolve(given)
    except ValueError as exc:
        raise BertBatchError(f"--team: {exc}") from None


def root_target_options(fn: F) -> F:
    """The deployment options of the root group, with their defaults and environment variables."""
    for o in reversed(TARGET_OPTIONS.values()):
        fn = click.option(o.flag, o.field, default=o.default, envvar=o.envvar, help=o.help)(fn)
    return fn


def _override(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None and param.name is not None:
        setattr(ctx.ensure_object(Session), param.name, value)


def target_options(*fields: str) -> Callable[[F], F]:
    """The same options after a command (default: all four). Given there, they override the
    root group's value in ctx.obj; not given, the root's value (flag, environment, default) holds."""

    def decorate(fn: F) -> F:
        for name in reversed(fields or ALL_TARGETS):
            o = TARGET_OPTIONS[name]
            fn = click.option(o.flag, o.field, default=None, expose_value=False, callback=_override,
                              help=o.help)(fn)
        return fn

    return decorate


def _metavar(row: hp.Hyperparameter) -> str:
    if row.choices:
        return "[" + "|".join(row.choices) + "]"
    return {int: "N", float: "NUMBER", str: "TEXT"}[row.type]


def hyperparameter_help(row: hp.Hyperparameter, default_label: str = "job default") -> str:
    """The table's help, the allowed values for numbers, and the default."""
    rule = f"; {row.rule()}" if row.type is not str else ""
    default = "" if row.default in (None, "") else f" [{default_label}: {hp.format_value(row.default)}]"
    return f"{row.help}{rule}{default}"


def hyperparameter_options(rows: Iterable[hp.Hyperparameter], default_label: str = "job default") -> Callable[[F], F]:
    """One option per row of the table (flag and help from it), passed by field name, unset = None.
    Values are checked by `job_parameters.check`, not by click, so the message is the table's."""
    rows = tuple(rows)

    def decorate(fn: F) -> F:
        for row in reversed(rows):
            fn = click.option(row.flag, row.name, default=None, metavar=_metavar(row),
                              help=hyperparameter_help(row, default_label))(fn)
        return fn

    return decorate
