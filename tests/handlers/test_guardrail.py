"""The cost guardrail Lambda: disables the queues on this budget's 100% ACTUAL alert, and only then."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from bertbatch_contract.naming import Naming
from platform_constructs.runtime import guardrail

REGION = "us-east-1"
PROFILE = "dev"
BUDGET = "bert-batch-dev"
LIMIT = 500.0
QUEUE_KINDS = ("spot-first", "on-demand", "multi-node")
QUEUES = tuple(Naming(PROFILE).resource(kind) for kind in QUEUE_KINDS)
BUDGET_TOPIC = f"arn:aws:sns:{REGION}:123456789012:bert-batch-dev-budget"
ALERTS_TOPIC = f"arn:aws:sns:{REGION}:123456789012:bert-batch-dev-alerts"


def budget_message(
    *,
    name: str = BUDGET,
    alert_type: str = "ACTUAL",
    threshold: str = "> $500.00",
    budgeted: str = "$500.00",
    amount: str = "$512.34",
) -> str:
    """The plain-text body AWS Budgets publishes to SNS."""
    return (
        "AWS Budget Notification November 21, 2026\n"
        "AWS Account 123456789012\n\n"
        "Dear AWS Customer,\n\n"
        f"You requested that we alert you when the {alert_type} Cost associated with your {name} budget "
        f"is greater than {threshold.lstrip('> ')} for the current month. The {alert_type} Cost associated "
        f"with this budget is {amount}. You can find additional details below and by accessing the AWS "
        "Budgets dashboard [1].\n\n"
        f"Budget Name: {name}\n"
        "Budget Type: Cost\n"
        f"Budgeted Amount: {budgeted}\n"
        f"Alert Type: {alert_type}\n"
        f"Alert Threshold: {threshold}\n"
        f"{alert_type} Amount: {amount}\n\n"
        "[1] https://console.aws.amazon.com/billing/home#/budgets\n"
    )


def sns_event(*messages: str, topic: str = BUDGET_TOPIC) -> dict:
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": f"m-{i}",
                    "TopicArn": topic,
                    "Subject": "AWS Budgets: bert-batch-dev has exceeded your alert threshold",
                    "Message": message,
                },
            }
            for i, message in enumerate(messages)
        ]
    }


@pytest.fixture
def batch(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(
            RoleName="batch-service",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
        )["Role"]["Arn"]
        client = boto3.client("batch", region_name=REGION)
        env = client.create_compute_environment(
            computeEnvironmentName="unmanaged", type="UNMANAGED", state="ENABLED", serviceRole=role
        )["computeEnvironmentArn"]
        for i, name in enumerate(QUEUES):
            client.create_job_queue(
                jobQueueName=name,
                state="ENABLED",
                priority=i + 1,
                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}],
            )
        # An unrelated queue the guardrail must never touch.
        client.create_job_queue(
            jobQueueName="someone-else",
            state="ENABLED",
            priority=9,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}],
        )
        yield client


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("BUDGET_NAME", BUDGET)
    monkeypatch.setenv("BUDGET_LIMIT_USD", f"{LIMIT:g}")
    monkeypatch.setenv("JOB_QUEUES", json.dumps(list(QUEUES)))
    monkeypatch.setenv("MIN_PERCENT", "100")
    monkeypatch.setenv("BUDGET_TOPIC_ARN", BUDGET_TOPIC)


def states(batch) -> dict[str, str]:
    return {q["jobQueueName"]: q["state"] for q in batch.describe_job_queues()["jobQueues"]}


def test_100_percent_actual_alert_disables_every_project_queue(batch, env):
    result = guardrail.handler(sns_event(budget_message()))

    assert {name: states(batch)[name] for name in QUEUES} == dict.fromkeys(QUEUES, "DISABLED")
    assert result["results"][0]["action"] == "disable-queues"


def test_other_queues_are_left_alone(batch, env):
    guardrail.handler(sns_event(budget_message()))

    assert states(batch)["someone-else"] == "ENABLED"


@pytest.mark.parametrize("threshold", ["> $250.00", "> $400.00"], ids=["50%", "80%"])
def test_lower_actual_thresholds_are_ignored(batch, env, threshold):
    result = guardrail.handler(sns_event(budget_message(threshold=threshold)))

    assert set(states(batch).values()) == {"ENABLED"}
    assert result["results"][0]["action"] == "ignore"


def test_forecasted_alert_is_ignored(batch, env):
    guardrail.handler(sns_event(budget_message(alert_type="FORECASTED")))

    assert set(states(batch).values()) == {"ENABLED"}


def test_another_budgets_alert_is_ignored(batch, env):
    guardrail.handler(sns_event(budget_message(name="bert-batch-prod")))

    assert set(states(batch).values()) == {"ENABLED"}


def test_a_forged_budget_message_from_another_topic_does_not_disable_queues(batch, env):
    # Anyone who may publish to the alerts topic can write text that reads like a budget alert.
    result = guardrail.handler(sns_event(budget_message(), topic=ALERTS_TOPIC))

    assert set(states(batch).values()) == {"ENABLED"}
    assert result["results"][0]["action"] == "ignore"
    assert ALERTS_TOPIC in result["results"][0]["reason"]


def test_a_record_without_a_topic_is_ignored(batch, env):
    event = sns_event(budget_message())
    del event["Records"][0]["Sns"]["TopicArn"]

    guardrail.handler(event)

    assert set(states(batch).values()) == {"ENABLED"}


def test_alarm_and_job_notifications_on_the_topic_are_ignored(batch, env):
    alarm = json.dumps({"AlarmName": "bert-batch-dev-JobsFailed", "NewStateValue": "ALARM"})
    job = "[bert-batch dev] Batch job run-1 FAILED. Run id: run-1. Reason: Essential container in task exited."

    guardrail.handler(sns_event(alarm, job))

    assert set(states(batch).values()) == {"ENABLED"}


def test_a_second_alert_is_harmless(batch, env):
    guardrail.handler(sns_event(budget_message(), budget_message(threshold="> $600.00")))

    assert {name: states(batch)[name] for name in QUEUES} == dict.fromkeys(QUEUES, "DISABLED")


def test_a_queue_that_cannot_be_disabled_fails_the_invocation(batch, env, monkeypatch):
    monkeypatch.setenv("JOB_QUEUES", json.dumps([*QUEUES, "no-such-queue"]))

    with pytest.raises(RuntimeError, match="no-such-queue"):
        guardrail.handler(sns_event(budget_message()))
    # The queues that exist are still disabled.
    assert {name: states(batch)[name] for name in QUEUES} == dict.fromkeys(QUEUES, "DISABLED")


@pytest.mark.parametrize(
    "threshold, percent",
    [("> $500.00", 100.0), ("> $1,000.00", 200.0), ("> 100.00%", 100.0), ("> 80%", 80.0), ("100", 100.0)],
)
def test_threshold_is_read_as_dollars_or_percent(threshold, percent):
    alert = guardrail.parse_budget_message(budget_message(threshold=threshold))

    assert alert.threshold_percent(LIMIT) == pytest.approx(percent)


def test_json_shaped_budget_message_is_understood():
    message = json.dumps(
        {"budgetName": BUDGET, "notificationType": "ACTUAL", "threshold": 100, "thresholdType": "PERCENTAGE"}
    )

    alert = guardrail.parse_budget_message(message)

    assert (alert.budget_name, alert.alert_type, alert.threshold_percent(LIMIT)) == (BUDGET, "ACTUAL", 100.0)


@pytest.mark.parametrize("message", ["", "hello", json.dumps(["not", "a", "dict"]), json.dumps({"AlarmName": "x"})])
def test_non_budget_messages_parse_to_none(message):
    assert guardrail.parse_budget_message(message) is None
