"""TrainingRoles (platform_constructs/training_iam.py): instance, execution and job roles."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Template

from platform_constructs.training_iam import NO_RESOURCE_LEVEL_ACTIONS
from tests.stacks.conftest import (
    as_list,
    multi_node_container,
    one,
    props,
    resources,
    single_container,
    statement,
    statements,
    text_of,
)


def all_statements(template: Template) -> list[dict]:
    out = []
    for rtype in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
        for r in resources(template, rtype).values():
            out += r["Properties"]["PolicyDocument"]["Statement"]
    for r in resources(template, "AWS::IAM::Role").values():
        for p in r["Properties"].get("Policies", []):
            out += p["PolicyDocument"]["Statement"]
    return out


def test_no_statement_allows_all_actions(dev_training, prod_training):
    for template in (dev_training, prod_training):
        for s in all_statements(template):
            for action in as_list(s["Action"]):
                assert action != "*" and not action.endswith(":*"), s


def test_resource_star_only_for_actions_without_resource_level_permissions(dev_training, prod_training):
    for template in (dev_training, prod_training):
        for s in all_statements(template):
            if "*" in as_list(s["Resource"]):
                assert set(as_list(s["Action"])) <= NO_RESOURCE_LEVEL_ACTIONS, s


def test_every_role_has_exactly_one_customer_managed_policy_and_no_inline_policy(dev_training):
    assert resources(dev_training, "AWS::IAM::Policy") == {}
    for role_id, role in resources(dev_training, "AWS::IAM::Role").items():
        arns = role["Properties"].get("ManagedPolicyArns", [])
        assert len(arns) == 1 and "Ref" in arns[0], f"{role_id}: {arns}"  # ours, not an AWS-managed one
        assert "Policies" not in role["Properties"]


def test_instance_role_ecs_agent_statement(dev_training):
    s = statement(dev_training, "RolesInstancePolicy", "EcsAgentOnProjectClusters")
    assert sorted(s["Action"]) == sorted(
        [
            "ecs:DeregisterContainerInstance",
            "ecs:ListTagsForResource",
            "ecs:Poll",
            "ecs:RegisterContainerInstance",
            "ecs:StartTelemetrySession",
            "ecs:SubmitAttachmentStateChanges",
            "ecs:SubmitContainerStateChange",
            "ecs:SubmitTaskStateChange",
            "ecs:UpdateContainerInstancesState",
        ]
    )
    assert [text_of(r).split(":", 5)[-1] for r in s["Resource"]] == [
        "cluster/bert-batch-dev-ce-*",
        "container-instance/bert-batch-dev-ce-*/*",
        "task/bert-batch-dev-ce-*/*",
    ]


def test_compute_environment_names_match_the_instance_role_cluster_scope(dev_training):
    # Batch names each environment's ECS cluster <environment name>_Batch_<uuid>.
    names = sorted(
        r["Properties"]["ComputeEnvironmentName"]
        for r in resources(dev_training, "AWS::Batch::ComputeEnvironment").values()
    )
    assert names == ["bert-batch-dev-ce-cpu-spot", "bert-batch-dev-ce-gpu-on-demand", "bert-batch-dev-ce-gpu-spot",
                     "bert-batch-dev-ce-multi-node"]


def test_instance_role_tagging_only_on_register(dev_training):
    s = statement(dev_training, "RolesInstancePolicy", "EcsTagOnRegister")
    assert s["Action"] == "ecs:TagResource"
    assert s["Condition"] == {"StringEquals": {"ecs:CreateAction": "RegisterContainerInstance"}}


def test_instance_role_star_statement(dev_training):
    s = statement(dev_training, "RolesInstancePolicy", "NoResourceLevelPermissions")
    assert sorted(s["Action"]) == ["ec2:DescribeTags", "ecs:DiscoverPollEndpoint"] and s["Resource"] == "*"


def test_instance_profiles_use_the_instance_role(dev_training):
    role_id, _ = one(dev_training, "AWS::IAM::Role", "RolesInstanceRole")
    for profile in resources(dev_training, "AWS::IAM::InstanceProfile").values():
        assert profile["Properties"]["Roles"] == [{"Ref": role_id}]


def test_execution_role_writes_only_the_job_log_group(dev_training):
    log_group_id, _ = one(dev_training, "AWS::Logs::LogGroup", "JobLogs")
    s = statement(dev_training, "RolesExecutionPolicy", "WriteJobLogs")
    assert sorted(s["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert s["Resource"] == {"Fn::GetAtt": [log_group_id, "Arn"]}


def test_execution_role_pulls_only_the_asset_repository(dev_training):
    s = statement(dev_training, "RolesExecutionPolicy", "PullTrainingImage")
    assert sorted(s["Action"]) == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert "repository/<ref>" in text_of(s["Resource"])  # the asset repository (Fn::Sub)
    token = statement(dev_training, "RolesExecutionPolicy", "EcrAuthToken")
    assert token["Action"] == "ecr:GetAuthorizationToken" and token["Resource"] == "*"


def test_execution_role_pulls_a_prebuilt_ecr_image_repository(variant_training):
    s = statement(variant_training, "RolesExecutionPolicy", "PullTrainingImage")
    assert text_of(s["Resource"]) == "arn:<ref>:ecr:eu-west-1:111122223333:repository/team/bert-train"


def test_job_role_reads_datasets_only(dev_training):
    s = statement(dev_training, "RolesJobPolicy", "ReadDatasets")
    assert s["Action"] == "s3:GetObject"
    assert text_of(s["Resource"]).endswith("/datasets/*")
    listing = statement(dev_training, "RolesJobPolicy", "ListDatasets")
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["datasets/", "datasets/*"]}}


def test_job_role_reads_and_writes_checkpoints_and_runs_only(dev_training):
    s = statement(dev_training, "RolesJobPolicy", "ReadWriteCheckpointsAndRuns")
    assert sorted(s["Action"]) == [
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:GetObject",
        "s3:ListMultipartUploadParts",
        "s3:PutObject",
    ]
    assert sorted(text_of(r).rsplit("/", 2)[-2] for r in s["Resource"]) == ["checkpoints", "runs"]
    listing = statement(dev_training, "RolesJobPolicy", "ListArtifacts")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [
        "checkpoints/", "checkpoints/*", "runs/", "runs/*", "models/", "models/*", "predictions/", "predictions/*",
    ]


def test_job_role_reads_models_and_writes_predictions_for_batch_scoring(dev_training):
    models = statement(dev_training, "RolesJobPolicy", "ReadModels")
    assert models["Action"] == "s3:GetObject"
    assert text_of(models["Resource"]).endswith("/models/*")
    predictions = statement(dev_training, "RolesJobPolicy", "ReadWritePredictions")
    # Overwrite (a rerun shard), never delete.
    assert sorted(predictions["Action"]) == [
        "s3:AbortMultipartUpload",
        "s3:GetObject",
        "s3:ListMultipartUploadParts",
        "s3:PutObject",
    ]
    assert text_of(predictions["Resource"]).endswith("/predictions/*")
    assert "Fn::GetStackOutput" in json.dumps(predictions["Resource"])  # the artifacts bucket, not any bucket


def test_job_role_uses_the_project_key_only_through_s3(dev_training):
    s = statement(dev_training, "RolesJobPolicy", "ProjectKeyThroughS3")
    assert sorted(s["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert "Fn::GetStackOutput" in s["Resource"]  # the Data stack's key, not "*"
    assert text_of(s["Condition"]["StringEquals"]["kms:ViaService"]) == "s3.<ref>.amazonaws.com"


def test_job_role_does_not_put_metrics(dev_training):
    # The container publishes metrics as EMF log lines: no cloudwatch:PutMetricData anywhere.
    assert not [s for s in all_statements(dev_training) if "cloudwatch:PutMetricData" in as_list(s["Action"])]


def test_job_policy_has_only_the_expected_statements(dev_training):
    assert sorted(s["Sid"] for s in statements(dev_training, "RolesJobPolicy")) == [
        "ListArtifacts",
        "ListDatasets",
        "ProjectKeyThroughS3",
        "ReadDatasets",
        "ReadModels",
        "ReadWriteCheckpointsAndRuns",
        "ReadWritePredictions",
    ]


@pytest.mark.parametrize("container", [single_container, multi_node_container])
def test_job_definitions_use_the_execution_and_job_roles(dev_training, container):
    execution, _ = one(dev_training, "AWS::IAM::Role", "RolesExecutionRole")
    job, _ = one(dev_training, "AWS::IAM::Role", "RolesJobRole")
    c = container(dev_training)
    assert c["ExecutionRoleArn"] == {"Fn::GetAtt": [execution, "Arn"]}
    assert c["JobRoleArn"] == {"Fn::GetAtt": [job, "Arn"]}


def test_task_roles_trust_ecs_tasks_of_this_account_only(dev_training):
    for prefix in ("RolesExecutionRole", "RolesJobRole"):
        trust = props(dev_training, "AWS::IAM::Role", prefix)["AssumeRolePolicyDocument"]["Statement"]
        assert trust == [
            {
                "Action": "sts:AssumeRole",
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
            }
        ]
