"""TrainingRoles (platform_constructs/training_iam.py): instance, execution, training job,
prediction job and data preparation roles."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Capture, Match, Template

from platform_constructs.training_iam import NO_RESOURCE_LEVEL_ACTIONS
from tests.stacks.conftest import (
    MULTI_NODE,
    SINGLE,
    as_list,
    container_has,
    every,
    one,
    one_has,
    policy_has,
    statement_like,
    statement_part,
    statements,
    text_of,
)


def _captured_everywhere(template: Template, rtype: str, pattern) -> list:
    """Every value the Capture in `pattern` (a Properties pattern) takes over the `rtype` resources."""
    found = Capture()
    return every(found) if template.find_resources(rtype, {"Properties": pattern(found)}) else []


def all_statements(template: Template) -> list[dict]:
    """Every statement of every policy: managed, inline resources and roles' inline policies."""
    out = []
    for rtype in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
        for found in _captured_everywhere(template, rtype, lambda s: {"PolicyDocument": {"Statement": s}}):
            out += found
    for policies in _captured_everywhere(template, "AWS::IAM::Role", lambda p: {"Policies": p}):
        for p in policies:
            out += p["PolicyDocument"]["Statement"]
    return out


def _sorted_actions(template: Template, policy: str, sid: str, **fields) -> list[str]:
    return sorted(as_list(statement_part(template, policy, sid, "Action", **fields)))


def _resource_text(template: Template, policy: str, sid: str, **fields) -> str:
    return text_of(statement_part(template, policy, sid, "Resource", **fields))


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
    dev_training.resource_count_is("AWS::IAM::Policy", 0)
    dev_training.all_resources_properties("AWS::IAM::Role", {
        "ManagedPolicyArns": [Match.object_like({"Ref": Match.any_value()})],  # ours, not an AWS-managed one
        "Policies": Match.absent(),
    })


