"""The `bert-predict` job definition (platform_constructs/job_definitions.py): batch scoring with the
training image, one GPU, the prediction table's flags, training's retries; discovery and fallback."""

from __future__ import annotations

import pytest

from bertbatch_contract import discovery, job, prediction
from bertbatch_contract.naming import Naming
from platform_constructs import job_definitions as jobdefs
from tests.stacks.conftest import (
    env_of,
    job_definition,
    one,
    predict_container,
    resources,
    single_container,
    statement,
    text_of,
)


def test_name_and_discovery(dev_training):
    predict_id, jobdef = one(dev_training, "AWS::Batch::JobDefinition", "JobDefinitionsPredict")
    assert jobdef["Properties"]["JobDefinitionName"] == "bert-batch-dev-bert-predict"
    assert jobdef["Properties"]["Type"] == "container"
    ssm = resources(dev_training, "AWS::SSM::Parameter").values()
    params = {r["Properties"]["Name"]: r["Properties"]["Value"] for r in ssm}
    assert params[Naming("dev").parameter(discovery.JOB_DEFINITION_PREDICT)] == {"Ref": predict_id}
    assert dev_training.find_outputs("JobDefinitionBertPredict")["JobDefinitionBertPredict"]["Value"] == {
        "Ref": predict_id
    }


def test_command_is_the_predict_subcommand_and_the_contract_flags(dev_training):
    command = predict_container(dev_training)["Command"]
    assert command == prediction.job_command()
    assert command[0] == "predict"
    assert command[1::2] == [row.flag for row in prediction.JOB_PARAMETERS.values()]
    assert command[2::2] == [f"Ref::{name}" for name in prediction.JOB_PARAMETERS]


def test_parameter_defaults_are_the_rows_with_a_default(dev_training):
    # max_seq_length: "" = not given, so the container takes the run's from its training_args.json
    parameters = job_definition(dev_training, "JobDefinitionsPredict")["Parameters"]
    assert parameters == {"text_column": "sentence", "batch_size": "64", "max_seq_length": "", "precision": "auto"}
    assert parameters == jobdefs.predict_parameter_defaults()


def test_the_parameters_a_submit_must_always_send(dev_training):
    # Batch passes a Ref:: with neither a default nor a submitted value as its literal text.
    parameters = job_definition(dev_training, "JobDefinitionsPredict")["Parameters"]
    must_send = jobdefs.predict_parameters_without_default()
    assert must_send == ["model", "input_uri", "output_uri", "shards"]
    assert not set(must_send) & set(parameters)
    assert set(must_send) | set(parameters) == set(prediction.JOB_PARAMETERS)


def test_one_gpu_and_the_single_node_vcpus_and_memory(dev_training, dev):
    t = dev.config.training
    assert sorted(predict_container(dev_training)["ResourceRequirements"], key=lambda r: r["Type"]) == [
        {"Type": "GPU", "Value": "1"},
        {"Type": "MEMORY", "Value": str(t.memory_mib_per_job)},
        {"Type": "VCPU", "Value": str(t.vcpus_per_job)},
    ]


@pytest.mark.parametrize("key", ["Image", "ExecutionRoleArn", "Volumes", "MountPoints", "Ulimits", "LinuxParameters"])
def test_same_image_execution_role_volumes_and_limits_as_training(dev_training, variant_training, key):
    """The job role differs: prediction runs as its own role (tests/stacks/test_training_iam.py)."""
    for template in (dev_training, variant_training):  # with and without FSx, asset and prebuilt image
        assert predict_container(template).get(key) == single_container(template).get(key)


def test_same_environment_as_training(dev_training, variant_training):
    for template in (dev_training, variant_training):
        env = env_of(predict_container(template))
        assert env == env_of(single_container(template))
    assert text_of(env_of(predict_container(dev_training))[job.ENV_ARTIFACTS_URI]) == "s3://<ref>"
    assert env_of(predict_container(variant_training))[job.ENV_FSX_MOUNT] == "/fsx"
    assert job.ENV_FSX_MOUNT not in env_of(predict_container(dev_training))  # dev: no FSx by default


def test_logs_go_to_the_job_log_group_under_their_own_stream_prefix(dev_training):
    log_group_id, _ = one(dev_training, "AWS::Logs::LogGroup", "JobLogs")
    options = predict_container(dev_training)["LogConfiguration"]["Options"]
    assert options["awslogs-group"] == {"Ref": log_group_id}
    assert options["awslogs-stream-prefix"] == "bert-predict"


def test_retries_like_training(dev_training):
    retry = job_definition(dev_training, "JobDefinitionsPredict")["RetryStrategy"]
    assert retry == job_definition(dev_training, "JobDefinitionsSingle")["RetryStrategy"]
    assert retry["EvaluateOnExit"] == [
        {"Action": "RETRY", "OnStatusReason": "Host EC2*"},
        {"Action": "RETRY", "OnExitCode": "75"},
        {"Action": "RETRY", "OnExitCode": "74"},
        {"Action": "EXIT", "OnReason": "*"},
    ]


def test_timeout_from_its_own_config_key(dev_training, tracked_training):
    assert job_definition(dev_training, "JobDefinitionsPredict")["Timeout"] == {"AttemptDurationSeconds": 360 * 60}
    assert job_definition(tracked_training, "JobDefinitionsPredict")["Timeout"] == {"AttemptDurationSeconds": 90 * 60}
    # Training keeps its own.
    assert job_definition(tracked_training, "JobDefinitionsSingle")["Timeout"] == {"AttemptDurationSeconds": 720 * 60}


def test_tags_are_propagated(dev_training):
    assert job_definition(dev_training, "JobDefinitionsPredict")["PropagateTags"] is True


def test_the_fallback_may_resubmit_prediction_jobs_to_on_demand(dev_training):
    s = statement(dev_training, "FallbackPolicy", "SubmitToOnDemand")
    arns = [text_of(r) for r in s["Resource"]]
    definitions = sorted(arn.split(":job-definition/")[-1] for arn in arns if ":job-definition/" in arn)
    assert definitions == ["bert-batch-dev-bert-finetune:*", "bert-batch-dev-bert-predict:*"]
