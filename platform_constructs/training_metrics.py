"""CloudWatch metric objects for the metrics contract (bertbatch_contract.metrics) and AWS services.

One place that turns contract names into `cloudwatch.Metric`s, so the dashboard and the alarms
cannot drift from what the container and the fallback Lambda emit.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from bertbatch_contract import metrics

GIB = 1024**3
# Default period of the training and job metrics.
PERIOD = Duration.minutes(5)
# FSx for Lustre publishes each minute; Sum over a 1-minute period is the file system total.
FSX_PERIOD = Duration.minutes(1)
# The billing metric exists only in us-east-1 (with billing alerts enabled in Billing preferences).
BILLING_REGION = "us-east-1"


def training_metric(
    metric: metrics.Metric,
    *,
    profile: str,
    statistic: str = "Average",
    period: Duration = PERIOD,
    namespace: str = metrics.DEFAULT_NAMESPACE,
    label: str | None = None,
) -> cloudwatch.Metric:
    """A contract metric aggregated per profile (dimension `Profile`)."""
    return cloudwatch.Metric(
        namespace=namespace,
        metric_name=metric.name,
        dimensions_map={metrics.DIMENSION_PROFILE: profile},
        statistic=statistic,
        period=period,
        label=label or metric.name,
    )


def fsx_metric(
    name: str, file_system_id: str, *, statistic: str = "Sum", period: Duration = FSX_PERIOD, label: str | None = None
) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/FSx",
        metric_name=name,
        dimensions_map={"FileSystemId": file_system_id},
        statistic=statistic,
        period=period,
        label=label,
    )


def fsx_free_percent(file_system_id: str, capacity_gib: int) -> cloudwatch.MathExpression:
    """Free data storage as a percent of the configured capacity."""
    return cloudwatch.MathExpression(
        expression=f"100 * free / {capacity_gib * GIB}",
        using_metrics={"free": fsx_metric("FreeDataStorageCapacity", file_system_id)},
        label="Free capacity (%)",
        period=FSX_PERIOD,
    )


def fsx_throughput(file_system_id: str, *, period: Duration = PERIOD) -> list[cloudwatch.MathExpression]:
    """Client read and write throughput in MB/s."""
    return [
        cloudwatch.MathExpression(
            expression=f"{var} / PERIOD({var}) / 1000000",
            using_metrics={var: fsx_metric(name, file_system_id, period=period)},
            label=label,
            period=period,
        )
        for var, name, label in (
            ("readBytes", "DataReadBytes", "Read (MB/s)"),
            ("writeBytes", "DataWriteBytes", "Write (MB/s)"),
        )
    ]


def bucket_size(bucket_name: str, label: str) -> cloudwatch.Metric:
    """S3 storage metrics are daily."""
    return cloudwatch.Metric(
        namespace="AWS/S3",
        metric_name="BucketSizeBytes",
        dimensions_map={"BucketName": bucket_name, "StorageType": "StandardStorage"},
        statistic="Average",
        period=Duration.days(1),
        label=label,
    )


def estimated_charges() -> cloudwatch.Metric:
    """Month-to-date estimated charges of the whole account, USD (published every few hours)."""
    return cloudwatch.Metric(
        namespace="AWS/Billing",
        metric_name="EstimatedCharges",
        dimensions_map={"Currency": "USD"},
        statistic="Maximum",
        period=Duration.hours(6),
        region=BILLING_REGION,
        label="Estimated charges (USD, account)",
    )
