"""Timestamps as the CLI shows them: AWS Batch reports epoch milliseconds, S3 datetimes."""

from __future__ import annotations

import datetime as _dt


def from_millis(ms: int | str | None) -> _dt.datetime | None:
    """Epoch milliseconds (as AWS Batch reports times) as an aware UTC datetime; None if unset."""
    if not ms:
        return None
    return _dt.datetime.fromtimestamp(int(ms) / 1000, _dt.UTC)


def timestamp(ms: int | str | None) -> str:
    """Epoch milliseconds as 'YYYY-MM-DD HH:MM:SS' UTC for tables; '-' if unset."""
    when = from_millis(ms)
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else "-"


def iso(when: _dt.datetime | None) -> str | None:
    """A datetime as ISO 8601 in UTC for JSON output ('2026-11-21T19:05:00Z'); None if unset."""
    if when is None:
        return None
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(ms: int | str | None) -> str | None:
    return iso(from_millis(ms))
