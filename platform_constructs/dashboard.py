"""The training dashboard: one per profile, what a person running training looks at."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from aws_cdk import Aws, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from bertbatch_contract import metrics
from bertbatch_contract.naming import Naming
from platform_constructs.job_events import JobStateEvents
from platform_constructs.training_metrics import (
    BILLING_REGION,
    bucket_size,
    estimated_charges,
    fsx_free_percent,
    fsx_throughput,
    training_metric,
)

WIDTH = 24
CONSOLE = "https://console.aws.amazon.com"


def _console_path(name: str) -> str:
    """CloudWatch console fragments encode '/' as $252F."""
    return name.replace("/", "$252F")


class TrainingDashboard(Construct):
    """Rows: links; alarm states; jobs by state per queue; training; efficiency (MFU); interruptions; storage; cost.

    Attributes: `dashboard`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        naming: Naming,
        queues: Mapping[str, tuple[str, str]],
        job_log_group: logs.ILogGroup | None,
        events: JobStateEvents | None,
        fsx: tuple[str, int] | None,
        buckets: Sequence[tuple[str, s3.IBucket]],
        monthly_limit_usd: float,
        runbook_url: str,
        alarms: Sequence[cloudwatch.IAlarm] = (),
    ) -> None:
        """`queues`: kind -> (queue name, queue ARN); `fsx`: (file system id, capacity GiB)."""
        super().__init__(scope, construct_id)
        profile = naming.profile
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=dashboard_name,
            default_interval=Duration.hours(12),
        )
        d = self.dashboard
        d.add_widgets(self._links(naming, queues, job_log_group, runbook_url))
        if alarms:
            d.add_widgets(cloudwatch.AlarmStatusWidget(alarms=list(alarms), title="Alarms", width=WIDTH, height=3))
        if events is not None and queues:
            d.add_widgets(*_jobs_by_state_widgets(events, queues))
        d.add_widgets(*_training_widgets(profile))
        d.add_widgets(_efficiency_widget(profile))
        d.add_widgets(*_interruption_widgets(profile, events, queues))
        d.add_widgets(*_storage_widgets(fsx, buckets))
        d.add_widgets(_charges_widget(monthly_limit_usd))

    @staticmethod
    def _links(
        naming: Naming,
        queues: Mapping[str, tuple[str, str]],
        job_log_group: logs.ILogGroup | None,
        runbook_url: str,
    ) -> cloudwatch.TextWidget:
        region = Aws.REGION
        log_group_prefix = naming.path
        lines = [f"# {naming.project} ({naming.profile}): training"]
        if queues:
            queue_links = " · ".join(
                f"[{kind}]({CONSOLE}/batch/home?region={region}#queues/detail/{arn})"
                for kind, (_name, arn) in queues.items()
            )
            lines.append(f"**Job queues:** {queue_links}")
        logs_link = (
            f"{CONSOLE}/cloudwatch/home?region={region}"
            f"#logsV2:log-groups$3FlogGroupNameFilter$3D{_console_path(log_group_prefix)}"
        )
        if job_log_group is not None:
            lines.append(f"**Job logs:** `{job_log_group.log_group_name}` ([log groups of this profile]({logs_link}))")
        else:
            lines.append(f"**Logs:** [log groups of this profile]({logs_link})")
        runbook = f"[runbook]({runbook_url})" if runbook_url else "docs/runbook.md in the bert-batch repository"
        lines.append(
            f"**Runbook:** {runbook} (what each alarm means, re-enabling queues after the cost guardrail). "
            f"Estimated charges come from the {BILLING_REGION} billing metric and need billing alerts enabled."
        )
        return cloudwatch.TextWidget(markdown="\n\n".join(lines), width=WIDTH, height=4)


def _jobs_by_state_widgets(events: JobStateEvents, queues: Mapping[str, tuple[str, str]]) -> list[cloudwatch.IWidget]:
    """One graph per queue, side by side: jobs entering each state."""
    return [
        cloudwatch.GraphWidget(
            title=f"Jobs by state: {kind} (jobs entering each state per 5 min)",
            left=[events.state_metric(state, arn) for state in metrics.JOB_STATES],
            width=WIDTH // len(queues),
            height=6,
            stacked=False,
        )
        for kind, (_name, arn) in queues.items()
    ]


def _metric_of(profile: str) -> Callable[..., cloudwatch.Metric]:
    """A training metric of this profile, by metric, statistic and label."""

    def m(metric: metrics.Metric, statistic: str = "Average", label: str | None = None) -> cloudwatch.Metric:
        return training_metric(metric, profile=profile, statistic=statistic, label=label)

    return m


