"""AlertsTopic (platform_constructs/alerts.py): the encrypted topic, its key and topic policies, emails.

The Monitoring stack built alone (tests/stacks/monitoring_standalone.py), session fixtures."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from tests.stacks.conftest import EMAILS
from tests.stacks.monitoring_standalone import resolve as resolve_str
from tests.stacks.monitoring_standalone import (
    topic_ref,
)


def test_topic_is_encrypted_with_the_monitoring_key(dev_mon):
    (key_id,) = dev_mon.of_type("AWS::KMS::Key")
    dev_mon.template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}})


def test_monitoring_key_rotates(dev_mon):
    dev_mon.template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def _key_statement(mon, service: str) -> dict:
    (key,) = mon.of_type("AWS::KMS::Key").values()
    (statement,) = [
        s for s in key["Properties"]["KeyPolicy"]["Statement"] if s.get("Principal") == {"Service": service}
    ]
    return statement


@pytest.mark.parametrize("service", ["budgets.amazonaws.com", "events.amazonaws.com", "cloudwatch.amazonaws.com"])
def test_key_policy_lets_publishing_services_use_the_key(dev_mon, service):
    statement = _key_statement(dev_mon, service)
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


@pytest.mark.parametrize("service", ["budgets.amazonaws.com", "cloudwatch.amazonaws.com"])
def test_key_grants_to_budgets_and_cloudwatch_are_for_this_account_only(dev_mon, service):
    assert _key_statement(dev_mon, service)["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    }


def test_key_grant_to_eventbridge_has_no_source_condition(dev_mon):
    # EventBridge's KMS requests for an encrypted SNS target carry no aws:Source* keys.
    assert "Condition" not in _key_statement(dev_mon, "events.amazonaws.com")


def test_cloudwatch_logs_may_use_the_key_for_the_monitoring_log_groups(dev_mon):
    (key,) = dev_mon.of_type("AWS::KMS::Key").values()
    prefixes = [
        resolve_str(s["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if "ArnLike" in s.get("Condition", {}) and "kms:EncryptionContext:aws:logs:arn" in s["Condition"]["ArnLike"]
    ]
    assert sorted(p.split(":log-group:")[1] for p in prefixes) == ["/aws/events/bert-batch/dev/*", "/bert-batch/dev/*"]


def test_topic_policy_denies_publishing_without_tls(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "sns:Publish",
                                "Principal": "*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_topic_policy_lets_budgets_of_this_account_publish(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Sid": "AllowBudgetsToPublish",
                            "Effect": "Allow",
                            "Action": "sns:Publish",
                            "Principal": {"Service": "budgets.amazonaws.com"},
                            "Resource": topic_ref(dev_mon),
                            "Condition": {
                                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                                "ArnLike": {
                                    "aws:SourceArn": {
                                        "Fn::Join": [
                                            "",
                                            [
                                                "arn:",
                                                {"Ref": "AWS::Partition"},
                                                ":budgets::",
                                                {"Ref": "AWS::AccountId"},
                                                ":*",
                                            ],
                                        ]
                                    }
                                },
                            },
                        }
                    ]
                )
            }
        },
    )


def test_topic_policy_lets_eventbridge_and_cloudwatch_publish(dev_mon):
    for service in ("events.amazonaws.com", "cloudwatch.amazonaws.com"):
        dev_mon.template.has_resource_properties(
            "AWS::SNS::TopicPolicy",
            {
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {"Effect": "Allow", "Action": "sns:Publish", "Principal": {"Service": service}}
                            )
                        ]
                    )
                }
            },
        )


def test_one_email_subscription_per_configured_address(custom_mon):
    for email in EMAILS:
        custom_mon.template.has_resource_properties(
            "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": email, "TopicArn": topic_ref(custom_mon)}
        )
    emails = [
        r for r in custom_mon.of_type("AWS::SNS::Subscription").values() if r["Properties"]["Protocol"] == "email"
    ]
    assert len(emails) == len(EMAILS)


def test_no_email_subscription_without_addresses(dev_mon):
    assert not [r for r in dev_mon.of_type("AWS::SNS::Subscription").values() if r["Properties"]["Protocol"] == "email"]
