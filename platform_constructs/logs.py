"""Encrypted CloudWatch log groups with a validated retention."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, aws_kms as kms, aws_logs as logs
from constructs import Construct

from stacks.config import LOG_RETENTION_DAYS

# RetentionDays members in the same order as the day counts CloudWatch accepts.
_RETENTION = dict(zip(LOG_RETENTION_DAYS, [m for m in logs.RetentionDays if m.name != "INFINITE"]))


def retention_days(days: int) -> logs.RetentionDays:
    """The RetentionDays member for a (validated) number of days."""
    return _RETENTION[days]


def encrypted_log_group(
    scope: Construct,
    construct_id: str,
    *,
    name: str | None,
    key: kms.IKey,
    days: int,
    removal_policy: RemovalPolicy,
) -> logs.LogGroup:
    """A log group encrypted with `key` (whose policy must allow CloudWatch Logs)."""
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=name,
        encryption_key=key,
        retention=retention_days(days),
        removal_policy=removal_policy,
    )