def _training_widgets(profile: str) -> list[cloudwatch.IWidget]:
    """Loss, evaluation, throughput and GPU use of the training jobs."""
    m = _metric_of(profile)
    return [
        cloudwatch.GraphWidget(title="Training loss", left=[m(metrics.TRAIN_LOSS)], width=6, height=6),
        cloudwatch.GraphWidget(
            title="Eval accuracy / F1",
            left=[m(metrics.EVAL_ACCURACY, "Maximum"), m(metrics.EVAL_F1, "Maximum")],
            left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
            width=6,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="Throughput",
            left=[m(metrics.SAMPLES_PER_SECOND, "Sum", "Samples/s (all runs)")],
            right=[m(metrics.TOKENS_PER_SECOND, "Sum", "Tokens/s (all runs)")],
            width=6,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="GPU utilization and memory",
            left=[m(metrics.GPU_UTILIZATION, label="GPU utilization (%)")],
            right=[m(metrics.GPU_MEMORY_USED, "Maximum", "GPU memory used (MB)")],
            left_y_axis=cloudwatch.YAxisProps(min=0, max=100),
            width=6,
            height=6,
        ),
    ]


def _efficiency_widget(profile: str) -> cloudwatch.IWidget:
    """MFU of the training jobs: how much of their GPUs' dense peak the model's FLOPs used."""
    m = _metric_of(profile)
    return cloudwatch.GraphWidget(
        title="Model FLOPs utilization (MFU, GPU runs; 0..1 of the GPUs' dense bf16/fp16 peak)",
        left=[m(metrics.MODEL_FLOPS_UTILIZATION, label="MFU (average)"),
              m(metrics.MODEL_FLOPS_UTILIZATION, "Maximum", "MFU (maximum)")],
        left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
        width=WIDTH // 2,
        height=6,
    )


def _interruption_widgets(profile: str, events: JobStateEvents | None,
                          queues: Mapping[str, tuple[str, str]]) -> list[cloudwatch.IWidget]:
    """Checkpoint time, Spot interruptions with what recovered from them, and running jobs."""
    m = _metric_of(profile)
    resilience = [m(metrics.RESUMED, "Sum", "Resumes after interruption")]
    fallback = [m(metrics.FALLBACK_RESUBMISSIONS, "Sum", "Fallback resubmissions to On-Demand")]
    spot = []
    if events is not None:
        spot = [
            events.spot_interruptions_metric(arn, label=f"Spot interruptions: {kind}")
            for kind, (_n, arn) in queues.items()
        ]
    return [
        cloudwatch.GraphWidget(
            title="Checkpoint time (s)",
            left=[
                m(metrics.CHECKPOINT_SECONDS, label="Average"),
                m(metrics.CHECKPOINT_SECONDS, "Maximum", "Maximum"),
            ],
            width=6,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="Spot interruptions and fallback", left=spot + fallback, right=resilience, width=12, height=6
        ),
        cloudwatch.GraphWidget(
            title="Running jobs (sampled)",
            left=[events.running_jobs_metric()] if events is not None else [],
            width=6,
            height=6,
        ),
    ]


def _storage_widgets(fsx: tuple[str, int] | None,
                     buckets: Sequence[tuple[str, s3.IBucket]]) -> list[cloudwatch.IWidget]:
    """FSx throughput and free capacity (with FSx), then the buckets' size across what is left."""
    storage: list[cloudwatch.IWidget] = []
    if fsx is not None:
        file_system_id, capacity_gib = fsx
        storage += [
            cloudwatch.GraphWidget(
                title="FSx for Lustre throughput (MB/s)", left=fsx_throughput(file_system_id), width=8, height=6
            ),
            cloudwatch.GraphWidget(
                title=f"FSx for Lustre free capacity (% of {capacity_gib} GiB)",
                left=[fsx_free_percent(file_system_id, capacity_gib)],
                left_y_axis=cloudwatch.YAxisProps(min=0, max=100),
                width=8,
                height=6,
            ),
        ]
    storage.append(
        cloudwatch.GraphWidget(
            title="S3 bucket size (bytes, daily)",
            left=[bucket_size(bucket.bucket_name, label) for label, bucket in buckets],
            width=WIDTH - 8 * (len(storage)),
            height=6,
        )
    )
    return storage


def _charges_widget(monthly_limit_usd: float) -> cloudwatch.IWidget:
    return cloudwatch.GraphWidget(
        title=f"Estimated charges vs budget (account-wide, {BILLING_REGION} billing metric)",
        left=[estimated_charges()],
        left_annotations=[
            cloudwatch.HorizontalAnnotation(
                value=monthly_limit_usd, label=f"Monthly budget {monthly_limit_usd:g} USD", color="#d62728"
            )
        ],
        width=WIDTH,
        height=6,
    )
