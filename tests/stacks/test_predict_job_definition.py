"""The `bert-predict` job definition (platform_constructs/job_definitions.py): batch scoring with the
training image, one GPU, the prediction table's flags, training's retries; discovery and fallback."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Capture, Match

from bertbatch_contract import discovery, job, prediction
from bertbatch_contract.naming import Naming
from platform_constructs import job_definitions as jobdefs
from tests.stacks.conftest import (
    JOB_DEFINITION,
    PREDICT,
    SINGLE,
    container_has,
    container_value,
    environment_of,
    job_definition_value,
    one,
    one_has,
    policy_has,
    statement_like,
    text_of,
)


def test_name_and_discovery(dev_training):
    predict_id, _ = one(dev_training, JOB_DEFINITION, PREDICT)
    one_has(dev_training, JOB_DEFINITION, PREDICT,
            {"JobDefinitionName": "bert-batch-dev-bert-predict", "Type": "container"})
    dev_training.has_resource_properties("AWS::SSM::Parameter", {
        "Name": Naming("dev").parameter(discovery.JOB_DEFINITION_PREDICT), "Value": Match.exact({"Ref": predict_id})})
    dev_training.has_output("JobDefinitionBertPredict", {"Value": Match.exact({"Ref": predict_id})})


def test_command_is_the_predict_subcommand_and_the_contract_flags(dev_training):
    command = container_value(dev_training, PREDICT, "Command")
    assert command == prediction.job_command()
    assert command[0] == "predict"
    assert command[1::2] == [row.flag for row in prediction.JOB_PARAMETERS.values()]
    assert command[2::2] == [f"Ref::{name}" for name in prediction.JOB_PARAMETERS]


def test_parameter_defaults_are_the_rows_with_a_default(dev_training):
    # max_seq_length: "" = not given, so the container takes the run's from its training_args.json
    parameters = job_definition_value(dev_training, PREDICT, "Parameters")
    assert parameters == {"text_column": "sentence", "batch_size": "64", "max_seq_length": "", "precision": "auto"}
    assert parameters == jobdefs.predict_parameter_defaults()


def test_the_parameters_a_submit_must_always_send(dev_training):
    # Batch passes a Ref:: with neither a default nor a submitted value as its literal text.
    parameters = job_definition_value(dev_training, PREDICT, "Parameters")
    must_send = jobdefs.predict_parameters_without_default()
    assert must_send == ["model", "input_uri", "output_uri", "shards"]
    assert not set(must_send) & set(parameters)
    assert set(must_send) | set(parameters) == set(prediction.JOB_PARAMETERS)


def test_one_gpu_and_the_single_node_vcpus_and_memory(dev_training, dev):
    t = dev.config.training
    assert sorted(container_value(dev_training, PREDICT, "ResourceRequirements"), key=lambda r: r["Type"]) == [
        {"Type": "GPU", "Value": "1"},
        {"Type": "MEMORY", "Value": str(t.memory_mib_per_job)},
        {"Type": "VCPU", "Value": str(t.vcpus_per_job)},
    ]


@pytest.mark.parametrize("key", ["Image", "ExecutionRoleArn", "Volumes", "MountPoints", "Ulimits", "LinuxParameters"])
def test_same_image_execution_role_volumes_and_limits_as_training(dev_training, variant_training, key):
    """The job role differs: prediction runs as its own role (tests/stacks/test_training_iam.py)."""
    for template in (dev_training, variant_training):  # with and without FSx, asset and prebuilt image
        container_has(template, PREDICT, {key: Match.exact(container_value(template, SINGLE, key))})


def test_same_environment_as_training(dev_training, variant_training):
    for template in (dev_training, variant_training):
        assert environment_of(template, PREDICT) == environment_of(template, SINGLE)
    assert text_of(environment_of(dev_training, PREDICT)[job.ENV_ARTIFACTS_URI]) == "s3://<ref>"
    assert environment_of(variant_training, PREDICT)[job.ENV_FSX_MOUNT] == "/fsx"
    assert job.ENV_FSX_MOUNT not in environment_of(dev_training, PREDICT)  # dev: no FSx by default


def test_logs_go_to_the_job_log_group_under_their_own_stream_prefix(dev_training):
    log_group_id, _ = one(dev_training, "AWS::Logs::LogGroup", "JobLogs")
    container_has(dev_training, PREDICT, {"LogConfiguration": {"Options": {
        "awslogs-group": Match.exact({"Ref": log_group_id}),
        "awslogs-stream-prefix": "bert-predict",
    }}})


def test_retries_like_training(dev_training):
    one_has(dev_training, JOB_DEFINITION, PREDICT, {
        "RetryStrategy": Match.exact(job_definition_value(dev_training, SINGLE, "RetryStrategy"))})
    one_has(dev_training, JOB_DEFINITION, PREDICT, {"RetryStrategy": {"EvaluateOnExit": Match.exact([
        {"Action": "RETRY", "OnStatusReason": "Host EC2*"},
        {"Action": "RETRY", "OnExitCode": "75"},
        {"Action": "RETRY", "OnExitCode": "74"},
        {"Action": "EXIT", "OnReason": "*"},
    ])}})


def _timeout_minutes(minutes: int) -> dict:
    return {"Timeout": Match.exact({"AttemptDurationSeconds": minutes * 60})}


def test_timeout_from_its_own_config_key(dev_training, tracked_training):
    one_has(dev_training, JOB_DEFINITION, PREDICT, _timeout_minutes(360))
    one_has(tracked_training, JOB_DEFINITION, PREDICT, _timeout_minutes(90))
    # Training keeps its own.
    one_has(tracked_training, JOB_DEFINITION, SINGLE, _timeout_minutes(720))


def test_tags_are_propagated(dev_training):
    one_has(dev_training, JOB_DEFINITION, PREDICT, {"PropagateTags": True})


def test_the_fallback_may_resubmit_prediction_jobs_to_on_demand(dev_training):
    resources = Capture()
    policy_has(dev_training, "FallbackPolicy", statement_like("SubmitToOnDemand", Resource=resources))
    arns = [text_of(r) for r in resources.as_array()]
    definitions = sorted(arn.split(":job-definition/")[-1] for arn in arns if ":job-definition/" in arn)
    assert definitions == ["bert-batch-dev-bert-finetune:*", "bert-batch-dev-bert-predict:*"]
