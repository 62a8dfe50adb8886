"""One error type for the CLI: a one-line message and a non-zero exit."""

from __future__ import annotations

import click


class BertBatchError(click.ClickException):
    """Printed by click as `Error: <message>` with exit code 1."""

    exit_code = 1
