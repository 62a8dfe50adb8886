"""Data stack (stateful): the project KMS key, the buckets and FSx for Lustre."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from platform_constructs.kms import ProjectKey
from platform_constructs.lustre import LinkedLustre, allow_fsx_s3_access
from platform_constructs.storage import ProjectBuckets
from stacks.config import PlatformConfig


class DataStack(Stack):
    """Exposes `key`, `data_bucket`, `artifacts_bucket`, `access_logs_bucket` and, when FSx is
    enabled, `lustre` (file system, DNS name, mount name, mount path); otherwise None."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        vpc: ec2.IVpc,
        private_subnets: Sequence[ec2.ISubnet],
        fsx_security_group: ec2.ISecurityGroup | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal, naming = config.removal_policy_value, config.naming
        project_key = ProjectKey(
            self,
            "ProjectKey",
            alias=naming.key_alias(),
            description=f"{naming.project} {naming.profile}: data, artifacts, job logs",
            removal_policy=removal,
        )
        # Job log groups (Training stack) live under /<project>/<profile>/ and use this key.
        project_key.allow_log_groups(naming.path)
        self.key = project_key.key

        buckets = ProjectBuckets(
            self,
            "Buckets",
            key=self.key,
            checkpoint_expiry_days=config.data.checkpoint_expiry_days,
            prediction_expiry_days=config.data.prediction_expiry_days,
            noncurrent_version_expiry_days=config.data.noncurrent_version_expiry_days,
            removal_policy=removal,
        )
        self.data_bucket = buckets.data
        self.artifacts_bucket = buckets.artifacts
        self.access_logs_bucket = buckets.access_logs

        self.lustre: LinkedLustre | None = None
        fsx = config.data.fsx
        if fsx.enabled:
            if fsx_security_group is None:
                raise ValueError("FSx is enabled but the Network stack made no FSx security group")
            # Only with FSx: the key grant for its S3 data-repository service-linked role.
            allow_fsx_s3_access(project_key.key)
            self.lustre = LinkedLustre(
                self,
                "Lustre",
                deployment_type=fsx.deployment_type,
                storage_capacity_gib=fsx.storage_capacity_gib,
                throughput_per_unit_storage=fsx.throughput_per_unit_storage,
                vpc=vpc,
                # Lustre lives in one AZ: the one the multi-node environment uses too.
                subnet=private_subnets[config.training.multinode_subnet_index],
                security_group=fsx_security_group,
                bucket=self.data_bucket,
                key=self.key,
                removal_policy=removal,
            )
            CfnOutput(self, "FsxDnsName", value=self.lustre.dns_name)
            CfnOutput(self, "FsxMountName", value=self.lustre.mount_name)
        CfnOutput(self, "DataBucketName", value=self.data_bucket.bucket_name)
        CfnOutput(self, "ArtifactsBucketName", value=self.artifacts_bucket.bucket_name)
