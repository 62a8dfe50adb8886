"""Encrypted CloudWatch log groups with a validated retention."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

_R = logs.RetentionDays
# The retention periods CloudWatch Logs accepts, in days (the config validates against them).
RETENTION: dict[int, logs.RetentionDays] = {
    1: _R.ONE_DAY, 3: _R.THREE_DAYS, 5: _R.FIVE_DAYS, 7: _R.ONE_WEEK, 14: _R.TWO_WEEKS,
    30: _R.ONE_MONTH, 60: _R.TWO_MONTHS, 90: _R.THREE_MONTHS, 120: _R.FOUR_MONTHS,
    150: _R.FIVE_MONTHS, 180: _R.SIX_MONTHS, 365: _R.ONE_YEAR, 400: _R.THIRTEEN_MONTHS,
    545: _R.EIGHTEEN_MONTHS, 731: _R.TWO_YEARS, 1096: _R.THREE_YEARS, 1827: _R.FIVE_YEARS,
    2192: _R.SIX_YEARS, 2557: _R.SEVEN_YEARS, 2922: _R.EIGHT_YEARS, 3288: _R.NINE_YEARS,
    3653: _R.TEN_YEARS,
}
LOG_RETENTION_DAYS: tuple[int, ...] = tuple(RETENTION)


def retention_days(days: int) -> logs.RetentionDays:
    """The RetentionDays member for a number of days CloudWatch Logs accepts."""
    try:
        return RETENTION[days]
    except KeyError:
        raise ValueError(f"log retention {days} days: CloudWatch Logs accepts only {LOG_RETENTION_DAYS}") from None


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
