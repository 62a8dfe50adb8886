"""The Training stack: compute, queues, job definitions, IAM, fallback and discovery."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match, Template

from bert_train import contract, metrics
from bertbatch import discovery
from platform_constructs.training_iam import NO_RESOURCE_LEVEL_ACTIONS

AL2023_NVIDIA = "ECS_AL2023_NVIDIA"


# --- helpers ------------------------------------------------------------------------------------
def resources(template: Template, rtype: str) -> dict[str, dict]:
    return template.find_resources(rtype)


def one(template: Template, rtype: str, logical_prefix: str) -> tuple[str, dict]:
    found = [(k, v) for k, v in resources(template, rtype).items() if k.startswith(logical_prefix)]
    assert len(found) == 1, f"expected one {rtype} named {logical_prefix}*, found {[k for k, _ in found]}"
    return found[0]


def props(template: Template, rtype: str, logical_prefix: str) -> dict:
    return one(template, rtype, logical_prefix)[1]["Properties"]


def environment(template: Template, logical_prefix: str) -> dict:
    return props(template, "AWS::Batch::ComputeEnvironment", logical_prefix)


def text_of(value) -> str:
    """Literal text of a CloudFormation value; intrinsics other than Join/Base64 become `<ref>`."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(text_of(v) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Fn::Join":
            return arg[0].join(text_of(v) for v in arg[1])
        if fn == "Fn::Base64":
            return text_of(arg)
    return "<ref>"


def user_data(template: Template, logical_prefix: str) -> str:
    return text_of(props(template, "AWS::EC2::LaunchTemplate", logical_prefix)["LaunchTemplateData"]["UserData"])


def job_definition(template: Template, logical_prefix: str) -> dict:
    return props(template, "AWS::Batch::JobDefinition", logical_prefix)


def single_container(template: Template) -> dict:
    return job_definition(template, "JobDefinitionsSingle")["ContainerProperties"]


def multi_node_container(template: Template) -> dict:
    return job_definition(template, "JobDefinitionsMultiNode")["NodeProperties"]["NodeRangeProperties"][0]["Container"]


def env_of(container: dict) -> dict:
    return {e["Name"]: e["Value"] for e in container["Environment"]}


def statements(template: Template, logical_prefix: str) -> list[dict]:
    return props(template, "AWS::IAM::ManagedPolicy", logical_prefix)["PolicyDocument"]["Statement"]


def statement(template: Template, logical_prefix: str, sid: str) -> dict:
    found = [s for s in statements(template, logical_prefix) if s.get("Sid") == sid]
    assert len(found) == 1, f"no statement {sid} in {logical_prefix}"
    return found[0]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def variant(dev_variant):
    """The shared extra synth (tests/stacks/conftest.py): FSx off, EFA on, a prebuilt ECR image."""
    return dev_variant.template(dev_variant.platform.training)


# --- compute environments -------------------------------------------------------------------------
def test_three_compute_environments(dev_training):
    dev_training.resource_count_is("AWS::Batch::ComputeEnvironment", 3)


@pytest.mark.parametrize("env", ["ComputeGpuSpot", "ComputeGpuOnDemand", "ComputeMultiNode"])
def test_every_environment_uses_the_al2023_nvidia_image(dev_training, env):
    assert environment(dev_training, env)["ComputeResources"]["Ec2Configuration"] == [{"ImageType": AL2023_NVIDIA}]


@pytest.mark.parametrize("env", ["ComputeGpuSpot", "ComputeGpuOnDemand", "ComputeMultiNode"])
def test_every_environment_scales_to_zero(dev_training, env):
    assert environment(dev_training, env)["ComputeResources"]["MinvCpus"] == 0


@pytest.mark.parametrize("env", ["ComputeGpuSpot", "ComputeGpuOnDemand", "ComputeMultiNode"])
def test_no_optimal_instance_classes(dev_training, env):
    # use_optimal_instance_classes=False: only the configured types, no "optimal".
    assert "optimal" not in environment(dev_training, env)["ComputeResources"]["InstanceTypes"]