def test_instance_role_ecs_agent_statement(dev_training):
    sid = "EcsAgentOnProjectClusters"
    assert _sorted_actions(dev_training, "RolesInstancePolicy", sid) == sorted(
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
    resources = statement_part(dev_training, "RolesInstancePolicy", sid, "Resource")
    assert [text_of(r).split(":", 5)[-1] for r in resources] == [
        "cluster/bert-batch-dev-ce-*",
        "container-instance/bert-batch-dev-ce-*/*",
        "task/bert-batch-dev-ce-*/*",
    ]


def test_compute_environment_names_match_the_instance_role_cluster_scope(dev_training):
    # Batch names each environment's ECS cluster <environment name>_Batch_<uuid>.
    names = Capture()
    dev_training.all_resources_properties("AWS::Batch::ComputeEnvironment", {"ComputeEnvironmentName": names})
    assert sorted(every(names)) == ["bert-batch-dev-ce-cpu-spot", "bert-batch-dev-ce-gpu-on-demand",
                                    "bert-batch-dev-ce-gpu-spot", "bert-batch-dev-ce-multi-node"]


def test_instance_role_tagging_only_on_register(dev_training):
    policy_has(dev_training, "RolesInstancePolicy", statement_like(
        "EcsTagOnRegister",
        Action="ecs:TagResource",
        Condition=Match.exact({"StringEquals": {"ecs:CreateAction": "RegisterContainerInstance"}}),
    ))


def test_instance_role_star_statement(dev_training):
    actions = _sorted_actions(dev_training, "RolesInstancePolicy", "NoResourceLevelPermissions", Resource="*")
    assert actions == ["ec2:DescribeTags", "ecs:DiscoverPollEndpoint"]


def test_instance_profiles_use_the_instance_role(dev_training):
    role_id, _ = one(dev_training, "AWS::IAM::Role", "RolesInstanceRole")
    dev_training.all_resources_properties("AWS::IAM::InstanceProfile", {"Roles": Match.exact([{"Ref": role_id}])})


def test_execution_role_writes_only_the_job_log_group(dev_training):
    log_group_id, _ = one(dev_training, "AWS::Logs::LogGroup", "JobLogs")
    actions = _sorted_actions(dev_training, "RolesExecutionPolicy", "WriteJobLogs",
                              Resource=Match.exact({"Fn::GetAtt": [log_group_id, "Arn"]}))
    assert actions == ["logs:CreateLogStream", "logs:PutLogEvents"]


def test_execution_role_pulls_only_the_asset_repository(dev_training):
    assert _sorted_actions(dev_training, "RolesExecutionPolicy", "PullTrainingImage") == [
        "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    # the asset repository (Fn::Sub)
    assert "repository/<ref>" in _resource_text(dev_training, "RolesExecutionPolicy", "PullTrainingImage")
    policy_has(dev_training, "RolesExecutionPolicy", statement_like(
        "EcrAuthToken", Action="ecr:GetAuthorizationToken", Resource="*"))


def test_execution_role_pulls_a_prebuilt_ecr_image_repository(variant_training):
    assert _resource_text(variant_training, "RolesExecutionPolicy", "PullTrainingImage") == (
        "arn:<ref>:ecr:eu-west-1:111122223333:repository/team/bert-train")


def test_job_role_reads_datasets_only(dev_training):
    assert _resource_text(dev_training, "RolesJobPolicy", "ReadDatasets", Action="s3:GetObject").endswith(
        "/datasets/*")
    policy_has(dev_training, "RolesJobPolicy", statement_like(
        "ListDatasets",
        Action="s3:ListBucket",
        Condition=Match.exact({"StringLike": {"s3:prefix": ["datasets/", "datasets/*"]}}),
    ))


WRITE_ACTIONS = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}


def _prefixes_granted(template: Template, policy: str, actions: set[str]) -> dict[str, set[str]]:
    """{object prefix (e.g. "runs"): the actions of `actions` the policy grants on <bucket>/<prefix>/*}."""
    granted: dict[str, set[str]] = {}
    for s in statements(template, policy):
        for resource in as_list(s["Resource"]):
            text = text_of(resource)
            if text.endswith("/*") and ":s3:::" in text:
                prefix = text.split("/", 1)[1].removesuffix("/*")
                granted.setdefault(prefix, set()).update(set(as_list(s["Action"])) & actions)
    return granted


def test_job_role_reads_and_writes_checkpoints_and_runs_only(dev_training):
    sid = "ReadWriteCheckpointsAndRuns"
    assert _sorted_actions(dev_training, "RolesJobPolicy", sid) == [
        "s3:AbortMultipartUpload",
        "s3:GetObject",
        "s3:ListMultipartUploadParts",
        "s3:PutObject",
    ]
    resources = statement_part(dev_training, "RolesJobPolicy", sid, "Resource")
    assert sorted(text_of(r).rsplit("/", 2)[-2] for r in resources) == ["checkpoints", "runs"]
    policy_has(dev_training, "RolesJobPolicy", statement_like("ListArtifacts", Condition={"StringLike": {
        "s3:prefix": Match.exact(["checkpoints/", "checkpoints/*", "runs/", "runs/*", "models/", "models/*"])}}))


def test_job_role_deletes_only_old_checkpoints_never_under_runs(dev_training):
    """The checkpoint store prunes old checkpoints; nothing in the trainer deletes a run's outputs."""
    granted = _prefixes_granted(dev_training, "RolesJobPolicy", WRITE_ACTIONS)
    assert {prefix: actions for prefix, actions in granted.items() if actions} == {
        "checkpoints": {"s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"},
        "runs": {"s3:PutObject", "s3:AbortMultipartUpload"},
    }
    checkpoints = Capture()
    dev_training.has_resource_properties("AWS::IAM::ManagedPolicy", {
        "PolicyDocument": Match.object_like({"Statement": Match.array_with([
            {"Sid": "PruneOldCheckpoints", "Effect": "Allow", "Action": "s3:DeleteObject", "Resource": checkpoints},
        ])}),
    })
    assert text_of(checkpoints.as_object()).endswith("/checkpoints/*")


def test_job_roles_delete_only_pruned_checkpoints_and_a_prediction_s_own_segments(dev_training):
    """No job can delete a run's outputs, a dataset or a tokenized store (the write probe before
    any work is an aborted multipart upload, not a put and a delete)."""
    deletes = {
        policy: {prefix for prefix, actions in _prefixes_granted(dev_training, policy, {"s3:DeleteObject"}).items()
                 if actions}
        for policy in ("RolesJobPolicy", "RolesPredictPolicy", "RolesPreparePolicy")
    }
    assert deletes == {"RolesJobPolicy": {"checkpoints"}, "RolesPredictPolicy": {"predictions"},
                       "RolesPreparePolicy": set()}


def test_job_role_reads_staged_models(dev_training):
    assert _resource_text(dev_training, "RolesJobPolicy", "ReadModels", Action="s3:GetObject").endswith("/models/*")


def test_prediction_jobs_run_as_their_own_role(dev_training):
    role = Capture()
    dev_training.has_resource_properties("AWS::Batch::JobDefinition", {
        "JobDefinitionName": "bert-batch-dev-bert-predict",
        "ContainerProperties": Match.object_like({"JobRoleArn": {"Fn::GetAtt": [role, "Arn"]}}),
    })
    assert role.as_string().startswith("RolesPredictRole")


def test_prediction_role_writes_only_predictions(dev_training):
    """No write of any kind to checkpoints/ or runs/: a scoring job cannot overwrite or delete a run."""
    granted = _prefixes_granted(dev_training, "RolesPredictPolicy", WRITE_ACTIONS)
    assert {prefix: actions for prefix, actions in granted.items() if actions} == {
        # Delete: its own segments and progress record once a shard's part is written.
        "predictions": {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"},
    }
    assert set(granted) == {"datasets", "models", "runs", "predictions"}  # what it reads


def test_prediction_role_reads_the_model_the_data_and_its_own_output(dev_training):
    reads = _prefixes_granted(dev_training, "RolesPredictPolicy", {"s3:GetObject"})
    assert {prefix for prefix, actions in reads.items() if actions} == {"datasets", "models", "runs", "predictions"}
    # the artifacts bucket, not any bucket
    predictions = statement_part(dev_training, "RolesPredictPolicy", "ReadWritePredictions", "Resource")
    assert "Fn::GetStackOutput" in json.dumps(predictions)
    policy_has(dev_training, "RolesPredictPolicy", statement_like("ListArtifacts", Condition={"StringLike": {
        "s3:prefix": Match.exact(["runs/", "runs/*", "models/", "models/*", "predictions/", "predictions/*"])}}))
    via = statement_part(dev_training, "RolesPredictPolicy", "ProjectKeyThroughS3", "Condition")
    assert text_of(via["StringEquals"]["kms:ViaService"]) == "s3.<ref>.amazonaws.com"


def _acknowledged(construct) -> dict[str, str]:
    """{cdk-nag rule id: reason} acknowledged on a construct."""
    found: dict[str, str] = {}
    for entry in construct.node.metadata:
        if entry.type == "aws:cdk:acknowledged-rules":
            found.update(entry.data)
    return found


@pytest.mark.parametrize("policy", ["job", "predict", "prepare"])
def test_object_wildcard_reasons_claim_no_narrower_prefix_than_the_grant(dev, policy):
    """A grant on <prefix>* must not be explained as if it stopped at <prefix><run-id>/: Batch cannot
    put a run id into a role, so the reason says any run's objects are reachable."""
    reasons = _acknowledged(dev.platform.training.roles.policies[policy])
    object_grants = {rule: why for rule, why in reasons.items() if ":s3:::" in rule}
    assert object_grants
    for rule, why in object_grants.items():
        prefix = rule.rsplit("/", 1)[0].split("}/", 1)[-1] + "/"  # e.g. "checkpoints/"
        assert f"{prefix}<" not in why, (rule, why)
        if prefix in ("checkpoints/", "runs/"):
            assert "any run" in why and "Batch" in why, (rule, why)


def test_job_role_uses_the_project_key_only_through_s3(dev_training):
    sid = "ProjectKeyThroughS3"
    data_stack_key = Match.object_like({"Fn::GetStackOutput": Match.any_value()})  # not "*"
    assert _sorted_actions(dev_training, "RolesJobPolicy", sid, Resource=data_stack_key) == [
        "kms:Decrypt", "kms:GenerateDataKey"]
    via = statement_part(dev_training, "RolesJobPolicy", sid, "Condition")
    assert text_of(via["StringEquals"]["kms:ViaService"]) == "s3.<ref>.amazonaws.com"


def test_job_role_does_not_put_metrics(dev_training):
    # The container publishes metrics as EMF log lines: no cloudwatch:PutMetricData anywhere.
    assert not [s for s in all_statements(dev_training) if "cloudwatch:PutMetricData" in as_list(s["Action"])]


def test_job_policy_has_only_the_expected_statements(dev_training):
    assert sorted(s["Sid"] for s in statements(dev_training, "RolesJobPolicy")) == [
        "ListArtifacts",
        "ListDatasets",
        "ProjectKeyThroughS3",
        "PruneOldCheckpoints",
        "ReadDatasets",
        "ReadModels",
        "ReadWriteCheckpointsAndRuns",
    ]


def test_predict_policy_has_only_the_expected_statements(dev_training):
    assert sorted(s["Sid"] for s in statements(dev_training, "RolesPredictPolicy")) == [
        "ListArtifacts",
        "ListDatasets",
        "ProjectKeyThroughS3",
        "ReadDatasets",
        "ReadModelsAndRuns",
        "ReadWritePredictions",
    ]


@pytest.mark.parametrize("container", [SINGLE, MULTI_NODE])
def test_job_definitions_use_the_execution_and_job_roles(dev_training, container):
    execution, _ = one(dev_training, "AWS::IAM::Role", "RolesExecutionRole")
    job, _ = one(dev_training, "AWS::IAM::Role", "RolesJobRole")
    container_has(dev_training, container, {
        "ExecutionRoleArn": Match.exact({"Fn::GetAtt": [execution, "Arn"]}),
        "JobRoleArn": Match.exact({"Fn::GetAtt": [job, "Arn"]}),
    })


def test_task_roles_trust_ecs_tasks_of_this_account_only(dev_training):
    for prefix in ("RolesExecutionRole", "RolesJobRole", "RolesPredictRole", "RolesPrepareRole"):
        one_has(dev_training, "AWS::IAM::Role", prefix, {"AssumeRolePolicyDocument": {"Statement": Match.exact([
            {
                "Action": "sts:AssumeRole",
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
            }
        ])}})
