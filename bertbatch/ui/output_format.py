"""`--output table|json`: the option, and printing a record or a list either way.

JSON is for scripts: one object for a record, JSON lines (one object a line) for a list, with the
field names of `json_fields`. Tables and progress are for people (`terminal`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import click

from . import json_fields

F = TypeVar("F", bound=Callable[..., Any])

TABLE, JSON = "table", "json"


def output_option(fn: F) -> F:
    """--output/-o table|json, passed as `output`. The older --json flag still means -o json."""
    fn = click.option("--json", "output", flag_value=JSON, hidden=True)(fn)
    return click.option("--output", "-o", "output", type=click.Choice((TABLE, JSON)), default=TABLE,
                        show_default=True, help="table for people, json for scripts (fields: docs/cli.md)")(fn)


def dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


def print_record(command: str, values: Mapping[str, Any]) -> None:
    """One JSON object with `command`'s documented fields."""
    click.echo(dumps(json_fields.record(command, values)))


def print_lines(command: str, records: Iterable[Mapping[str, Any]]) -> None:
    """JSON lines: one object per item, each with `command`'s documented fields."""
    for values in records:
        print_record(command, values)
