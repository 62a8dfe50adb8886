"""MonthlyCostBudget (platform_constructs/budgets.py): limit, notifications, tag filter."""

from __future__ import annotations

from aws_cdk.assertions import Match

from tests.stacks.monitoring_standalone import (
    budget_topic_ref,
)


def test_monthly_cost_budget_with_the_configured_limit(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::Budgets::Budget",
        {
            "Budget": {
                "BudgetName": "bert-batch-dev",
                "BudgetType": "COST",
                "TimeUnit": "MONTHLY",
                "BudgetLimit": {"Amount": 500, "Unit": "USD"},
            }
        },
    )


def test_budget_notifies_50_80_100_actual_and_100_forecasted_to_the_budget_topic(dev_mon):
    subscriber = [{"SubscriptionType": "SNS", "Address": budget_topic_ref(dev_mon)}]
    expected = [("ACTUAL", 50), ("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100)]
    dev_mon.template.has_resource_properties(
        "AWS::Budgets::Budget",
        {
            "NotificationsWithSubscribers": [
                {
                    "Notification": {
                        "NotificationType": kind,
                        "ComparisonOperator": "GREATER_THAN",
                        "Threshold": threshold,
                        "ThresholdType": "PERCENTAGE",
                    },
                    "Subscribers": subscriber,
                }
                for kind, threshold in expected
            ]
        },
    )


def test_budget_thresholds_come_from_config(custom_mon):
    (budget,) = custom_mon.of_type("AWS::Budgets::Budget").values()
    notifications = [
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"])
        for n in budget["Properties"]["NotificationsWithSubscribers"]
    ]
    assert notifications == [("ACTUAL", 25), ("ACTUAL", 50), ("ACTUAL", 100), ("ACTUAL", 150), ("FORECASTED", 90)]
    assert budget["Properties"]["Budget"]["BudgetLimit"] == {"Amount": 1234, "Unit": "USD"}


def test_budget_filters_on_the_project_tag_when_asked(custom_mon):
    custom_mon.template.has_resource_properties(
        "AWS::Budgets::Budget", {"Budget": {"CostFilters": {"TagKeyValue": ["user:Project$bert-batch"]}}}
    )


def test_budget_counts_all_spend_by_default(dev_mon):
    dev_mon.template.has_resource_properties("AWS::Budgets::Budget", {"Budget": {"CostFilters": Match.absent()}})


def test_budget_waits_for_the_budget_topic_policy(dev_mon):
    (policy_id,) = [
        k
        for k, p in dev_mon.of_type("AWS::SNS::TopicPolicy").items()
        if p["Properties"]["Topics"] == [budget_topic_ref(dev_mon)]
    ]
    (budget,) = dev_mon.of_type("AWS::Budgets::Budget").values()
    assert policy_id in budget.get("DependsOn", [])
