"""The CLI's errors: a one-line message and a non-zero exit code.

Exit codes (docs/cli.md): 0 ok; 1 error; 2 usage error; 3 the watched job FAILED.
"""

from __future__ import annotations

import click


class BertBatchError(click.ClickException):
    """Printed by click as `Error: <message>` with exit code 1."""

    exit_code = 1


class NoAwsAccess(BertBatchError):
    """No usable AWS access (no region, no or rejected credentials, AWS unreachable): nothing
    about the deployment is known yet, so no fix that deploys applies."""


class UsageError(BertBatchError):
    """A usage error (a missing argument, a bad option value) as one line, exit code 2 as click's."""

    exit_code = 2


class JobFailed(BertBatchError):
    """`watch` (and `submit --wait`): the job ended FAILED, after following any fallback."""

    exit_code = 3
