"""AWS Batch job-state events -> metrics and notifications, and the running-jobs gauge.

Batch publishes no job-count metrics. Its job-state events (EventBridge, "Batch Job State
Change") are sent to a log group, and metric filters count, per queue, the jobs entering each
state and the attempts ended by a terminated EC2 host (Spot reclaim). A second rule mails a
readable line to the alerts topic when a job SUCCEEDS or FAILS. A scheduled function samples
how many jobs are RUNNING (events only mark transitions), for the stalled-job alarm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jsii
from aws_cdk import (
    ArnFormat,
    Aws,
    Duration,
    Names,
    RemovalPolicy,
    Stack,
)
from aws_cdk import (
    aws_cloudwatch as cloudwatch,
)
from aws_cdk import (
    aws_events as events,
)
from aws_cdk import (
    aws_events_targets as targets,
)
from aws_cdk import (
    aws_iam as iam,
)
from aws_cdk import (
    aws_kms as kms,
)
from aws_cdk import (
    aws_lambda as lambda_,
)
from aws_cdk import (
    aws_logs as logs,
)
from aws_cdk import (
    aws_sns as sns,
)
from constructs import Construct

from bertbatch_contract import metrics
from bertbatch_contract.naming import Naming
from platform_constructs.functions import acknowledge_small_function, handler_function, handler_of
from platform_constructs.logs import encrypted_log_group
from platform_constructs.nag import acknowledge
from platform_constructs.runtime import job_gauge
from platform_constructs.training_metrics import PERIOD

BATCH_SOURCE = "aws.batch"
JOB_STATE_CHANGE = "Batch Job State Change"
NOTIFY_STATES = ("SUCCEEDED", "FAILED")
# Batch's status reason when the instance under an attempt is terminated (Spot reclaim).
SPOT_REASON_PREFIX = "Host EC2"
GAUGE_HANDLER = handler_of(job_gauge)
GAUGE_RATE = Duration.minutes(5)


def job_state_pattern(queue_arns: Sequence[str], statuses: Sequence[str] | None = None) -> events.EventPattern:
    detail: dict[str, Any] = {"jobQueue": list(queue_arns)}
    if statuses:
        detail["status"] = list(statuses)
    return events.EventPattern(source=[BATCH_SOURCE], detail_type=[JOB_STATE_CHANGE], detail=detail)


def notification_message(naming: Naming) -> events.RuleTargetInput:
    """One readable line per finished job. The CLI names each job after its run id."""
    f = events.EventField.from_path
    return events.RuleTargetInput.from_text(
        f"[{naming.project} {naming.profile}] Batch job {f('$.detail.jobName')} {f('$.detail.status')}."
        f" Run id: {f('$.detail.jobName')}. Reason: {f('$.detail.statusReason')}."
        f" Queue: {f('$.detail.jobQueue')}."
        f" Details: https://console.aws.amazon.com/batch/home?region={f('$.region')}#jobs/detail/{f('$.detail.jobId')}"
    )


@jsii.implements(events.IRuleTarget)
class LogGroupTarget:
    """A log group as a rule target, with no custom resource: the log group's resource policy
    (letting EventBridge write) is a plain AWS::Logs::ResourcePolicy created next to it."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._log_group = log_group

    def bind(self, rule: events.IRule, id: str | None = None) -> events.RuleTargetConfig:
        arn = Stack.of(self._log_group).format_arn(
            service="logs",
            resource="log-group",
            resource_name=self._log_group.log_group_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        return events.RuleTargetConfig(arn=arn, target_resource=self._log_group)


@jsii.implements(events.IRuleTarget)
class EncryptedTopicTarget:
    """An SNS topic as a rule target, publishable by this rule only.

    CDK's `SnsTopic` target lets `events.amazonaws.com` publish with no condition (any rule of
    any account) and grants it the topic's key. Here the topic policy names the rule
    (`aws:SourceArn`) and this account; the key's grant to EventBridge is the topic owner's
    (`alerts.AlertsTopic`)."""

    def __init__(self, topic: sns.ITopic, *, message: events.RuleTargetInput) -> None:
        self._topic = topic
        self._message = message

    def bind(self, rule: events.IRule, id: str | None = None) -> events.RuleTargetConfig:
        self._topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid=f"AllowRule{Names.node_unique_id(rule.node)}ToPublish"[:100],
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self._topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnEquals": {"aws:SourceArn": rule.rule_arn},
                },
            )
        )
        return events.RuleTargetConfig(arn=self._topic.topic_arn, input=self._message, target_resource=self._topic)


