"""Monitoring stack: alerts topic, budget, dashboard, alarms, job notifications, cost guardrail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from bertbatch_contract import tags
from platform_constructs.alarms import (
    FALLBACK_ERRORS,
    GUARDRAIL_ERRORS,
    JOB_GAUGE_ERRORS,
    AlarmThresholds,
    build_alarms,
)
from platform_constructs.alerts import AlertsTopic
from platform_constructs.budgets import MonthlyCostBudget, project_tag_filter, tag_filter
from platform_constructs.dashboard import TrainingDashboard
from platform_constructs.guardrail import CostGuardrail
from platform_constructs.job_events import JobStateEvents
from platform_constructs.lustre import LinkedLustre
from stacks.config import PlatformConfig

# Order of the queues on the dashboard (the keys the Training stack uses).
QUEUE_KINDS = ("spot-first", "on-demand", "multi-node")


def budget_name(config: PlatformConfig) -> str:
    return config.naming.prefix


def team_budget_name(config: PlatformConfig, team: str) -> str:
    """Never the project budget's name: the cost guardrail acts on that name only."""
    return f"{config.naming.prefix}-team-{team}"


class MonitoringStack(Stack):
    """Exposes `alerts_topic` (sns.ITopic), `budget_topic` (sns.ITopic: AWS Budgets only),
    `dashboard`, `alarms` (dict name -> cloudwatch.Alarm), `budget` (MonthlyCostBudget),
    `team_budgets` (team -> MonthlyCostBudget), `job_events` (JobStateEvents, None without queues) and
    `guardrail` (CostGuardrail, None when `budget.cost_guardrail` is off)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        job_queues: Mapping[str, batch.IJobQueue],
        job_log_group: logs.ILogGroup | None,
        fallback_function: lambda_.IFunction | None,
        lustre: LinkedLustre | None,
        data_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        naming, removal = config.naming, config.removal_policy_value

        alerts = AlertsTopic(
            self,
            "Alerts",
            key_alias=naming.key_alias("monitoring"),
            display_name=f"{naming.project} {naming.profile} alerts",
            emails=config.alert_emails,
            log_group_prefixes=[naming.path, naming.events_log_group("")],
            removal_policy=removal,
        )
        self.alerts_topic = alerts.topic
        self.budget_topic = alerts.budget_topic

        self.budget = MonthlyCostBudget(
            self,
            "Budget",
            budget_name=budget_name(config),
            limit_usd=config.budget.monthly_limit_usd,
            actual_thresholds_percent=config.budget.actual_thresholds_percent,
            forecasted_threshold_percent=config.budget.forecasted_threshold_percent,
            cost_filter=project_tag_filter(config.project_name) if config.budget.filter_on_project_tag else None,
            topic=alerts.budget_topic,
        )
        self.team_budgets = self._team_budgets(config, alerts)

        ordered = [k for k in QUEUE_KINDS if k in job_queues] + [k for k in job_queues if k not in QUEUE_KINDS]
        queues = {k: (job_queues[k].job_queue_name, job_queues[k].job_queue_arn) for k in ordered}
        queue_arns = {k: arn for k, (_name, arn) in queues.items()}

        self.job_events = self._job_events(config, alerts, list(queue_arns.values())) if queues else None
        self.guardrail = (
            self._guardrail(config, alerts, list(queue_arns.values())) if config.budget.cost_guardrail else None
        )
        fsx = (lustre.file_system.file_system_id, config.data.fsx.storage_capacity_gib) if lustre is not None else None
        self.alarms = self._alarms(config, alerts, queue_arns, fsx, fallback_function)

        self.dashboard = TrainingDashboard(
            self,
            "Dashboard",
            dashboard_name=naming.resource("training"),
            naming=naming,
            queues=queues,
            job_log_group=job_log_group,
            events=self.job_events,
            fsx=fsx,
            buckets=[("data", data_bucket), ("artifacts", artifacts_bucket)],
            monthly_limit_usd=config.budget.monthly_limit_usd,
            runbook_url=config.monitoring.runbook_url,
            alarms=list(self.alarms.values()),
        ).dashboard

        CfnOutput(self, "AlertsTopicArn", value=alerts.topic.topic_arn)
        CfnOutput(self, "BudgetTopicArn", value=alerts.budget_topic.topic_arn)
        CfnOutput(self, "BudgetName", value=self.budget.budget_name)
        CfnOutput(self, "DashboardName", value=self.dashboard.dashboard_name)

    def _team_budgets(self, config: PlatformConfig, alerts: AlertsTopic) -> dict[str, MonthlyCostBudget]:
        """One budget per team of `teams.budgets_usd`, on the team's cost-allocation tag, with the
        project budget's thresholds. Its alerts reach the budget topic (the guardrail ignores any
        budget but the project's) and the team's emails."""
        return {
            team: MonthlyCostBudget(
                self,
                f"TeamBudget{team}",
                budget_name=team_budget_name(config, team),
                limit_usd=limit,
                actual_thresholds_percent=config.budget.actual_thresholds_percent,
                forecasted_threshold_percent=config.budget.forecasted_threshold_percent,
                cost_filter=tag_filter(tags.TAG_TEAM, team),
                topic=alerts.budget_topic,
                emails=config.teams.alert_emails.get(team, ()),
            )
            for team, limit in sorted(config.teams.budgets_usd.items())
        }

    def _job_events(self, config: PlatformConfig, alerts: AlertsTopic, queue_arns: list[str]) -> JobStateEvents:
        naming = config.naming
        return JobStateEvents(
            self,
            "JobEvents",
            naming=naming,
            queue_arns=queue_arns,
            topic=alerts.topic,
            key=alerts.key,
            log_group_name=naming.events_log_group("batch-job-states"),
            gauge_log_group_name=naming.log_group("monitoring/job-gauge"),
            log_retention_days=config.log_retention_days,
            removal_policy=config.removal_policy_value,
        )

    def _guardrail(self, config: PlatformConfig, alerts: AlertsTopic, queue_arns: list[str]) -> CostGuardrail:
        return CostGuardrail(
            self,
            "CostGuardrail",
            topic=alerts.budget_topic,
            budget_name=self.budget.budget_name,
            limit_usd=config.budget.monthly_limit_usd,
            queue_arns=queue_arns,
            log_group_name=config.naming.log_group("monitoring/cost-guardrail"),
            key=alerts.key,
            log_retention_days=config.log_retention_days,
            removal_policy=config.removal_policy_value,
        )

    def _alarms(self, config: PlatformConfig, alerts: AlertsTopic, queue_arns: dict[str, str],
                fsx: tuple[str, int] | None,
                fallback_function: lambda_.IFunction | None) -> dict[str, cloudwatch.Alarm]:
        """The alarms of docs/runbook.md, with an errors alarm on each function this stack watches."""
        watched_functions: dict[str, lambda_.IFunction] = {}
        if fallback_function is not None:
            watched_functions[FALLBACK_ERRORS] = fallback_function
        if self.guardrail is not None:
            watched_functions[GUARDRAIL_ERRORS] = self.guardrail.function
        if self.job_events is not None:
            watched_functions[JOB_GAUGE_ERRORS] = self.job_events.gauge_function
        return build_alarms(
            self,
            thresholds=AlarmThresholds(
                failed_jobs=config.monitoring.failed_jobs_threshold,
                spot_interruptions=config.monitoring.spot_interruptions_threshold,
                stalled_minutes=config.monitoring.stalled_minutes,
                fsx_free_capacity_percent=config.monitoring.fsx_free_capacity_percent,
            ),
            naming=config.naming,
            topic=alerts.topic,
            events=self.job_events,
            queue_arns=queue_arns,
            fsx=fsx,
            functions=watched_functions,
            runbook=config.monitoring.runbook_url or "docs/runbook.md",
        )
