"""MonthlyCostBudget (platform_constructs/budgets.py): limit, notifications, tag filters; the
per-team budgets of `teams.budgets_usd` (stacks/monitoring_stack.py)."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Capture, Match

from stacks.config import ConfigError
from tests.stacks.conftest import TEAM_EMAILS, config_for, every
from tests.stacks.monitoring_standalone import (
    budget_topic_ref,
)

PROJECT_BUDGET, NLP_BUDGET = "bert-batch-dev", "bert-batch-dev-team-nlp"
BUDGET = "AWS::Budgets::Budget"


def budget_names(mon) -> list[str]:
    names = Capture()
    mon.template.all_resources_properties(BUDGET, {"Budget": {"BudgetName": names}})
    return every(names, Capture.as_string)


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
    expected = [("ACTUAL", 25), ("ACTUAL", 50), ("ACTUAL", 100), ("ACTUAL", 150), ("FORECASTED", 90)]
    custom_mon.template.has_resource_properties(BUDGET, {
        "Budget": {"BudgetName": PROJECT_BUDGET, "BudgetLimit": Match.exact({"Amount": 1234, "Unit": "USD"})},
        "NotificationsWithSubscribers": [
            {"Notification": {"NotificationType": kind, "Threshold": threshold}} for kind, threshold in expected
        ],
    })


def test_budget_filters_on_the_project_tag_by_default(dev_mon, prod_mon):
    for mon in (dev_mon, prod_mon):
        mon.template.has_resource_properties(
            "AWS::Budgets::Budget", {"Budget": {"CostFilters": {"TagKeyValue": ["user:Project$bert-batch"]}}}
        )


def test_budget_counts_all_spend_when_the_filter_is_off(custom_mon):
    custom_mon.template.has_resource_properties(
        BUDGET, {"Budget": {"BudgetName": PROJECT_BUDGET, "CostFilters": Match.absent()}})


def test_budget_waits_for_the_budget_topic_policy(dev_mon):
    (policy_id,) = dev_mon.template.find_resources(
        "AWS::SNS::TopicPolicy", {"Properties": {"Topics": Match.exact([budget_topic_ref(dev_mon)])}})
    dev_mon.template.resource_count_is(BUDGET, 1)
    dev_mon.template.has_resource(BUDGET, {"DependsOn": Match.array_with([policy_id])})


# --- per-team budgets ---------------------------------------------------------------------------
def test_a_team_with_a_budget_gets_one_on_its_team_tag(custom_mon):
    custom_mon.template.has_resource_properties(
        "AWS::Budgets::Budget",
        {
            "Budget": {
                "BudgetName": NLP_BUDGET,
                "BudgetType": "COST",
                "TimeUnit": "MONTHLY",
                "BudgetLimit": {"Amount": 300, "Unit": "USD"},
                "CostFilters": {"TagKeyValue": ["user:bert-batch:team$nlp"]},
            }
        },
    )


def test_only_teams_with_a_budget_get_one(custom_mon, dev_mon):
    assert sorted(budget_names(custom_mon)) == [PROJECT_BUDGET, NLP_BUDGET]
    assert budget_names(dev_mon) == [PROJECT_BUDGET]


def test_a_team_budget_alerts_at_the_project_thresholds_to_the_budget_topic_and_the_team(custom_mon):
    notifications = Capture()
    custom_mon.template.has_resource_properties(
        "AWS::Budgets::Budget",
        {"Budget": {"BudgetName": NLP_BUDGET}, "NotificationsWithSubscribers": notifications},
    )
    subscribers = [{"SubscriptionType": "SNS", "Address": budget_topic_ref(custom_mon)}] + [
        {"SubscriptionType": "EMAIL", "Address": email} for email in TEAM_EMAILS
    ]
    assert [(n["Notification"]["NotificationType"], n["Notification"]["Threshold"], n["Subscribers"])
            for n in notifications.as_array()] == [
        ("ACTUAL", 25, subscribers), ("ACTUAL", 50, subscribers), ("ACTUAL", 100, subscribers),
        ("ACTUAL", 150, subscribers), ("FORECASTED", 90, subscribers)]


def test_the_cost_guardrail_acts_on_the_project_budget_only(custom_mon):
    custom_mon.template.has_resource_properties(
        "AWS::Lambda::Function",
        {"Environment": {"Variables": Match.object_like({"BUDGET_NAME": PROJECT_BUDGET})}},
    )
    custom_mon.template.resource_properties_count_is(
        "AWS::Lambda::Function", {"Environment": {"Variables": Match.object_like({"BUDGET_NAME": NLP_BUDGET})}}, 0)


TWO_TEAMS = {"teams.weights": '{"nlp": 4, "vision": 1}', "teams.default": "vision"}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"teams.budgets_usd": '{"robotics": 100}'}, "teams.budgets_usd: team 'robotics' is not in teams.weights "
                                                 "(nlp, vision)"),
    ({"teams.budgets_usd": '{"nlp": 0}'}, "team 'nlp': 0 USD is outside 0 < limit <= 1e+08"),
    ({"teams.budgets_usd": '{"nlp": 100}', "teams.alert_emails": '{"nlp": ["not-an-address"]}'},
     "team 'nlp': 'not-an-address' is not an email address"),
    ({"teams.budgets_usd": '{"nlp": 100}',
      "teams.alert_emails": json.dumps({"nlp": [f"a{i}@example.com" for i in range(11)]})},
     "team 'nlp': 11 addresses, AWS Budgets takes at most 10"),
    ({"teams.budgets_usd": '{"nlp": 100}', "teams.alert_emails": '{"vision": ["v@example.com"]}'},
     "teams.alert_emails: team 'vision' has no teams.budgets_usd entry"),
])
def test_bad_team_budgets_stop_synth_with_one_line(overrides, message):
    with pytest.raises(ConfigError) as raised:
        config_for("dev", **TWO_TEAMS, **overrides)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_team_budgets_are_optional():
    config = config_for("dev", **TWO_TEAMS)
    assert (config.teams.budgets_usd, config.teams.alert_emails) == ({}, {})
