"""Alarms of the training platform; each one notifies the alerts topic.

Names are stable keys of `MonitoringStack.alarms`; docs/runbook.md says what each one means
and what to do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import (
    Duration,
)
from aws_cdk import (
    aws_cloudwatch as cloudwatch,
)
from aws_cdk import (
    aws_cloudwatch_actions as cw_actions,
)
from aws_cdk import (
    aws_lambda as lambda_,
)
from aws_cdk import (
    aws_sns as sns,
)
from constructs import Construct

from bertbatch_contract import metrics
from bertbatch_contract.naming import Naming
from platform_constructs.job_events import GAUGE_RATE, JobStateEvents
from platform_constructs.training_metrics import FSX_PERIOD, fsx_free_percent, training_metric

JOBS_FAILED = "JobsFailed"
SPOT_INTERRUPTIONS = "SpotInterruptions"
STALLED_TRAINING = "StalledTraining"
FSX_FREE_CAPACITY = "FsxFreeCapacityLow"
FALLBACK_ERRORS = "FallbackErrors"
GUARDRAIL_ERRORS = "GuardrailErrors"
JOB_GAUGE_ERRORS = "JobGaugeErrors"

FAILED_JOBS_PERIOD = Duration.minutes(5)
SPOT_PERIOD = Duration.hours(1)
FSX_EVALUATION_MINUTES = 5


@dataclass(frozen=True)
class AlarmThresholds:
    failed_jobs: int  # FAILED jobs in 5 minutes
    spot_interruptions: int  # attempts ended by Spot reclaim in an hour
    stalled_minutes: int  # RUNNING without training metrics
    fsx_free_capacity_percent: float


def _sum_over_queues(
    queue_arns: Mapping[str, str], metric_for: Callable[[str], cloudwatch.IMetric], label: str, period: Duration
) -> cloudwatch.MathExpression:
    using = {f"q{i}": metric_for(arn) for i, arn in enumerate(queue_arns.values())}
    return cloudwatch.MathExpression(
        expression=" + ".join(f"FILL({v}, 0)" for v in using),
        using_metrics=using,
        label=label,
        period=period,
    )


def stalled_expression(events: JobStateEvents, profile: str) -> cloudwatch.MathExpression:
    """1 while jobs are RUNNING and no training metric arrived in the period, else 0.

    `running` is the sampled gauge (published every GAUGE_RATE, 0 included); `samples` counts
    SamplesPerSecond datapoints of the profile. No gauge data at all -> no result -> the alarm
    treats it as missing (not breaching): it cannot tell, and says so as INSUFFICIENT_DATA.
    """
    return cloudwatch.MathExpression(
        expression="IF(FILL(running, 0) > 0 AND FILL(samples, 0) == 0, 1, 0)",
        using_metrics={
            "running": events.running_jobs_metric(period=GAUGE_RATE),
            "samples": training_metric(
                metrics.SAMPLES_PER_SECOND, profile=profile, statistic="SampleCount", period=GAUGE_RATE
            ),
        },
        label="Jobs running without training metrics",
        period=GAUGE_RATE,
    )


def build_alarms(
    scope: Construct,
    *,
    thresholds: AlarmThresholds,
    naming: Naming,
    topic: sns.ITopic,
    events: JobStateEvents | None,
    queue_arns: Mapping[str, str],
    fsx: tuple[str, int] | None,
    functions: Mapping[str, lambda_.IFunction],
    runbook: str = "docs/runbook.md",
) -> dict[str, cloudwatch.Alarm]:
    """Create the alarms. `fsx` is (file system id, capacity GiB) when FSx is enabled;
    `functions` maps an alarm name to a Lambda function whose Errors it watches; each alarm's
    description points to its section of `runbook`."""
    alarms: dict[str, cloudwatch.Alarm] = {}
    profile = naming.profile

    def add(name: str, metric: cloudwatch.IMetric, description: str, **props: Any) -> None:
        alarm = cloudwatch.Alarm(
            scope,
            name,
            alarm_name=naming.resource(name),
            alarm_description=f"{description} See {runbook}#{name.lower()}",
            metric=metric,
            **props,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(topic))
        alarms[name] = alarm

    if events is not None and queue_arns:
        add(
            JOBS_FAILED,
            _sum_over_queues(
                queue_arns,
                lambda arn: events.state_metric("FAILED", arn, period=FAILED_JOBS_PERIOD),
                "Failed jobs",
                FAILED_JOBS_PERIOD,
            ),
            f"{thresholds.failed_jobs} or more jobs FAILED in 5 minutes on the {profile} queues.",
            threshold=thresholds.failed_jobs,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        add(
            SPOT_INTERRUPTIONS,
            _sum_over_queues(
                queue_arns,
                lambda arn: events.spot_interruptions_metric(arn, period=SPOT_PERIOD),
                "Spot interruptions",
                SPOT_PERIOD,
            ),
            f"{thresholds.spot_interruptions} or more job attempts ended by a terminated EC2 host (Spot reclaim) "
            "within an hour.",
            threshold=thresholds.spot_interruptions,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        periods = max(1, math.ceil(thresholds.stalled_minutes / GAUGE_RATE.to_minutes()))
        add(
            STALLED_TRAINING,
            stalled_expression(events, profile),
            f"Jobs have been RUNNING for {thresholds.stalled_minutes} minutes without any "
            f"{metrics.SAMPLES_PER_SECOND.name} metric from profile {profile}.",
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
    if fsx is not None:
        file_system_id, capacity_gib = fsx
        evaluation = math.ceil(FSX_EVALUATION_MINUTES / FSX_PERIOD.to_minutes())
        add(
            FSX_FREE_CAPACITY,
            fsx_free_percent(file_system_id, capacity_gib),
            f"FSx for Lustre free capacity below {thresholds.fsx_free_capacity_percent:g}% of {capacity_gib} GiB.",
            threshold=thresholds.fsx_free_capacity_percent,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=evaluation,
            datapoints_to_alarm=evaluation,
            treat_missing_data=cloudwatch.TreatMissingData.MISSING,
        )
    for name, function in functions.items():
        add(
            name,
            function.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            f"The {name.removesuffix('Errors')} function failed at least once in 5 minutes.",
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
    return alarms
