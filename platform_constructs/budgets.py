"""The monthly cost budget with ACTUAL and FORECASTED notifications to the alerts topic."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_budgets as budgets, aws_sns as sns
from constructs import Construct

from stacks.config import BudgetConfig

PROJECT_TAG_KEY = "Project"


@dataclass(frozen=True)
class Notification:
    notification_type: str  # ACTUAL | FORECASTED
    threshold_percent: float


def notifications_for(config: BudgetConfig) -> list[Notification]:
    """ACTUAL at each configured threshold, then FORECASTED at its threshold."""
    return [Notification("ACTUAL", t) for t in config.actual_thresholds_percent] + [
        Notification("FORECASTED", config.forecasted_threshold_percent)
    ]


def project_tag_filter(project_name: str) -> dict[str, list[str]]:
    """Cost filter on the Project cost-allocation tag (it must be activated in Billing)."""
    return {"TagKeyValue": [f"user:{PROJECT_TAG_KEY}${project_name}"]}


class MonthlyCostBudget(Construct):
    """A monthly COST budget in USD. Every notification has one subscriber: the alerts topic
    (people get it through the topic's email subscriptions, so nobody is emailed twice).

    Attributes: `budget` (CfnBudget), `budget_name`, `limit_usd`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: BudgetConfig,
        budget_name: str,
        project_name: str,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.budget_name = budget_name
        self.limit_usd = config.monthly_limit_usd
        subscribers = [budgets.CfnBudget.SubscriberProperty(subscription_type="SNS", address=topic.topic_arn)]
        self.budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=budget_name,
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=config.monthly_limit_usd, unit="USD"),
                cost_filters=project_tag_filter(project_name) if config.filter_on_project_tag else None,
            ),
            notifications_with_subscribers=[
                budgets.CfnBudget.NotificationWithSubscribersProperty(
                    notification=budgets.CfnBudget.NotificationProperty(
                        notification_type=n.notification_type,
                        comparison_operator="GREATER_THAN",
                        threshold=n.threshold_percent,
                        threshold_type="PERCENTAGE",
                    ),
                    subscribers=subscribers,
                )
                for n in notifications_for(config)
            ],
        )
        # Budgets checks that it may publish when the budget is created.
        policy = topic.node.try_find_child("Policy")
        if policy is not None:
            self.budget.node.add_dependency(policy)
