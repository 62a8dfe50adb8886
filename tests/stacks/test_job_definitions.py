"""TrainingJobDefinitions (platform_constructs/job_definitions.py): command, parameters, environment,
resources, retries, image."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Capture, Match, Matcher

from bertbatch_contract import hyperparameters, job, layout, metrics
from tests.stacks.conftest import (
    JOB_DEFINITION,
    MULTI_NODE,
    PREBUILT_IMAGE,
    SINGLE,
    container_has,
    container_value,
    env_var,
    environment_of,
    every,
    in_container,
    job_definition_value,
    no_env_var,
    one,
    one_has,
    text_of,
)


def test_job_definition_names(dev_training):
    names = Capture()
    dev_training.all_resources_properties(JOB_DEFINITION, {"JobDefinitionName": names})
    assert sorted(every(names)) == [
        "bert-batch-dev-bert-finetune",
        "bert-batch-dev-bert-finetune-multinode",
        "bert-batch-dev-bert-predict",
        "bert-batch-dev-bert-prepare",
    ]


def test_single_node_resources_from_config(dev_training, dev):
    t = dev.config.training
    assert sorted(container_value(dev_training, SINGLE, "ResourceRequirements"), key=lambda r: r["Type"]) == [
        {"Type": "GPU", "Value": str(t.gpus_per_job)},
        {"Type": "MEMORY", "Value": str(t.memory_mib_per_job)},
        {"Type": "VCPU", "Value": str(t.vcpus_per_job)},
    ]


@pytest.mark.parametrize("container", [SINGLE, MULTI_NODE])
def test_shared_memory_for_data_loaders(dev_training, dev, container):
    container_has(dev_training, container, {"LinuxParameters": {
        "SharedMemorySize": dev.config.training.shared_memory_mib}})


@pytest.mark.parametrize("synth_template", ["dev_training", "prod_training", "variant_training"])
def test_every_job_definition_sizes_dev_shm(request, synth_template):
    """Docker's 64 MiB /dev/shm stalls DataLoader workers and NCCL's intra-node transport: every
    job definition sizes it, the multi-node one with EFA devices too (variant)."""
    template = request.getfixturevalue(synth_template)
    sized = {"LinuxParameters": Match.object_like({"SharedMemorySize": Match.any_value()})}
    for logical_id in template.find_resources(JOB_DEFINITION):
        kind = MULTI_NODE if logical_id.startswith(MULTI_NODE) else SINGLE
        one_has(template, JOB_DEFINITION, logical_id, in_container(kind, sized))


@pytest.mark.parametrize("container", [SINGLE, MULTI_NODE])
def test_ulimits_memlock_unlimited_and_nofile_high(dev_training, container):
    assert sorted(container_value(dev_training, container, "Ulimits"), key=lambda u: u["Name"]) == [
        {"Name": "memlock", "SoftLimit": -1, "HardLimit": -1},
        {"Name": "nofile", "SoftLimit": 65536, "HardLimit": 65536},
    ]


@pytest.mark.parametrize("container", [SINGLE, MULTI_NODE])
def test_command_is_the_flags_from_the_contract(dev_training, container):
    command = container_value(dev_training, container, "Command")
    assert command[0::2] == [row.flag for row in hyperparameters.JOB_PARAMETERS.values()]
    assert command[0::2] == [
        "--train",
        "--eval",
        "--model",
        "--epochs",
        "--learning-rate",
        "--batch-size",
        "--max-seq-length",
        "--long-text",
        "--chunk-overlap",
        "--text-column",
        "--label-column",
        "--problem-type",
        "--label-separator",
        "--text-pair-column",
        "--max-steps",
        "--eval-batch-size",
        "--gradient-accumulation-steps",
        "--warmup-ratio",
        "--weight-decay",
        "--max-grad-norm",
        "--precision",
        "--compile",
        "--class-weights",
        "--seed",
        "--eval-steps",
        "--early-stopping-metric",
        "--early-stopping-patience",
        "--keep-checkpoints",
        "--logging-steps",
        "--megabatch-factor",
    ]
    assert command[1::2] == [f"Ref::{name}" for name in hyperparameters.JOB_PARAMETERS]


@pytest.mark.parametrize("jobdef", [SINGLE, MULTI_NODE])
def test_every_ref_parameter_has_a_default(dev_training, jobdef):
    parameters = job_definition_value(dev_training, jobdef, "Parameters")
    assert set(parameters) == set(hyperparameters.JOB_PARAMETERS)
    for name, value in hyperparameters.parameter_defaults().items():
        if name != "model":
            assert parameters[name] == value
    # Jobs have no internet: the default model is its staged copy in the artifacts bucket, where
    # `bertbatch models import bert-base-uncased` puts it (the container says so when it is not).
    assert text_of(parameters["model"]) == "s3://<ref>/models/bert-base-uncased/"
    assert text_of(parameters["model"]).endswith(layout.model_prefix(layout.staged_model_name("bert-base-uncased")))
    assert hyperparameters.parameter_defaults() == {
        "model": "bert-base-uncased",
        "epochs": "3",
        "learning_rate": "2e-5",
        "batch_size": "32",
        "max_seq_length": "128",
        "long_text": "truncate",
        "chunk_overlap": "",  # a quarter of max_seq_length
        "text_column": "sentence",
        "label_column": "label",
        "problem_type": "single_label_classification",
        "label_separator": ",",
        # optional flags: "" leaves them unset (a Ref:: without a default reaches the container as text)
        "text_pair_column": "",
        "max_steps": "",
        "eval_batch_size": "",
        "gradient_accumulation_steps": "1",
        "warmup_ratio": "0.06",
        "weight_decay": "0.01",
        "max_grad_norm": "1",
        "precision": "auto",
        "compile": "auto",  # on for CUDA, off on CPU
        "class_weights": "none",
        "seed": "42",
        "eval_steps": "",
        "early_stopping_metric": "",  # the problem type's default metric
        "early_stopping_patience": "0",
        "keep_checkpoints": "2",
        "logging_steps": "50",
        "megabatch_factor": "500",
    }
    assert text_of(parameters["train_uri"]) == "s3://<ref>/datasets/train.tsv"
    assert text_of(parameters["eval_uri"]) == "s3://<ref>/datasets/dev.tsv"


@pytest.mark.parametrize("container", [SINGLE, MULTI_NODE])
def test_environment_tells_the_container_where_things_are(dev_training, container):
    env = environment_of(dev_training, container)
    assert env[job.ENV_PROFILE] == "dev"
    # The S3 prefix FSx mirrors; the container finds the FSx copy under FSX_MOUNT_PATH.
    assert text_of(env[job.ENV_DATA_URI]) == f"s3://<ref>/{layout.DATASETS_PREFIX.rstrip('/')}"
    assert text_of(env[job.ENV_ARTIFACTS_URI]) == "s3://<ref>"
    assert text_of(env[job.ENV_CHECKPOINT_URI]) == "s3://<ref>/checkpoints"
    assert env[job.ENV_METRICS_NAMESPACE] == metrics.DEFAULT_NAMESPACE
    assert env[job.ENV_CHECKPOINT_EVERY_STEPS] == str(job.DEFAULT_CHECKPOINT_EVERY_STEPS)  # the container's default
    assert env[job.ENV_CHECKPOINT_EVERY_MINUTES] == "10"
    assert job.ENV_FSX_MOUNT not in env  # dev: no FSx by default
    # The CLI sets the run id per job; the container falls back to AWS_BATCH_JOB_ID.
    assert job.ENV_RUN_ID not in env


@pytest.mark.parametrize("container", [SINGLE, MULTI_NODE])
def test_fsx_is_mounted_read_only_from_the_host_except_the_token_cache(variant_training, container):
    cache = f"/fsx/{job.FSX_CACHE_DIR}"
    container_has(variant_training, container, {
        "Volumes": Match.exact([
            INSTANCE_INFO_VOLUME,
            {"Name": "fsx", "Host": {"SourcePath": "/fsx"}},
            {"Name": "fsx-cache", "Host": {"SourcePath": cache}},
        ]),
        "MountPoints": Match.exact([
            INSTANCE_INFO_MOUNT,
            {"SourceVolume": "fsx", "ContainerPath": "/fsx", "ReadOnly": True},
            {"SourceVolume": "fsx-cache", "ContainerPath": cache, "ReadOnly": False},
        ]),
    })


INSTANCE_INFO_VOLUME = {"Name": "instance-info", "Host": {"SourcePath": job.INSTANCE_INFO_DIR}}
INSTANCE_INFO_MOUNT = {"SourceVolume": "instance-info", "ContainerPath": job.INSTANCE_INFO_DIR, "ReadOnly": True}


def _mounts_instance_info() -> Matcher:
    return Match.object_like({
        "Volumes": Match.array_with([INSTANCE_INFO_VOLUME]),
        "MountPoints": Match.array_with([INSTANCE_INFO_MOUNT]),
    })


@pytest.mark.parametrize("synth_template", ["dev_training", "variant_training"])
@pytest.mark.parametrize("name", ["bert-finetune", "bert-predict", "bert-prepare"])
def test_container_job_definitions_mount_the_instance_file_read_only(request, synth_template, name):
    """The cost cap's instance type and life cycle (the host writes them at boot; no IMDS hop left
    for the container), with and without FSx."""
    request.getfixturevalue(synth_template).has_resource_properties("AWS::Batch::JobDefinition", {
        "JobDefinitionName": f"bert-batch-dev-{name}",
        "ContainerProperties": _mounts_instance_info(),
    })


@pytest.mark.parametrize("synth_template", ["dev_training", "variant_training"])
def test_the_multi_node_job_definition_mounts_the_instance_file_read_only(request, synth_template):
    request.getfixturevalue(synth_template).has_resource_properties("AWS::Batch::JobDefinition", {
        "JobDefinitionName": "bert-batch-dev-bert-finetune-multinode",
        "NodeProperties": Match.object_like({
            "NodeRangeProperties": [Match.object_like({"Container": _mounts_instance_info()})],
        }),
    })


@pytest.mark.parametrize("container", [SINGLE, MULTI_NODE])
def test_logs_go_to_the_encrypted_job_log_group(dev_training, container):
    log_group_id, _ = one(dev_training, "AWS::Logs::LogGroup", "JobLogs")
    container_has(dev_training, container, {"LogConfiguration": {
        "LogDriver": "awslogs",
        "Options": {"awslogs-group": Match.exact({"Ref": log_group_id})},
    }})


@pytest.mark.parametrize("jobdef", [SINGLE, MULTI_NODE])
def test_retry_on_spot_reclaim_interruption_and_storage_exits_else_exit(dev_training, jobdef):
    one_has(dev_training, JOB_DEFINITION, jobdef, {"RetryStrategy": Match.exact({
        "Attempts": 5,
        "EvaluateOnExit": [
            {"Action": "RETRY", "OnStatusReason": "Host EC2*"},
            {"Action": "RETRY", "OnExitCode": str(job.EXIT_INTERRUPTED)},
            {"Action": "RETRY", "OnExitCode": str(job.EXIT_STORAGE_UNAVAILABLE)},
            {"Action": "EXIT", "OnReason": "*"},
        ],
    })})


@pytest.mark.parametrize("jobdef", [SINGLE, MULTI_NODE])
def test_timeout_from_config(dev_training, prod_training, jobdef):
    one_has(dev_training, JOB_DEFINITION, jobdef, {"Timeout": Match.exact({"AttemptDurationSeconds": 720 * 60})})
    one_has(prod_training, JOB_DEFINITION, jobdef, {"Timeout": Match.exact({"AttemptDurationSeconds": 2880 * 60})})


@pytest.mark.parametrize("jobdef", [SINGLE, MULTI_NODE])
def test_tags_are_propagated(dev_training, jobdef):
    one_has(dev_training, JOB_DEFINITION, jobdef, {"PropagateTags": True})


def test_multi_node_job_runs_the_configured_nodes_with_node_0_as_main(dev_training, dev):
    one_has(dev_training, JOB_DEFINITION, MULTI_NODE, {"NodeProperties": {
        "NumNodes": dev.config.training.multinode_nodes,
        "MainNode": 0,
        # Open-ended: SubmitJob accepts nodeOverrides.numNodes (bertbatch submit --nodes N) only
        # for a node range without an upper bound.
        "NodeRangeProperties": [{"TargetNodes": "0:"}],
    }})


def test_multi_node_resources_per_node_from_config(dev_training, dev):
    t = dev.config.training
    assert sorted(container_value(dev_training, MULTI_NODE, "ResourceRequirements"), key=lambda r: r["Type"]) == [
        {"Type": "GPU", "Value": str(t.multinode_gpus_per_node)},
        {"Type": "MEMORY", "Value": str(t.multinode_memory_mib_per_node)},
        {"Type": "VCPU", "Value": str(t.multinode_vcpus_per_node)},
    ]


def test_both_job_definitions_run_the_same_image(dev_training):
    container_has(dev_training, MULTI_NODE, {"Image": Match.exact(container_value(dev_training, SINGLE, "Image"))})


def test_image_is_the_training_container_asset(dev):
    asset = dev.platform.training.image_asset
    assert asset is not None
    container_has(dev.template(dev.platform.training), SINGLE, {
        "Image": {"Fn::Sub": Match.string_like_regexp(re.escape(f":{asset.asset_hash}") + "$")}})


def test_job_log_group_is_encrypted_with_retention(dev_training, prod_training):
    for template, days in ((dev_training, 30), (prod_training, 365)):
        template.has_resource_properties(
            "AWS::Logs::LogGroup",
            {
                "LogGroupName": Match.string_like_regexp(r"^/bert-batch/(dev|prod)/jobs$"),
                "KmsKeyId": Match.any_value(),
                "RetentionInDays": days,
            },
        )


@pytest.mark.parametrize("container", [SINGLE, MULTI_NODE])
def test_without_fsx_only_the_instance_file_volume_and_data_from_s3(dev_training, container):
    container_has(dev_training, container, {
        "Volumes": Match.exact([INSTANCE_INFO_VOLUME]),
        "MountPoints": Match.exact([INSTANCE_INFO_MOUNT]),
        "Environment": no_env_var(job.ENV_FSX_MOUNT),
    })
    assert text_of(environment_of(dev_training, container)[job.ENV_DATA_URI]) == "s3://<ref>/datasets"


def test_an_efa_device_per_interface_and_the_efa_environment_in_the_multi_node_container(variant_training):
    """p4d.24xlarge: four EFA interfaces, so four verbs devices; libfabric uses only EFA."""
    devices = [f"/dev/infiniband/uverbs{card}" for card in range(4)]
    permissions = Capture()
    container_has(variant_training, MULTI_NODE, {
        "LinuxParameters": {"Devices": Match.exact([
            {"HostPath": device, "ContainerPath": device, "Permissions": permissions} for device in devices])},
        "Environment": Match.array_with([{"Name": "FI_PROVIDER", "Value": "efa"}]),
    })
    # NCCL must use the aws-ofi-nccl network: a job whose plugin did not load fails, not TCP.
    container_has(variant_training, MULTI_NODE, {"Environment": env_var("NCCL_NET", "AWS Libfabric")})
    # case-insensitive in Batch
    assert all(sorted(p.upper() for p in value) == ["MKNOD", "READ", "WRITE"]
               for value in every(permissions, Capture.as_array))


def test_without_efa_no_device_and_no_efa_environment(dev_training):
    container_has(dev_training, MULTI_NODE, {
        "LinuxParameters": {"Devices": Match.absent()},
        "Environment": no_env_var("FI_PROVIDER"),
    })
    container_has(dev_training, MULTI_NODE, {"Environment": no_env_var("NCCL_NET")})


def test_prebuilt_image_is_used_as_is(variant_training):
    container_has(variant_training, SINGLE, {"Image": PREBUILT_IMAGE})


def test_job_definitions_set_only_variables_something_reads(dev_training, variant_training):
    """Each variable is read by the container (bertbatch_contract.job), by libfabric (FI_PROVIDER)
    or by NCCL (NCCL_NET)."""
    read = {
        job.ENV_PROFILE, job.ENV_DATA_URI, job.ENV_ARTIFACTS_URI, job.ENV_CHECKPOINT_URI,
        job.ENV_METRICS_NAMESPACE, job.ENV_CHECKPOINT_EVERY_STEPS, job.ENV_CHECKPOINT_EVERY_MINUTES,
        job.ENV_FSX_MOUNT, "FI_PROVIDER", "NCCL_NET",
    }
    for template in (dev_training, variant_training):
        for container in (SINGLE, MULTI_NODE):
            assert set(environment_of(template, container)) <= read


def test_without_fsx_nothing_in_the_training_stack_names_it(dev_training):
    """Only the discovery parameter (value "none") may mention FSx when it is disabled."""
    # A text search through every resource's properties at any depth: no Match pattern does that.
    for logical_id, resource in dev_training.to_json()["Resources"].items():
        if resource["Type"] == "AWS::SSM::Parameter":
            continue
        text = json.dumps(resource.get("Properties", {})).lower()
        assert "/fsx" not in text and "lustre" not in text, logical_id
