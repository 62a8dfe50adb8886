"""AlertsTopic (platform_constructs/alerts.py): the encrypted topic, its key and topic policies, emails.

The Monitoring stack built alone (tests/stacks/monitoring_standalone.py), session fixtures."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Capture, Match

from tests.stacks.conftest import EMAILS
from tests.stacks.monitoring_standalone import (
    budget_topic_ref,
    notification_rule_id,
    topic_ref,
)
from tests.stacks.monitoring_standalone import resolve as resolve_str


def test_both_topics_are_encrypted_with_the_monitoring_key(dev_mon):
    (key_id,) = dev_mon.of_type("AWS::KMS::Key")
    dev_mon.template.resource_count_is("AWS::SNS::Topic", 2)
    dev_mon.template.all_resources_properties(
        "AWS::SNS::Topic", {"KmsMasterKeyId": Match.exact({"Fn::GetAtt": [key_id, "Arn"]})})


def test_monitoring_key_rotates(dev_mon):
    dev_mon.template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def _key_statements(mon) -> list[dict]:
    mon.template.resource_count_is("AWS::KMS::Key", 1)
    found = Capture()
    mon.template.has_resource_properties("AWS::KMS::Key", {"KeyPolicy": {"Statement": found}})
    return found.as_array()


def _key_statement(mon, service: str) -> dict:
    """The one key policy statement for `service`: a second one could grant it without the conditions."""
    (statement,) = [s for s in _key_statements(mon) if s.get("Principal") == {"Service": service}]
    return statement


@pytest.mark.parametrize("service", ["budgets.amazonaws.com", "events.amazonaws.com", "cloudwatch.amazonaws.com"])
def test_key_policy_lets_publishing_services_use_the_key(dev_mon, service):
    statement = _key_statement(dev_mon, service)
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


PARTITION = {"Ref": "AWS::Partition"}
ACCOUNT = {"Ref": "AWS::AccountId"}
REGION = {"Ref": "AWS::Region"}
BUDGETS_OF_THIS_ACCOUNT = {"Fn::Join": ["", ["arn:", PARTITION, ":budgets::", ACCOUNT, ":*"]]}
ALARMS_OF_THIS_ACCOUNT = {"Fn::Join": ["", ["arn:", PARTITION, ":cloudwatch:", REGION, ":", ACCOUNT, ":alarm:*"]]}


@pytest.mark.parametrize(
    "service, source_arn",
    [("budgets.amazonaws.com", BUDGETS_OF_THIS_ACCOUNT), ("cloudwatch.amazonaws.com", ALARMS_OF_THIS_ACCOUNT)],
)
def test_key_grants_to_budgets_and_cloudwatch_are_for_this_accounts_sources_only(dev_mon, service, source_arn):
    assert _key_statement(dev_mon, service)["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": source_arn},
    }


def test_key_grant_to_eventbridge_is_only_through_sns(dev_mon):
    # SNS documents aws:SourceAccount/aws:SourceArn as unsupported in a key policy for
    # EventBridge-to-encrypted-topic deliveries; the key is usable by EventBridge via SNS only.
    assert _key_statement(dev_mon, "events.amazonaws.com")["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Join": ["", ["sns.", REGION, ".amazonaws.com"]]}}
    }


def test_cloudwatch_logs_may_use_the_key_for_the_monitoring_log_groups(dev_mon):
    prefixes = [
        resolve_str(s["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
        for s in _key_statements(dev_mon)
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


def _topic_policy(mon, topic: dict) -> list[dict]:
    """The statements of the one policy of `topic`."""
    mon.template.resource_properties_count_is("AWS::SNS::TopicPolicy", {"Topics": Match.exact([topic])}, 1)
    found = Capture()
    mon.template.has_resource_properties(
        "AWS::SNS::TopicPolicy", {"Topics": Match.exact([topic]), "PolicyDocument": {"Statement": found}})
    return found.as_array()


def test_only_budgets_of_this_account_may_publish_to_the_budget_topic(dev_mon):
    allowed = [s for s in _topic_policy(dev_mon, budget_topic_ref(dev_mon)) if s["Effect"] == "Allow"]
    assert allowed == [
        {
            "Sid": "AllowBudgetsToPublish",
            "Effect": "Allow",
            "Action": "sns:Publish",
            "Principal": {"Service": "budgets.amazonaws.com"},
            "Resource": budget_topic_ref(dev_mon),
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnLike": {"aws:SourceArn": BUDGETS_OF_THIS_ACCOUNT},
            },
        }
    ]


def test_budget_topic_policy_denies_publishing_without_tls(dev_mon):
    denied = [s for s in _topic_policy(dev_mon, budget_topic_ref(dev_mon)) if s["Effect"] == "Deny"]
    assert [s["Condition"] for s in denied] == [{"Bool": {"aws:SecureTransport": "false"}}]


def test_budgets_may_not_publish_to_the_alerts_topic(dev_mon):
    principals = [s.get("Principal") for s in _topic_policy(dev_mon, topic_ref(dev_mon))]
    assert {"Service": "budgets.amazonaws.com"} not in principals


def test_cloudwatch_alarms_of_this_account_may_publish_to_the_alerts_topic(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "Topics": [topic_ref(dev_mon)],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Action": "sns:Publish",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Condition": {
                                    "StringEquals": {"aws:SourceAccount": ACCOUNT},
                                    "ArnLike": {"aws:SourceArn": ALARMS_OF_THIS_ACCOUNT},
                                },
                            }
                        )
                    ]
                ),
            },
        },
    )


def test_only_the_job_notification_rule_may_publish_to_the_alerts_topic_through_eventbridge(dev_mon):
    eventbridge = [
        s
        for s in _topic_policy(dev_mon, topic_ref(dev_mon))
        if s.get("Principal") == {"Service": "events.amazonaws.com"}
    ]
    assert [(s["Effect"], s["Action"], s["Resource"], s.get("Condition")) for s in eventbridge] == [
        (
            "Allow",
            "sns:Publish",
            topic_ref(dev_mon),
            {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [notification_rule_id(dev_mon), "Arn"]}},
            },
        )
    ]


def test_every_configured_address_subscribes_to_both_topics(custom_mon):
    for topic in (topic_ref(custom_mon), budget_topic_ref(custom_mon)):
        for email in EMAILS:
            custom_mon.template.has_resource_properties(
                "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": email, "TopicArn": topic}
            )
    custom_mon.template.resource_properties_count_is("AWS::SNS::Subscription", {"Protocol": "email"}, 2 * len(EMAILS))


def test_no_email_subscription_without_addresses(dev_mon):
    dev_mon.template.resource_properties_count_is("AWS::SNS::Subscription", {"Protocol": "email"}, 0)
