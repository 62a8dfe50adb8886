"""Encrypted, versioned, logged S3 buckets for datasets and training artifacts."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from bertbatch_contract.layout import CHECKPOINTS_PREFIX, PREDICTIONS_PREFIX
from platform_constructs.checkov import skip
from platform_constructs.nag import acknowledge_compliance

ABORT_MULTIPART_DAYS = 7


def _common_bucket_props(*, removal_policy: RemovalPolicy) -> dict:
    return dict(
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        removal_policy=removal_policy,
        # Emptying a bucket on destroy only makes sense where destroy is the policy (dev).
        auto_delete_objects=removal_policy == RemovalPolicy.DESTROY,
    )


class ProjectBuckets(Construct):
    """The access-log, data and artifacts buckets.

    data: inputs under `datasets/` (linked to FSx); artifacts: `checkpoints/<run-id>/` (expire
    after `checkpoint_expiry_days`), `runs/<run-id>/` and `models/` (kept), `predictions/<id>/`
    (expire after `prediction_expiry_days`; 0 keeps them). Both KMS-encrypted with the
    project key (an upload may not ask for SSE-S3 or another key) and logged to the access-log
    bucket, which uses SSE-S3 because S3 server access log delivery cannot write to SSE-KMS
    buckets.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        checkpoint_expiry_days: int,
        prediction_expiry_days: int,
        noncurrent_version_expiry_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        expiring = [
            s3.LifecycleRule(
                id="expire-checkpoints",
                prefix=CHECKPOINTS_PREFIX,
                expiration=Duration.days(checkpoint_expiry_days),
            )
        ]
        if prediction_expiry_days:
            expiring.append(
                s3.LifecycleRule(
                    id="expire-predictions",
                    prefix=PREDICTIONS_PREFIX,
                    expiration=Duration.days(prediction_expiry_days),
                )
            )
        common_rules = [
            s3.LifecycleRule(
                id="abort-incomplete-multipart",
                abort_incomplete_multipart_upload_after=Duration.days(ABORT_MULTIPART_DAYS),
            ),
            s3.LifecycleRule(
                id="expire-noncurrent-versions",
                noncurrent_version_expiration=Duration.days(noncurrent_version_expiry_days),
            ),
        ]
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            lifecycle_rules=common_rules,
            **_common_bucket_props(removal_policy=removal_policy),
        )
        acknowledge_compliance(
            self.access_logs,
            "S3DefaultEncryptionKMS",
            "S3 server access log delivery cannot write to an SSE-KMS bucket; this log bucket uses "
            "SSE-S3 (AES-256) instead.",
        )
        skip(
            self.access_logs,
            "CKV_AWS_18",
            "This is the server access log bucket of the data and artifacts buckets; logging its own "
            "access into itself would log every log delivery, without end.",
        )
        # Server access log delivery needs ACL-less bucket-policy grants: CDK adds them when
        # the bucket is used as a server_access_logs_bucket with BUCKET_OWNER_ENFORCED.
        kms_props = dict(
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            server_access_logs_bucket=self.access_logs,
        )
        self.data = s3.Bucket(
            self,
            "Data",
            server_access_logs_prefix="data/",
            lifecycle_rules=common_rules,
            **kms_props,
            **_common_bucket_props(removal_policy=removal_policy),
        )
        self.artifacts = s3.Bucket(
            self,
            "Artifacts",
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=common_rules + expiring,
            **kms_props,
            **_common_bucket_props(removal_policy=removal_policy),
        )
        for bucket in (self.data, self.artifacts):
            _deny_uploads_without_the_project_key(bucket, key)
        for bucket, why in (
            (self.access_logs, "access logs are an audit trail of this region's buckets"),
            (self.data, "datasets are copies of data whose source of truth lives outside the platform"),
            (self.artifacts, "checkpoints are temporary and models can be re-created by re-running the job"),
        ):
            acknowledge_compliance(
                bucket,
                "S3BucketReplicationEnabled",
                f"Single-region platform; {why}. Versioning guards against deletion; cross-region "
                "replication would double storage cost. Add it per bucket if your policy requires.",
            )


SSE_HEADER = "s3:x-amz-server-side-encryption"
SSE_KMS_KEY_HEADER = "s3:x-amz-server-side-encryption-aws-kms-key-id"


def _deny_uploads_without_the_project_key(bucket: s3.Bucket, key: kms.IKey) -> None:
    """Deny a PutObject whose encryption headers name anything but SSE-KMS with `key`. A header
    that is absent is fine: the bucket's default encryption applies the project key (the
    Null + StringNotEquals pair of the S3 User Guide's "require SSE-KMS" bucket policy, with
    the Null test inverted so that only an explicit other choice is refused)."""
    for sid, header, required in (
        ("DenyUploadsWithoutTheProjectEncryption", SSE_HEADER, "aws:kms"),
        ("DenyUploadsWithAnotherKmsKey", SSE_KMS_KEY_HEADER, key.key_arn),
    ):
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid=sid,
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects("*")],
                conditions={"Null": {header: "false"}, "StringNotEquals": {header: required}},
            )
        )
