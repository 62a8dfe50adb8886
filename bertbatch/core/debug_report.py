"""`bertbatch --debug`: what a user attaches to a problem report.

On an error it prints, before the usual `Error:` line, the traceback of the error and of the
exception it came from, and the AWS request id of every AWS error in the chain (AWS support asks
for it).
"""

from __future__ import annotations

import traceback

import botocore.exceptions
import click


def chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from or while handling, outermost first; also
    through `raise ... from None`, which hides the original only from the default traceback."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def request_ids(exc: BaseException) -> list[str]:
    """'<operation>: <request id>' for every botocore ClientError in the chain."""
    found = []
    for error in chain(exc):
        if isinstance(error, botocore.exceptions.ClientError):
            metadata = error.response.get("ResponseMetadata", {})
            request_id = metadata.get("RequestId") or metadata.get("HTTPHeaders", {}).get("x-amzn-requestid")
            if request_id:
                found.append(f"{error.operation_name}: {request_id}")
    return found


def report(exc: BaseException) -> None:
    """Tracebacks (innermost first) and AWS request ids, on stderr."""
    for error in reversed(chain(exc)):
        click.echo("".join(traceback.format_exception(error, chain=False)).rstrip(), err=True)
    for line in request_ids(exc):
        click.echo(f"AWS request id ({line})", err=True)
