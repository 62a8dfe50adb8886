"""Customer-managed KMS keys with rotation and the service grants this platform needs."""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


class ProjectKey(Construct):
    """A rotating customer-managed key with an alias.

    `allow_log_groups(prefix)` lets CloudWatch Logs encrypt log groups whose names start with
    the prefix (the grant is scoped by the encryption context, not `Resource: *` alone).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alias: str,
        description: str,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=alias,
            description=description,
            enable_key_rotation=True,
            removal_policy=removal_policy,
            pending_window=None,
        )

    def allow_log_groups(self, log_group_prefix: str) -> None:
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogs",
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                # In a key policy "*" means "this key".
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{log_group_prefix}*"
                        )
                    }
                },
            )
        )
