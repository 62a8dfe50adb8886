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

# Services that publish to the topic; each needs the key to encrypt what it publishes. Their
# grants are scoped to this account with aws:SourceAccount. EventBridge is not listed: the
# rule's SnsTopic target grants it the key itself, with no condition (EventBridge's deliveries
# to an encrypted topic carry no aws:Source* keys, so a condition would drop every job
# notification silently); it can still only publish to topics whose policy admits it.
PUBLISHING_SERVICES = ("budgets.amazonaws.com", "cloudwatch.amazonaws.com")
KEY_ACTIONS_FOR_PUBLISHERS = ["kms:GenerateDataKey*", "kms:Decrypt"]


class AlertsTopic(Construct):
    """SNS topic encrypted with its own customer-managed key.

    - key policy: Budgets and CloudWatch (conditioned on this account) may use the key to
      publish (EventBridge gets its grant from the rule target that publishes); CloudWatch
      Logs may encrypt log groups under `log_group_prefixes`;
    - topic policy: TLS-only publishing (`enforce_ssl`), Budgets may publish (conditioned on
      this account and on budget ARNs of this account), CloudWatch alarms of this account may
      publish; EventBridge rules add their own statement when they target the topic;
    - one email subscription per address (each must be confirmed from the email).

    Attributes: `key`, `topic`.
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
        for service in PUBLISHING_SERVICES:
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"Allow{service.split('.')[0].capitalize()}ToPublishEncrypted",
                    principals=[iam.ServicePrincipal(service)],
                    actions=KEY_ACTIONS_FOR_PUBLISHERS,
                    resources=["*"],  # in a key policy: this key
                    conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
                )
            )

        self.topic = sns.Topic(
            self,
            "Topic",
            display_name=display_name,
            master_key=self.key,
            enforce_ssl=True,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowBudgetsToPublish",
                principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:budgets::{Aws.ACCOUNT_ID}:*"},
                },
            )
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"
                    },
                },
            )
        )
        for email in emails:
            self.topic.add_subscription(subs.EmailSubscription(email))


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
