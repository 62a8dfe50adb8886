"""Data stack: KMS key, buckets, FSx for Lustre and its S3 link."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Capture, Match, Template

from tests.stacks.conftest import captured, one, one_has

BUCKET, BUCKET_POLICY = "AWS::S3::Bucket", "AWS::S3::BucketPolicy"


def _bucket_id(template: Template, name: str) -> str:
    return one(template, BUCKET, f"Buckets{name}")[0]


def _bucket_has(template: Template, name: str, properties: dict) -> None:
    one_has(template, BUCKET, f"Buckets{name}", properties)


def _lifecycle_rules(pattern) -> dict:
    return {"LifecycleConfiguration": {"Rules": pattern}}


def test_project_key_rotates_and_has_an_alias(dev_data):
    dev_data.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    dev_data.has_resource_properties("AWS::KMS::Alias", {"AliasName": "alias/bert-batch-dev"})


def test_key_policy_lets_fsx_s3_service_linked_role_use_the_key(variant_data):
    variant_data.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "AllowFsxS3AccessServiceLinkedRole",
                                "Action": Match.array_with(["kms:Decrypt", "kms:GenerateDataKey*"]),
                                "Condition": {
                                    "ArnLike": {
                                        "aws:PrincipalArn": {
                                            "Fn::Join": [
                                                "",
                                                Match.array_with(
                                                    [
                                                        Match.string_like_regexp(
                                                            r"s3\.data-source\.lustre\.fsx\.amazonaws\.com/AWSServiceRoleForFSxS3Access_\*$"
                                                        )
                                                    ]
                                                ),
                                            ]
                                        }
                                    }
                                },
                            }
                        )
                    ]
                )
            }
        },
    )


def test_key_policy_lets_logs_encrypt_project_log_groups(dev_data):
    dev_data.has_resource_properties(
        "AWS::KMS::Key",
        {"KeyPolicy": {"Statement": Match.array_with([Match.object_like({"Sid": "AllowCloudWatchLogs"})])}},
    )


def _encrypted_by_default(**rule) -> dict:
    return {"BucketEncryption": {"ServerSideEncryptionConfiguration": [rule]}}


@pytest.mark.parametrize("name", ["Data", "Artifacts"])
def test_data_and_artifacts_use_the_project_kms_key(dev_data, name):
    _bucket_has(dev_data, name, _encrypted_by_default(
        ServerSideEncryptionByDefault={
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": [Match.string_like_regexp("^ProjectKey"), Match.any_value()]},
        },
        BucketKeyEnabled=True,
    ))


def test_access_log_bucket_uses_sse_s3(dev_data):
    _bucket_has(dev_data, "AccessLogs", _encrypted_by_default(ServerSideEncryptionByDefault={"SSEAlgorithm": "AES256"}))


@pytest.mark.parametrize("name", ["AccessLogs", "Data", "Artifacts"])
def test_every_bucket_is_private_versioned_and_owner_enforced(dev_data, name):
    _bucket_has(dev_data, name, {
        "PublicAccessBlockConfiguration": Match.exact({
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }),
        "VersioningConfiguration": Match.exact({"Status": "Enabled"}),
        "OwnershipControls": Match.exact({"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}),
    })


@pytest.mark.parametrize("name", ["AccessLogs", "Data", "Artifacts"])
def test_every_bucket_denies_plain_http(dev_data, name):
    key = _bucket_id(dev_data, name)
    dev_data.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": key},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


@pytest.mark.parametrize("name", ["Data", "Artifacts"])
def test_uploads_may_not_ask_for_another_encryption_or_another_key(dev_data, name):
    bucket = _bucket_id(dev_data, name)
    (key,) = dev_data.find_resources("AWS::KMS::Key")
    objects = {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/*"]]}
    header = "s3:x-amz-server-side-encryption"
    key_header = "s3:x-amz-server-side-encryption-aws-kms-key-id"
    dev_data.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Sid": "DenyUploadsWithoutTheProjectEncryption",
                            "Effect": "Deny",
                            "Principal": {"AWS": "*"},
                            "Action": "s3:PutObject",
                            "Resource": objects,
                            # Only a header that is present and names something else: uploads
                            # without it get the bucket's default (the project key).
                            "Condition": {"Null": {header: "false"}, "StringNotEquals": {header: "aws:kms"}},
                        },
                        {
                            "Sid": "DenyUploadsWithAnotherKmsKey",
                            "Effect": "Deny",
                            "Principal": {"AWS": "*"},
                            "Action": "s3:PutObject",
                            "Resource": objects,
                            "Condition": {
                                "Null": {key_header: "false"},
                                "StringNotEquals": {key_header: {"Fn::GetAtt": [key, "Arn"]}},
                            },
                        },
                    ]
                )
            },
        },
    )


def test_access_log_bucket_keeps_accepting_sse_s3_log_delivery(dev_data):
    of_the_bucket = {"Bucket": {"Ref": _bucket_id(dev_data, "AccessLogs")}}
    dev_data.resource_properties_count_is(BUCKET_POLICY, of_the_bucket, 1)
    found = Capture()
    dev_data.has_resource_properties(BUCKET_POLICY, {**of_the_bucket, "PolicyDocument": {"Statement": found}})
    denied = [s["Action"] for s in found.as_array() if s["Effect"] == "Deny"]
    assert denied == ["s3:*"]  # TLS only


@pytest.mark.parametrize("name, prefix", [("Data", "data/"), ("Artifacts", "artifacts/")])
def test_server_access_logs_go_to_the_log_bucket(dev_data, name, prefix):
    _bucket_has(dev_data, name, {"LoggingConfiguration": Match.exact({
        "DestinationBucketName": {"Ref": _bucket_id(dev_data, "AccessLogs")},
        "LogFilePrefix": prefix,
    })})


@pytest.mark.parametrize("name", ["AccessLogs", "Data", "Artifacts"])
def test_lifecycle_aborts_multipart_and_expires_noncurrent_versions(dev_data, name):
    _bucket_has(dev_data, name, _lifecycle_rules(Match.array_with([{
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        "Id": "abort-incomplete-multipart",
        "Status": "Enabled",
    }])))
    _bucket_has(dev_data, name, _lifecycle_rules(Match.array_with([
        Match.object_like({"NoncurrentVersionExpiration": Match.object_like({"NoncurrentDays": 30})})])))


@pytest.mark.parametrize("fixture, days", [("dev_data", 14), ("prod_data", 30)])
def test_checkpoints_expire_after_configured_days(request, fixture, days):
    template = request.getfixturevalue(fixture)
    _bucket_has(template, "Artifacts", _lifecycle_rules(Match.array_with([{
        "ExpirationInDays": days,
        "Id": "expire-checkpoints",
        "Prefix": "checkpoints/",
        "Status": "Enabled",
    }])))
    _bucket_has(template, "Data", _lifecycle_rules(Match.not_(Match.array_with([
        Match.object_like({"Prefix": "checkpoints/"})]))))


def test_dev_fsx_is_scratch_2_with_lz4(variant_data):
    variant_data.has_resource_properties(
        "AWS::FSx::FileSystem",
        {
            "FileSystemType": "LUSTRE",
            "StorageCapacity": 1200,
            "LustreConfiguration": {"DeploymentType": "SCRATCH_2", "DataCompressionType": "LZ4"},
            "KmsKeyId": Match.absent(),
        },
    )


def test_prod_fsx_is_persistent_2_with_kms_and_throughput(prod_data):
    prod_data.has_resource_properties(
        "AWS::FSx::FileSystem",
        {
            "StorageCapacity": 2400,
            "LustreConfiguration": Match.object_like(
                {"DeploymentType": "PERSISTENT_2", "PerUnitStorageThroughput": 250, "DataCompressionType": "LZ4"}
            ),
            "KmsKeyId": {"Ref": Match.string_like_regexp("ProjectKey")},
        },
    )


def test_fsx_sits_in_one_private_subnet(variant_data):
    variant_data.all_resources_properties("AWS::FSx::FileSystem", {"SubnetIds": [Match.any_value()]})


def test_fsx_is_linked_to_datasets_prefix_with_auto_import(variant_data):
    data_key = _bucket_id(variant_data, "Data")
    variant_data.has_resource_properties(
        "AWS::FSx::DataRepositoryAssociation",
        {
            "FileSystemPath": "/datasets",
            "DataRepositoryPath": {"Fn::Join": ["", ["s3://", {"Ref": data_key}, "/datasets/"]]},
            "BatchImportMetaDataOnCreate": True,
            "S3": {"AutoImportPolicy": {"Events": ["NEW", "CHANGED", "DELETED"]}},
        },
    )


def test_fsx_names_are_exported(variant_data):
    outputs = variant_data.find_outputs("*")
    assert {"FsxDnsName", "FsxMountName", "DataBucketName", "ArtifactsBucketName"} <= set(outputs)


def test_dev_destroys_and_prod_retains(dev_data, prod_data):
    dev_data.has_resource("AWS::S3::Bucket", {"DeletionPolicy": "Delete"})
    dev_data.has_resource("AWS::KMS::Key", {"DeletionPolicy": "Delete"})
    for rtype in ("AWS::S3::Bucket", "AWS::KMS::Key", "AWS::FSx::FileSystem"):
        prod_data.all_resources(rtype, {"DeletionPolicy": "Retain"})
    assert not prod_data.find_resources("Custom::S3AutoDeleteObjects")


def test_prod_stacks_have_termination_protection(prod, dev):
    assert all(stack.termination_protection for stack in prod.platform.stacks)
    assert not any(stack.termination_protection for stack in dev.platform.stacks)


def test_every_resource_is_tagged(dev_data):
    dev_data.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "Tags": Match.array_with(
                [
                    {"Key": "CostCenter", "Value": "ml-platform"},
                    {"Key": "Profile", "Value": "dev"},
                    {"Key": "Project", "Value": "bert-batch"},
                ]
            )
        },
    )


def test_dev_has_no_fsx_by_default(dev):
    synth = dev
    template = Template.from_stack(synth.platform.data)
    template.resource_count_is("AWS::FSx::FileSystem", 0)
    template.resource_count_is("AWS::FSx::DataRepositoryAssociation", 0)
    assert synth.platform.data.lustre is None


def test_without_fsx_no_file_system_and_no_key_grant_for_it(dev_data, variant_data):
    assert not dev_data.find_resources("AWS::FSx::FileSystem")
    assert not dev_data.find_resources("AWS::FSx::DataRepositoryAssociation")
    assert not {"FsxDnsName", "FsxMountName"} & set(dev_data.to_json().get("Outputs", {}))

    fsx_grant = Match.array_with([Match.object_like({"Sid": "AllowFsxS3AccessServiceLinkedRole"})])
    for template, statements in ((variant_data, fsx_grant), (dev_data, Match.not_(fsx_grant))):
        template.resource_count_is("AWS::KMS::Key", 1)
        template.has_resource_properties("AWS::KMS::Key", {"KeyPolicy": {"Statement": statements}})


def test_predictions_are_kept_unless_configured_to_expire(dev_data, tracked_data):
    def prediction_rules(template):
        rules = captured(template, BUCKET, "BucketsArtifacts", _lifecycle_rules).as_array()
        return [r for r in rules if r.get("Prefix") == "predictions/"]

    assert prediction_rules(dev_data) == []
    assert prediction_rules(tracked_data) == [
        {"ExpirationInDays": 90, "Id": "expire-predictions", "Prefix": "predictions/", "Status": "Enabled"}
    ]