class JobStateEvents(Construct):
    """Job-state events of the given queues: log group + metric filters, notifications, gauge.

    Attributes: `log_group`, `rule`, `notification_rule`, `gauge_function`, `gauge_rule`.
    Metric helpers: `state_metric(state, queue_arn)`, `spot_interruptions_metric(queue_arn)`,
    `running_jobs_metric()`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        naming: Naming,
        queue_arns: Sequence[str],
        topic: sns.ITopic,
        key: kms.IKey,
        log_group_name: str,
        gauge_log_group_name: str,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.profile = naming.profile
        owner = f"{naming.project} {naming.profile}"
        self.log_group = encrypted_log_group(
            self, "Events", name=log_group_name, key=key, days=log_retention_days, removal_policy=removal_policy
        )
        self._send_states_to_logs(naming, queue_arns, owner)
        self._add_metric_filters()

        self.notification_rule = events.Rule(
            self,
            "Notify",
            description=f"{owner}: mail a line to the alerts topic when a job succeeds or fails",
            event_pattern=job_state_pattern(queue_arns, NOTIFY_STATES),
            targets=[EncryptedTopicTarget(topic, message=notification_message(naming))],
        )

        self._add_gauge(naming, queue_arns, owner, key=key, log_group_name=gauge_log_group_name,
                        log_retention_days=log_retention_days, removal_policy=removal_policy)

    def _send_states_to_logs(self, naming: Naming, queue_arns: Sequence[str], owner: str) -> None:
        """The rule that writes the queues' job-state changes to the events log group."""
        # The rule must wait for the policy, so the policy names the rule by its ARN (from the
        # rule's fixed name), not by a reference that would make each depend on the other.
        to_logs_rule_name = naming.resource("batch-job-states-to-logs")
        may_write = logs.ResourcePolicy(
            self,
            "EventsMayWrite",
            resource_policy_name=naming.resource("batch-job-state-events"),
            policy_statements=[
                iam.PolicyStatement(
                    sid="EventBridgeWritesBatchJobStates",
                    principals=[iam.ServicePrincipal("events.amazonaws.com")],
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.log_group.log_group_arn],
                    conditions={
                        "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                        "ArnEquals": {
                            "aws:SourceArn": Stack.of(self).format_arn(
                                service="events", resource="rule", resource_name=to_logs_rule_name
                            )
                        },
                    },
                )
            ],
        )
        self.rule = events.Rule(
            self,
            "ToLogs",
            rule_name=to_logs_rule_name,
            description=f"{owner}: Batch job-state changes of the project's queues -> CloudWatch Logs",
            event_pattern=job_state_pattern(queue_arns),
            targets=[LogGroupTarget(self.log_group)],
        )
        self.rule.node.add_dependency(may_write)

    def _add_gauge(self, naming: Naming, queue_arns: Sequence[str], owner: str, *, key: kms.IKey,
                   log_group_name: str, log_retention_days: int, removal_policy: RemovalPolicy) -> None:
        """The function that samples RUNNING jobs on a schedule, and that schedule."""
        self.gauge_function: lambda_.Function = handler_function(
            self,
            "Gauge",
            handler=GAUGE_HANDLER,
            description=f"Publishes {metrics.RUNNING_JOBS.name} for the {owner} job queues",
            environment={
                job_gauge.ENV_JOB_QUEUES: Stack.of(self).to_json_string(list(queue_arns)),
                job_gauge.ENV_METRICS_NAMESPACE: metrics.JOBS_NAMESPACE,
                job_gauge.ENV_METRIC_NAME: metrics.RUNNING_JOBS.name,
                job_gauge.ENV_DIMENSION_NAME: metrics.DIMENSION_PROFILE,
                job_gauge.ENV_DIMENSION_VALUE: naming.profile,
            },
            log_group_name=log_group_name,
            key=key,
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
            statements=[
                iam.PolicyStatement(
                    sid="ListJobs",
                    # batch:ListJobs has no resource-level permissions.
                    actions=["batch:ListJobs"],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="PutJobsMetrics",
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": metrics.JOBS_NAMESPACE}},
                ),
            ],
        )
        acknowledge(
            self.node.find_child("GaugePolicy"),
            "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
            "batch:ListJobs and cloudwatch:PutMetricData have no resource-level permissions; "
            "PutMetricData is limited to the jobs namespace by the cloudwatch:namespace condition.",
        )
        acknowledge_small_function(self.gauge_function, f"a schedule every {GAUGE_RATE.to_minutes()} minutes")
        self.gauge_rule = events.Rule(
            self,
            "GaugeSchedule",
            description=f"{owner}: sample RUNNING jobs every {GAUGE_RATE.to_minutes()} minutes",
            schedule=events.Schedule.rate(GAUGE_RATE),
            targets=[targets.LambdaFunction(self.gauge_function, retry_attempts=0)],
        )

    # --- metrics ---------------------------------------------------------------------------
    def _add_metric_filters(self) -> None:
        status = "$.detail.status"
        dimensions = {metrics.DIMENSION_JOB_QUEUE: "$.detail.jobQueue"}
        for state in metrics.JOB_STATES:
            metric = metrics.job_state_metric(state)
            logs.MetricFilter(
                self,
                f"{metric.name}Filter",
                log_group=self.log_group,
                filter_pattern=logs.FilterPattern.string_value(status, "=", state),
                metric_namespace=metrics.JOBS_NAMESPACE,
                metric_name=metric.name,
                metric_value="1",
                dimensions=dimensions,
                unit=cloudwatch.Unit.COUNT,
            )
        logs.MetricFilter(
            self,
            f"{metrics.SPOT_INTERRUPTIONS.name}Filter",
            log_group=self.log_group,
            filter_pattern=logs.FilterPattern.all(
                logs.FilterPattern.any(
                    logs.FilterPattern.string_value(status, "=", "RUNNABLE"),
                    logs.FilterPattern.string_value(status, "=", "FAILED"),
                ),
                logs.FilterPattern.string_value("$.detail.statusReason", "=", f"{SPOT_REASON_PREFIX}*"),
            ),
            metric_namespace=metrics.JOBS_NAMESPACE,
            metric_name=metrics.SPOT_INTERRUPTIONS.name,
            metric_value="1",
            dimensions=dimensions,
            unit=cloudwatch.Unit.COUNT,
        )

    def state_metric(
        self, state: str, queue_arn: str, *, period: Duration = PERIOD, label: str | None = None
    ) -> cloudwatch.Metric:
        return _jobs_metric(
            metrics.job_state_metric(state).name,
            {metrics.DIMENSION_JOB_QUEUE: queue_arn},
            period,
            label or state.capitalize(),
        )

    def spot_interruptions_metric(
        self, queue_arn: str, *, period: Duration = PERIOD, label: str | None = None
    ) -> cloudwatch.Metric:
        return _jobs_metric(metrics.SPOT_INTERRUPTIONS.name, {metrics.DIMENSION_JOB_QUEUE: queue_arn}, period, label)

    def running_jobs_metric(self, *, period: Duration = GAUGE_RATE) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=metrics.JOBS_NAMESPACE,
            metric_name=metrics.RUNNING_JOBS.name,
            dimensions_map={metrics.DIMENSION_PROFILE: self.profile},
            statistic="Maximum",
            period=period,
            label="Running jobs",
        )


def _jobs_metric(name: str, dimensions: Mapping[str, str], period: Duration, label: str | None) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=metrics.JOBS_NAMESPACE,
        metric_name=name,
        dimensions_map=dict(dimensions),
        statistic="Sum",
        period=period,
        label=label,
    )
