"""FSx for Lustre linked to the data bucket's `datasets/` prefix."""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_fsx as fsx
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from bertbatch_contract.layout import DATASETS_PREFIX

PERSISTENT_2 = "PERSISTENT_2"
# Where the association appears inside the file system, and so under the client mount.
FILE_SYSTEM_PATH = "/" + DATASETS_PREFIX.rstrip("/")
# Where the launch template mounts the file system on the instances (and into the jobs).
MOUNT_PATH = "/fsx"

# The service-linked role FSx creates per file system to reach S3 for a data repository
# association; it must be allowed to use the bucket's KMS key.
FSX_S3_SERVICE_ROLE_PATTERN = (
    "arn:{partition}:iam::{account}:role/aws-service-role/s3.data-source.lustre.fsx.amazonaws.com/"
    "AWSServiceRoleForFSxS3Access_*"
)


def allow_fsx_s3_access(key: kms.Key) -> None:
    """Key-policy grant for the FSx S3-access service-linked roles of this account.

    The role only exists once the file system does, and a key policy cannot name a principal
    that does not exist yet, so the grant goes to the account, conditioned on the role ARN.
    """
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowFsxS3AccessServiceLinkedRole",
            principals=[iam.AccountRootPrincipal()],
            actions=["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
            resources=["*"],  # in a key policy: this key
            conditions={
                "ArnLike": {
                    "aws:PrincipalArn": FSX_S3_SERVICE_ROLE_PATTERN.format(
                        partition=Aws.PARTITION, account=Aws.ACCOUNT_ID
                    )
                }
            },
        )
    )


class LinkedLustre(Construct):
    """A Lustre file system in one private subnet, with a data repository association that
    imports new, changed and deleted objects from `s3://<bucket>/datasets/` automatically.

    Attributes: `file_system`, `association`, `dns_name`, `mount_name`, `mount_path`,
    `storage_capacity_gib`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deployment_type: str,
        storage_capacity_gib: int,
        throughput_per_unit_storage: int,
        vpc: ec2.IVpc,
        subnet: ec2.ISubnet,
        security_group: ec2.ISecurityGroup,
        bucket: s3.IBucket,
        key: kms.IKey,
        removal_policy: RemovalPolicy,
    ) -> None:
        """`deployment_type` SCRATCH_2 or PERSISTENT_2; `throughput_per_unit_storage` (MB/s per
        TiB) applies to PERSISTENT_2 only, as does `key` (scratch uses an FSx-managed key)."""
        super().__init__(scope, construct_id)
        persistent = deployment_type == PERSISTENT_2
        self.file_system = fsx.LustreFileSystem(
            self,
            "FileSystem",
            vpc=vpc,
            vpc_subnet=subnet,
            security_group=security_group,
            storage_capacity_gib=storage_capacity_gib,
            file_system_type_version=fsx.FileSystemTypeVersion.V_2_15,
            # Scratch file systems are always encrypted with an FSx-managed key; a customer
            # key can only be given to persistent ones.
            kms_key=key if persistent else None,
            removal_policy=removal_policy,
            lustre_configuration=fsx.LustreConfiguration(
                deployment_type=fsx.LustreDeploymentType(deployment_type),
                data_compression_type=fsx.LustreDataCompressionType.LZ4,
                per_unit_storage_throughput=throughput_per_unit_storage if persistent else None,
            ),
        )
        self.association = fsx.CfnDataRepositoryAssociation(
            self,
            "DatasetsAssociation",
            file_system_id=self.file_system.file_system_id,
            file_system_path=FILE_SYSTEM_PATH,
            data_repository_path=bucket.s3_url_for_object(DATASETS_PREFIX),
            batch_import_meta_data_on_create=True,
            s3=fsx.CfnDataRepositoryAssociation.S3Property(
                auto_import_policy=fsx.CfnDataRepositoryAssociation.AutoImportPolicyProperty(
                    events=["NEW", "CHANGED", "DELETED"]
                )
            ),
        )
        self.dns_name = self.file_system.dns_name
        self.mount_name = self.file_system.mount_name
        self.mount_path = MOUNT_PATH
        self.storage_capacity_gib = storage_capacity_gib
