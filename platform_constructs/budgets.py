"""Monthly cost budgets with ACTUAL and FORECASTED notifications to the budget topic: the
project's (the one the cost guardrail acts on) and one per team with a budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_sns as sns
from constructs import Construct

PROJECT_TAG_KEY = "Project"


@dataclass(frozen=True)
class Notification:
    notification_type: str  # ACTUAL | FORECASTED
    threshold_percent: float


def notifications_for(
    actual_thresholds_percent: Sequence[float], forecasted_threshold_percent: float
) -> list[Notification]:
    """ACTUAL at each threshold, then FORECASTED at its threshold."""
    return [Notification("ACTUAL", t) for t in actual_thresholds_percent] + [
        Notification("FORECASTED", forecasted_threshold_percent)
    ]


def tag_filter(key: str, value: str) -> dict[str, list[str]]:
    """Cost filter on a user-defined cost-allocation tag (it must be activated in Billing):
    Budgets spells it user:<key>$<value>."""
    return {"TagKeyValue": [f"user:{key}${value}"]}


def project_tag_filter(project_name: str) -> dict[str, list[str]]:
    """Cost filter on the Project cost-allocation tag."""
    return tag_filter(PROJECT_TAG_KEY, project_name)


class MonthlyCostBudget(Construct):
    """A monthly COST budget in USD. Every notification goes to `topic` (people get it through
    the topic's email subscriptions, so nobody is emailed twice) and to `emails` directly.

    Attributes: `budget` (CfnBudget), `budget_name`, `limit_usd`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        budget_name: str,
        limit_usd: float,
        actual_thresholds_percent: Sequence[float],
        forecasted_threshold_percent: float,
        cost_filter: dict[str, list[str]] | None,
        topic: sns.ITopic,
        emails: Sequence[str] = (),
    ) -> None:
        """`cost_filter`: count only that spend (`tag_filter`; None: the whole account)."""
        super().__init__(scope, construct_id)
        self.budget_name = budget_name
        self.limit_usd = limit_usd
        subscribers = [budgets.CfnBudget.SubscriberProperty(subscription_type="SNS", address=topic.topic_arn)] + [
            budgets.CfnBudget.SubscriberProperty(subscription_type="EMAIL", address=email) for email in emails
        ]
        self.budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=budget_name,
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=limit_usd, unit="USD"),
                cost_filters=cost_filter,
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
                for n in notifications_for(actual_thresholds_percent, forecasted_threshold_percent)
            ],
        )
        # Budgets checks that it may publish when the budget is created.
        policy = topic.node.try_find_child("Policy")
        if policy is not None:
            self.budget.node.add_dependency(policy)