@pytest.mark.parametrize("env", ["ComputeGpuSpot", "ComputeGpuOnDemand", "ComputeMultiNode"])
def test_environments_use_the_batch_service_linked_role(dev_training, env):
    assert "ServiceRole" not in environment(dev_training, env)


@pytest.mark.parametrize(
    "env, max_vcpus", [("ComputeGpuSpot", 64), ("ComputeGpuOnDemand", 32), ("ComputeMultiNode", 96)]
)
def test_max_vcpus_from_config_dev(dev_training, env, max_vcpus):
    assert environment(dev_training, env)["ComputeResources"]["MaxvCpus"] == max_vcpus


@pytest.mark.parametrize(
    "env, max_vcpus", [("ComputeGpuSpot", 256), ("ComputeGpuOnDemand", 128), ("ComputeMultiNode", 384)]
)
def test_max_vcpus_from_config_prod(prod_training, env, max_vcpus):
    assert environment(prod_training, env)["ComputeResources"]["MaxvCpus"] == max_vcpus


def test_spot_environment(dev_training, dev):
    resources_ = environment(dev_training, "ComputeGpuSpot")["ComputeResources"]
    assert resources_["Type"] == "SPOT"
    assert resources_["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    assert resources_["InstanceTypes"] == dev.config.training.gpu_instance_types
    assert len(resources_["InstanceTypes"]) > 1


def test_on_demand_environment_has_the_same_types(dev_training, dev):
    resources_ = environment(dev_training, "ComputeGpuOnDemand")["ComputeResources"]
    assert resources_["Type"] == "EC2"
    assert resources_["InstanceTypes"] == dev.config.training.gpu_instance_types


def test_multi_node_environment_is_on_demand_in_one_az_with_a_placement_group(prod_training, prod):
    resources_ = environment(prod_training, "ComputeMultiNode")["ComputeResources"]
    assert resources_["Type"] == "EC2"
    assert resources_["InstanceTypes"] == ["g5.12xlarge", "p4d.24xlarge"] == prod.config.training.multinode_instance_types
    assert len(resources_["Subnets"]) == 1
    pg_id, _ = one(prod_training, "AWS::EC2::PlacementGroup", "ComputeMultiNodePlacementGroup")
    assert resources_["PlacementGroup"] == {"Fn::GetAtt": [pg_id, "GroupName"]}


def test_gpu_environments_span_every_az(prod_training):
    for env in ("ComputeGpuSpot", "ComputeGpuOnDemand"):
        assert len(environment(prod_training, env)["ComputeResources"]["Subnets"]) == 3


def test_placement_group_is_a_cluster(dev_training):
    dev_training.has_resource_properties("AWS::EC2::PlacementGroup", {"Strategy": "cluster"})


@pytest.mark.parametrize(
    "env, template", [("ComputeGpuSpot", "ComputeGpuLaunchTemplate"), ("ComputeGpuOnDemand", "ComputeGpuLaunchTemplate"),
                      ("ComputeMultiNode", "ComputeMultiNodeLaunchTemplate")]
)
def test_environments_pin_their_launch_template_version(dev_training, env, template):
    lt_id, _ = one(dev_training, "AWS::EC2::LaunchTemplate", template)
    assert environment(dev_training, env)["ComputeResources"]["LaunchTemplate"] == {
        "LaunchTemplateId": {"Ref": lt_id},
        "Version": {"Fn::GetAtt": [lt_id, "LatestVersionNumber"]},
    }


def test_environments_use_the_compute_security_group(dev_training):
    for env in ("ComputeGpuSpot", "ComputeGpuOnDemand", "ComputeMultiNode"):
        assert len(environment(dev_training, env)["ComputeResources"]["SecurityGroupIds"]) == 1


# --- launch templates ---------------------------------------------------------------------------
@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_launch_templates_require_imdsv2_with_hop_limit_2(dev_training, lt):
    data = props(dev_training, "AWS::EC2::LaunchTemplate", lt)["LaunchTemplateData"]
    assert data["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 2}


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_launch_templates_have_an_encrypted_gp3_root_volume_sized_from_config(dev_training, dev, lt):
    data = props(dev_training, "AWS::EC2::LaunchTemplate", lt)["LaunchTemplateData"]
    assert data["BlockDeviceMappings"] == [{
        "DeviceName": "/dev/xvda",
        "Ebs": {"DeleteOnTermination": True, "Encrypted": True, "VolumeSize": dev.config.training.root_volume_gib,
                "VolumeType": "gp3"},
    }]


def test_multi_node_launch_template_has_the_placement_group(dev_training):
    pg_id, _ = one(dev_training, "AWS::EC2::PlacementGroup", "ComputeMultiNodePlacementGroup")
    data = props(dev_training, "AWS::EC2::LaunchTemplate", "ComputeMultiNodeLaunchTemplate")["LaunchTemplateData"]
    assert data["Placement"] == {"GroupName": {"Fn::GetAtt": [pg_id, "GroupName"]}}


def test_single_node_launch_template_has_no_placement_group(dev_training):
    assert "Placement" not in props(dev_training, "AWS::EC2::LaunchTemplate", "ComputeGpuLaunchTemplate")["LaunchTemplateData"]


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_user_data_is_mime_multipart(dev_training, lt):
    text = user_data(dev_training, lt)
    assert text.startswith("Content-Type: multipart/mixed; boundary=")
    assert text.count("Content-Type: text/x-shellscript") == 2  # ECS settings, Lustre mount


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_user_data_configures_the_ecs_agent(dev_training, dev, lt):
    text = user_data(dev_training, lt)
    assert "/etc/ecs/ecs.config" in text
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in text
    assert f"ECS_CONTAINER_STOP_TIMEOUT={dev.config.training.container_stop_timeout_seconds}s" in text


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_user_data_installs_lustre_and_mounts_fsx(dev_training, lt):
    text = user_data(dev_training, lt)
    assert "dnf install -y lustre-client" in text
    assert "<ref>.fsx.<ref>.<ref>@tcp:/<ref> /fsx lustre defaults,noatime,flock,_netdev 0 0' >> /etc/fstab" in text
    assert "mount /fsx" in text


def test_stop_timeout_gives_the_container_time_to_checkpoint(dev):
    assert dev.config.training.container_stop_timeout_seconds >= contract.CONTAINER_STOP_TIMEOUT_SECONDS


# --- queues ---------------------------------------------------------------------------------------
def queue(template: Template, kind: str) -> dict:
    found = [r["Properties"] for r in resources(template, "AWS::Batch::JobQueue").values()
             if r["Properties"]["JobQueueName"] == discovery.resource_name(kind, profile="dev")]
    assert len(found) == 1
    return found[0]


def queue_environments(template: Template, kind: str) -> list[tuple[int, str]]:
    return sorted((o["Order"], o["ComputeEnvironment"]["Fn::GetAtt"][0]) for o in queue(template, kind)["ComputeEnvironmentOrder"])


def test_spot_first_queue_tries_spot_then_on_demand(dev_training):
    spot, _ = one(dev_training, "AWS::Batch::ComputeEnvironment", "ComputeGpuSpot")
    on_demand, _ = one(dev_training, "AWS::Batch::ComputeEnvironment", "ComputeGpuOnDemand")
    assert queue_environments(dev_training, "spot-first") == [(1, spot), (2, on_demand)]


def test_on_demand_queue_is_on_demand_only(dev_training):
    on_demand, _ = one(dev_training, "AWS::Batch::ComputeEnvironment", "ComputeGpuOnDemand")
    assert queue_environments(dev_training, "on-demand") == [(1, on_demand)]


def test_multi_node_queue_uses_only_the_multi_node_environment(dev_training):
    multi, _ = one(dev_training, "AWS::Batch::ComputeEnvironment", "ComputeMultiNode")
    assert queue_environments(dev_training, "multi-node") == [(1, multi)]


def test_no_spot_in_the_multi_node_queue(dev_training):
    envs = resources(dev_training, "AWS::Batch::ComputeEnvironment")
    for _, env_id in queue_environments(dev_training, "multi-node"):
        assert envs[env_id]["Properties"]["ComputeResources"]["Type"] != "SPOT"


def test_spot_first_queue_cancels_jobs_stuck_without_capacity(dev_training, dev):
    assert queue(dev_training, "spot-first")["JobStateTimeLimitActions"] == [{
        "Action": "CANCEL",
        "Reason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
        "State": "RUNNABLE",
        "MaxTimeSeconds": dev.config.training.capacity_wait_minutes * 60,
    }]


def test_only_the_spot_first_queue_has_a_time_limit_action(dev_training):
    for kind in ("on-demand", "multi-node"):
        assert "JobStateTimeLimitActions" not in queue(dev_training, kind)


# --- job definitions --------------------------------------------------------------------------------
def test_job_definition_names(dev_training):
    names = sorted(r["Properties"]["JobDefinitionName"] for r in resources(dev_training, "AWS::Batch::JobDefinition").values())
    assert names == ["bert-batch-dev-bert-finetune", "bert-batch-dev-bert-finetune-multinode"]


def test_single_node_resources_from_config(dev_training, dev):
    t = dev.config.training
    assert sorted(single_container(dev_training)["ResourceRequirements"], key=lambda r: r["Type"]) == [
        {"Type": "GPU", "Value": str(t.gpus_per_job)},
        {"Type": "MEMORY", "Value": str(t.memory_mib_per_job)},
        {"Type": "VCPU", "Value": str(t.vcpus_per_job)},
    ]


@pytest.mark.parametrize("container", [single_container, multi_node_container])
def test_shared_memory_for_data_loaders(dev_training, dev, container):
    assert container(dev_training)["LinuxParameters"]["SharedMemorySize"] == dev.config.training.shared_memory_mib


@pytest.mark.parametrize("container", [single_container, multi_node_container])
def test_ulimits_memlock_unlimited_and_nofile_high(dev_training, container):
    assert sorted(container(dev_training)["Ulimits"], key=lambda u: u["Name"]) == [
        {"Name": "memlock", "SoftLimit": -1, "HardLimit": -1},
        {"Name": "nofile", "SoftLimit": 65536, "HardLimit": 65536},
    ]


@pytest.mark.parametrize("container", [single_container, multi_node_container])
def test_command_is_the_flags_from_the_contract(dev_training, container):
    command = container(dev_training)["Command"]
    assert command[0::2] == list(contract.JOB_PARAMETERS.values())
    assert command[1::2] == [f"Ref::{name}" for name in contract.JOB_PARAMETERS]


@pytest.mark.parametrize("jobdef", ["JobDefinitionsSingle", "JobDefinitionsMultiNode"])
def test_every_ref_parameter_has_a_default(dev_training, jobdef):
    parameters = job_definition(dev_training, jobdef)["Parameters"]
    assert set(parameters) == set(contract.JOB_PARAMETERS)
    for name, value in contract.DEFAULT_PARAMETERS.items():
        assert parameters[name] == value
    assert text_of(parameters["train_uri"]) == "s3://<ref>/datasets/train.tsv"
    assert text_of(parameters["eval_uri"]) == "s3://<ref>/datasets/dev.tsv"


@pytest.mark.parametrize("container", [single_container, multi_node_container])
def test_environment_tells_the_container_where_things_are(dev_training, container):
    env = env_of(container(dev_training))
    assert env[contract.ENV_PROFILE] == "dev"
    assert env[contract.ENV_DATA_URI] == "/fsx/datasets"
    assert text_of(env[contract.ENV_ARTIFACTS_URI]) == "s3://<ref>"
    assert text_of(env[contract.ENV_CHECKPOINT_URI]) == "s3://<ref>/checkpoints"
    assert env[contract.ENV_METRICS_NAMESPACE] == metrics.DEFAULT_NAMESPACE
    assert env[contract.ENV_CHECKPOINT_EVERY_STEPS] == "500"
    assert env[contract.ENV_CHECKPOINT_EVERY_MINUTES] == "10"
    assert env[contract.ENV_FSX_MOUNT] == "/fsx"
    # The CLI sets the run id per job; the container falls back to AWS_BATCH_JOB_ID.
    assert contract.ENV_RUN_ID not in env


@pytest.mark.parametrize("container", [single_container, multi_node_container])
def test_fsx_is_mounted_read_only_from_the_host(dev_training, container):
    c = container(dev_training)
    assert c["Volumes"] == [{"Name": "fsx", "Host": {"SourcePath": "/fsx"}}]
    assert c["MountPoints"] == [{"SourceVolume": "fsx", "ContainerPath": "/fsx", "ReadOnly": True}]


@pytest.mark.parametrize("container", [single_container, multi_node_container])
def test_logs_go_to_the_encrypted_job_log_group(dev_training, container):
    log_group_id, _ = one(dev_training, "AWS::Logs::LogGroup", "JobLogs")
    config = container(dev_training)["LogConfiguration"]
    assert config["LogDriver"] == "awslogs"
    assert config["Options"]["awslogs-group"] == {"Ref": log_group_id}


@pytest.mark.parametrize("jobdef", ["JobDefinitionsSingle", "JobDefinitionsMultiNode"])
def test_retry_on_spot_reclaim_and_interruption_exit_else_exit(dev_training, jobdef):
    assert job_definition(dev_training, jobdef)["RetryStrategy"] == {
        "Attempts": 5,
        "EvaluateOnExit": [
            {"Action": "RETRY", "OnStatusReason": "Host EC2*"},
            {"Action": "RETRY", "OnExitCode": str(contract.EXIT_INTERRUPTED)},
            {"Action": "EXIT", "OnReason": "*"},
        ],
    }


@pytest.mark.parametrize("jobdef", ["JobDefinitionsSingle", "JobDefinitionsMultiNode"])
def test_timeout_from_config(dev_training, prod_training, jobdef):
    assert job_definition(dev_training, jobdef)["Timeout"] == {"AttemptDurationSeconds": 720 * 60}
    assert job_definition(prod_training, jobdef)["Timeout"] == {"AttemptDurationSeconds": 2880 * 60}


@pytest.mark.parametrize("jobdef", ["JobDefinitionsSingle", "JobDefinitionsMultiNode"])
def test_tags_are_propagated(dev_training, jobdef):
    assert job_definition(dev_training, jobdef)["PropagateTags"] is True


def test_multi_node_job_runs_the_configured_nodes_with_node_0_as_main(dev_training, dev):
    nodes = job_definition(dev_training, "JobDefinitionsMultiNode")["NodeProperties"]
    n = dev.config.training.multinode_nodes
    assert nodes["NumNodes"] == n and nodes["MainNode"] == 0
    assert [r["TargetNodes"] for r in nodes["NodeRangeProperties"]] == [f"0:{n - 1}"]


def test_multi_node_resources_per_node_from_config(dev_training, dev):
    t = dev.config.training
    assert sorted(multi_node_container(dev_training)["ResourceRequirements"], key=lambda r: r["Type"]) == [
        {"Type": "GPU", "Value": str(t.multinode_gpus_per_node)},
        {"Type": "MEMORY", "Value": str(t.multinode_memory_mib_per_node)},
        {"Type": "VCPU", "Value": str(t.multinode_vcpus_per_node)},
    ]


def test_both_job_definitions_run_the_same_image(dev_training):
    assert single_container(dev_training)["Image"] == multi_node_container(dev_training)["Image"]


def test_image_is_the_training_container_asset(dev):
    asset = dev.platform.training.image_asset
    assert asset is not None
    assert single_container(dev.template(dev.platform.training))["Image"]["Fn::Sub"].endswith(f":{asset.asset_hash}")


def test_job_log_group_is_encrypted_with_retention(dev_training, prod_training):
    for template, days in ((dev_training, 30), (prod_training, 365)):
        template.has_resource_properties("AWS::Logs::LogGroup", {
            "LogGroupName": Match.string_like_regexp(r"^/bert-batch/(dev|prod)/jobs$"),
            "KmsKeyId": Match.any_value(),
            "RetentionInDays": days,
        })


# --- IAM ---------------------------------------------------------------------------------------------
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
    assert sorted(s["Action"]) == sorted([
        "ecs:DeregisterContainerInstance", "ecs:ListTagsForResource", "ecs:Poll", "ecs:RegisterContainerInstance",
        "ecs:StartTelemetrySession", "ecs:SubmitAttachmentStateChanges", "ecs:SubmitContainerStateChange",
        "ecs:SubmitTaskStateChange", "ecs:UpdateContainerInstancesState",
    ])
    assert [text_of(r).split(":", 5)[-1] for r in s["Resource"]] == [
        "cluster/bert-batch-dev-ce-*", "container-instance/bert-batch-dev-ce-*/*", "task/bert-batch-dev-ce-*/*",
    ]


def test_compute_environment_names_match_the_instance_role_cluster_scope(dev_training):
    # Batch names each environment's ECS cluster <environment name>_Batch_<uuid>.
    names = sorted(r["Properties"]["ComputeEnvironmentName"] for r in resources(dev_training, "AWS::Batch::ComputeEnvironment").values())
    assert names == ["bert-batch-dev-ce-gpu-on-demand", "bert-batch-dev-ce-gpu-spot", "bert-batch-dev-ce-multi-node"]


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


def test_execution_role_pulls_a_prebuilt_ecr_image_repository(variant):
    s = statement(variant, "RolesExecutionPolicy", "PullTrainingImage")
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
        "s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject",
    ]
    assert sorted(text_of(r).rsplit("/", 2)[-2] for r in s["Resource"]) == ["checkpoints", "runs"]
    listing = statement(dev_training, "RolesJobPolicy", "ListCheckpointsAndRuns")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["checkpoints/", "checkpoints/*", "runs/", "runs/*"]


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
        "ListCheckpointsAndRuns", "ListDatasets", "ProjectKeyThroughS3", "ReadDatasets", "ReadWriteCheckpointsAndRuns",
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
        assert trust == [{
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        }]


# --- fallback --------------------------------------------------------------------------------------------
def test_fallback_function_is_python_on_arm64(dev_training):
    dev_training.has_resource_properties("AWS::Lambda::Function", {
        "Runtime": Match.string_like_regexp(r"^python3\.1[2-9]$"),
        "Architectures": ["arm64"],
        "Handler": "fallback.handler",
    })


def test_fallback_function_knows_both_queues_and_the_metric(dev_training):
    spot, _ = one(dev_training, "AWS::Batch::JobQueue", "ComputeSpotFirstQueue")
    on_demand, _ = one(dev_training, "AWS::Batch::JobQueue", "ComputeOnDemandQueue")
    variables = props(dev_training, "AWS::Lambda::Function", "FallbackFunction")["Environment"]["Variables"]
    assert variables == {
        "SOURCE_QUEUE_ARN": {"Fn::GetAtt": [spot, "JobQueueArn"]},
        "TARGET_QUEUE_ARN": {"Fn::GetAtt": [on_demand, "JobQueueArn"]},
        "METRICS_NAMESPACE": metrics.DEFAULT_NAMESPACE,
        "METRIC_NAME": metrics.FALLBACK_RESUBMISSIONS.name,
        "PROFILE": "dev",
    }


def test_fallback_rule_matches_failed_jobs_of_the_spot_first_queue(dev_training):
    spot, _ = one(dev_training, "AWS::Batch::JobQueue", "ComputeSpotFirstQueue")
    function, _ = one(dev_training, "AWS::Lambda::Function", "FallbackFunction")
    rule = props(dev_training, "AWS::Events::Rule", "FallbackFailedSpotJobs")
    assert rule["EventPattern"] == {
        "source": ["aws.batch"],
        "detail-type": ["Batch Job State Change"],
        "detail": {"status": ["FAILED"], "jobQueue": [{"Fn::GetAtt": [spot, "JobQueueArn"]}]},
    }
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": [function, "Arn"]}]


def test_fallback_may_submit_only_to_the_on_demand_queue_and_the_single_node_definition(dev_training):
    on_demand, _ = one(dev_training, "AWS::Batch::JobQueue", "ComputeOnDemandQueue")
    s = statement(dev_training, "FallbackPolicy", "SubmitToOnDemand")
    assert s["Action"] == "batch:SubmitJob"
    assert s["Resource"][0] == {"Fn::GetAtt": [on_demand, "JobQueueArn"]}
    assert text_of(s["Resource"][1]).endswith(":job-definition/bert-batch-dev-bert-finetune:*")
    assert len(s["Resource"]) == 2


def test_fallback_tags_jobs_and_describes_them(dev_training):
    tag = statement(dev_training, "FallbackPolicy", "TagJobs")
    assert tag["Action"] == "batch:TagResource" and text_of(tag["Resource"]).endswith(":job/*")
    describe = statement(dev_training, "FallbackPolicy", "DescribeJobs")
    assert describe["Action"] == "batch:DescribeJobs" and describe["Resource"] == "*"


def test_fallback_logs_to_its_own_encrypted_log_group(dev_training):
    log_group_id, log_group = one(dev_training, "AWS::Logs::LogGroup", "FallbackLogs")
    assert "KmsKeyId" in log_group["Properties"] and log_group["Properties"]["RetentionInDays"] == 30
    function = props(dev_training, "AWS::Lambda::Function", "FallbackFunction")
    assert function["LoggingConfig"] == {"LogGroup": {"Ref": log_group_id}}
    s = statement(dev_training, "FallbackPolicy", "WriteOwnLogs")
    assert s["Resource"] == {"Fn::GetAtt": [log_group_id, "Arn"]}


def test_fallback_failures_land_in_an_encrypted_dead_letter_queue(dev_training):
    queue_id, q = one(dev_training, "AWS::SQS::Queue", "FallbackDeadLetters")
    assert q["Properties"]["SqsManagedSseEnabled"] is True
    function = props(dev_training, "AWS::Lambda::Function", "FallbackFunction")
    assert function["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}


# --- discovery ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", sorted(discovery.KEYS))
def test_every_discovery_key_is_an_ssm_parameter(dev_training, key):
    dev_training.has_resource_properties("AWS::SSM::Parameter", {
        "Name": discovery.parameter_name(key, profile="dev"),
        "Type": "String",
    })


def test_discovery_values(dev_training):
    params = {r["Properties"]["Name"]: r["Properties"]["Value"] for r in resources(dev_training, "AWS::SSM::Parameter").values()}
    value = lambda key: params[discovery.parameter_name(key, profile="dev")]  # noqa: E731
    queue_names = {r["Properties"]["JobQueueName"] for r in resources(dev_training, "AWS::Batch::JobQueue").values()}
    assert value(discovery.QUEUE_SPOT_FIRST) == "bert-batch-dev-spot-first"
    assert value(discovery.QUEUE_ON_DEMAND) == "bert-batch-dev-on-demand"
    assert value(discovery.QUEUE_MULTI_NODE) == "bert-batch-dev-multi-node"
    assert queue_names == {"bert-batch-dev-spot-first", "bert-batch-dev-on-demand", "bert-batch-dev-multi-node"}
    single, _ = one(dev_training, "AWS::Batch::JobDefinition", "JobDefinitionsSingle")
    multi, _ = one(dev_training, "AWS::Batch::JobDefinition", "JobDefinitionsMultiNode")
    assert value(discovery.JOB_DEFINITION_SINGLE) == {"Ref": single}
    assert value(discovery.JOB_DEFINITION_MULTI_NODE) == {"Ref": multi}
    log_group, _ = one(dev_training, "AWS::Logs::LogGroup", "JobLogs")
    assert value(discovery.LOG_GROUP) == {"Ref": log_group}
    assert value(discovery.FSX_MOUNT_PATH) == "/fsx"
    assert value(discovery.METRICS_NAMESPACE) == metrics.DEFAULT_NAMESPACE
    assert "Fn::GetStackOutput" in value(discovery.DATA_BUCKET)
    assert "Fn::GetStackOutput" in value(discovery.ARTIFACTS_BUCKET)


def test_discovery_values_are_outputs_too(dev_training):
    outputs = dev_training.to_json()["Outputs"]
    assert {"QueueSpotFirst", "QueueOnDemand", "QueueMultiNode", "JobDefinitionBertFinetune",
            "JobDefinitionBertFinetuneMultinode", "BucketData", "BucketArtifacts", "LogGroup",
            "FsxMountPath", "MetricsNamespace"} <= set(outputs)


def test_prod_parameters_live_under_the_prod_prefix(prod_training):
    names = [r["Properties"]["Name"] for r in resources(prod_training, "AWS::SSM::Parameter").values()]
    assert names and all(n.startswith("/bert-batch/prod/") for n in names)


def test_data_stack_outputs_used_for_bucket_names_exist(dev_data):
    assert {"DataBucketName", "ArtifactsBucketName"} <= set(dev_data.to_json()["Outputs"])


# --- variant: FSx off, EFA on, prebuilt image ------------------------------------------------------------------
@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_without_fsx_no_lustre_part_in_user_data(variant, lt):
    text = user_data(variant, lt)
    assert "lustre" not in text and "/fsx" not in text
    assert text.count("Content-Type: text/x-shellscript") == 1


@pytest.mark.parametrize("container", [single_container, multi_node_container])
def test_without_fsx_no_volume_and_data_from_s3(variant, container):
    c = container(variant)
    assert "Volumes" not in c and "MountPoints" not in c
    env = env_of(c)
    assert text_of(env[contract.ENV_DATA_URI]) == "s3://<ref>/datasets"
    assert contract.ENV_FSX_MOUNT not in env


def test_without_fsx_discovery_says_none(variant):
    params = {r["Properties"]["Name"]: r["Properties"]["Value"] for r in resources(variant, "AWS::SSM::Parameter").values()}
    assert params[discovery.parameter_name(discovery.FSX_MOUNT_PATH, profile="dev")] == "none"


def test_efa_interface_on_the_multi_node_launch_template(variant):
    data = props(variant, "AWS::EC2::LaunchTemplate", "ComputeMultiNodeLaunchTemplate")["LaunchTemplateData"]
    [interface] = data["NetworkInterfaces"]
    assert interface["InterfaceType"] == "efa" and interface["DeviceIndex"] == 0
    assert len(interface["Groups"]) == 1
    # With interfaces in the launch template, the security group lives there only.
    assert "SecurityGroupIds" not in environment(variant, "ComputeMultiNode")["ComputeResources"]
    assert "NetworkInterfaces" not in props(variant, "AWS::EC2::LaunchTemplate", "ComputeGpuLaunchTemplate")["LaunchTemplateData"]


def test_efa_device_and_provider_in_the_multi_node_container(variant):
    c = multi_node_container(variant)
    [device] = c["LinuxParameters"]["Devices"]
    assert device["HostPath"] == device["ContainerPath"] == "/dev/infiniband/uverbs0"
    assert sorted(p.upper() for p in device["Permissions"]) == ["MKNOD", "READ", "WRITE"]  # case-insensitive in Batch
    assert env_of(c)["FI_PROVIDER"] == "efa"


def test_efa_security_group_admits_all_traffic_within_itself(dev_network):
    # EFA needs all traffic in and out between members of the group (Network stack).
    group_id = [k for k in dev_network.find_resources("AWS::EC2::SecurityGroup") if k.startswith("SecurityGroupsCompute")][0]
    dev_network.has_resource_properties("AWS::EC2::SecurityGroupIngress", {
        "IpProtocol": "-1", "GroupId": {"Fn::GetAtt": [group_id, "GroupId"]},
        "SourceSecurityGroupId": {"Fn::GetAtt": [group_id, "GroupId"]},
    })
    dev_network.has_resource_properties("AWS::EC2::SecurityGroupEgress", {
        "IpProtocol": "-1", "GroupId": {"Fn::GetAtt": [group_id, "GroupId"]},
        "DestinationSecurityGroupId": {"Fn::GetAtt": [group_id, "GroupId"]},
    })


def test_prebuilt_image_is_used_as_is(variant):
    assert single_container(variant)["Image"] == "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/bert-train:1.4"


def test_variant_template_passes_cfn_lint(variant):
    # The dev/prod templates are linted by `make synth`; this covers the EFA / no-FSx / prebuilt
    # image branches, in process (the same checks and ignores as .cfnlintrc.yaml).
    from cfnlint.api import ManualArgs, lint

    matches = lint(json.dumps(variant.to_json()), config=ManualArgs(ignore_checks=["W3005"], regions=["us-east-1"]))
    assert [str(m) for m in matches] == []
