"""The alerts topic: one encrypted SNS topic for budgets, alarms and job notifications."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from platform_constructs.kms import ProjectKey

# Services that publish to the topics, with the sources (aws:SourceArn) they publish for; each
# needs the key to encrypt what it publishes, for this account's sources only.
PUBLISHING_SERVICES = {
    "budgets.amazonaws.com": f"arn:{Aws.PARTITION}:budgets::{Aws.ACCOUNT_ID}:*",
    "cloudwatch.amazonaws.com": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*",
}
EVENTBRIDGE = "events.amazonaws.com"
KEY_ACTIONS_FOR_PUBLISHERS = ["kms:GenerateDataKey*", "kms:Decrypt"]


class AlertsTopic(Construct):
    """Two SNS topics encrypted with their own customer-managed key.

    - `topic` (alerts): CloudWatch alarms of this account, and EventBridge rules that target it
      (each rule adds a statement naming its own ARN; see `job_events.EncryptedTopicTarget`);
    - `budget_topic`: AWS Budgets notifications of this account and nothing else. The cost
      guardrail listens here only, so nobody who may publish alerts can forge a budget alert;
    - key policy: Budgets and CloudWatch may use the key for this account's budgets and alarms
      (`aws:SourceAccount`, `aws:SourceArn`); EventBridge only through SNS (`kms:ViaService`:
      SNS documents the source keys as unsupported for EventBridge-to-encrypted-topic
      deliveries); CloudWatch Logs may encrypt log groups under `log_group_prefixes`;
    - both topics: TLS-only publishing (`enforce_ssl`), one email subscription per address
      (each must be confirmed from the email).

    Attributes: `key`, `topic`, `budget_topic`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key_alias: str,
        display_name: str,
        emails: Sequence[str],
        log_group_prefixes: Sequence[str],
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        project_key = ProjectKey(
            self,
            "Key",
            alias=key_alias,
            description=f"{display_name}: alerts topic and monitoring log groups",
            removal_policy=removal_policy,
        )
        self.key: kms.Key = project_key.key
        for i, prefix in enumerate(log_group_prefixes):
            if i == 0:
                project_key.allow_log_groups(prefix)
            else:
                _allow_more_log_groups(self.key, prefix, sid=f"AllowCloudWatchLogs{i + 1}")
        _allow_publishers_to_use_key(self.key)

        self.topic = sns.Topic(self, "Topic", display_name=display_name, master_key=self.key, enforce_ssl=True)
        self.topic.add_to_resource_policy(
            _service_may_publish("AllowCloudWatchAlarmsToPublish", "cloudwatch.amazonaws.com", self.topic)
        )
        self.budget_topic = sns.Topic(
            self, "BudgetTopic", display_name=f"{display_name} (budget)", master_key=self.key, enforce_ssl=True
        )
        self.budget_topic.add_to_resource_policy(
            _service_may_publish("AllowBudgetsToPublish", "budgets.amazonaws.com", self.budget_topic)
        )
        for topic in (self.topic, self.budget_topic):
            for email in emails:
                topic.add_subscription(subs.EmailSubscription(email))


def _service_may_publish(sid: str, service: str, topic: sns.Topic) -> iam.PolicyStatement:
    """`service` may publish to `topic` on behalf of this account's sources only."""
    return iam.PolicyStatement(
        sid=sid,
        principals=[iam.ServicePrincipal(service)],
        actions=["sns:Publish"],
        resources=[topic.topic_arn],
        conditions={
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
            "ArnLike": {"aws:SourceArn": PUBLISHING_SERVICES[service]},
        },
    )


def _allow_publishers_to_use_key(key: kms.Key) -> None:
    for service, sources in PUBLISHING_SERVICES.items():
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid=f"Allow{service.split('.')[0].capitalize()}ToPublishEncrypted",
                principals=[iam.ServicePrincipal(service)],
                actions=KEY_ACTIONS_FOR_PUBLISHERS,
                resources=["*"],  # in a key policy: this key
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": sources},
                },
            )
        )
    # "Adding the aws:SourceAccount and aws:SourceArn to a AWS KMS policy is not supported for
    # EventBridge-to-encrypted topics" (Amazon SNS Developer Guide, sns-key-management.html):
    # EventBridge may use the key only through SNS; which topics it may publish to is decided
    # by each topic's policy, where the rule's ARN is named.
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowEventsToPublishEncrypted",
            principals=[iam.ServicePrincipal(EVENTBRIDGE)],
            actions=KEY_ACTIONS_FOR_PUBLISHERS,
            resources=["*"],
            conditions={"StringEquals": {"kms:ViaService": f"sns.{Aws.REGION}.amazonaws.com"}},
        )
    )


def _allow_more_log_groups(key: kms.Key, prefix: str, *, sid: str) -> None:
    """The same grant as `ProjectKey.allow_log_groups`, for a second name prefix."""
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid=sid,
            principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": (
                        f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{prefix}*"
                    )
                }
            },
        )
    )
