"""The data preparation construct: a Spot CPU environment that scales to zero, the `prepare`
queue, the `bert-prepare` job definition built from the store contract, and a role that can write
tokenized stores and nothing else."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Capture, Match

from bertbatch_contract import job, layout, store
from stacks.config import PrepareConfig

from .conftest import (
    JOB_DEFINITION,
    as_list,
    container_value,
    job_definition_value,
    one,
    one_has,
    statements,
    text_of,
    user_data,
)

PREPARE = "DataPreparationJobDefinition"


@pytest.mark.parametrize(("template", "max_vcpus"), [("dev_training", 32), ("prod_training", 128)])
def test_a_spot_cpu_environment_that_costs_nothing_idle(request, template, max_vcpus):
    request.getfixturevalue(template).has_resource_properties("AWS::Batch::ComputeEnvironment", {
        "ComputeEnvironmentName": Match.string_like_regexp(r"^bert-batch-(dev|prod)-ce-cpu-spot$"),
        "Type": "managed",
        "ServiceRole": Match.absent(),  # the Batch service-linked role
        "ComputeResources": Match.object_like({
            "Type": "SPOT",
            "AllocationStrategy": "SPOT_PRICE_CAPACITY_OPTIMIZED",
            "InstanceTypes": PrepareConfig().instance_types,
            "MinvCpus": 0,
            "MaxvCpus": max_vcpus,
            "Ec2Configuration": [{"ImageType": "ECS_AL2023"}],  # no GPU driver image for CPUs
        }),
    })


def test_spot_notices_reach_the_container_as_sigterm(dev_training):
    data = user_data(dev_training, "DataPreparationLaunchTemplate")
    assert "Content-Type: multipart/mixed" in data  # Batch requires MIME multipart user data
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in data


def test_the_queue_runs_on_the_cpu_environment_and_cancels_what_cannot_be_placed(dev_training):
    environment, _ = one(dev_training, "AWS::Batch::ComputeEnvironment", "DataPreparationCpuSpot")
    dev_training.has_resource_properties("AWS::Batch::JobQueue", {
        "JobQueueName": "bert-batch-dev-prepare",
        "ComputeEnvironmentOrder": [{"ComputeEnvironment": {"Fn::GetAtt": [environment, "ComputeEnvironmentArn"]},
                                     "Order": 1}],
        "JobStateTimeLimitActions": Match.array_with([Match.object_like({
            "Action": "CANCEL", "Reason": "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", "State": "RUNNABLE"})]),
    })


def test_the_job_definition_is_the_contracts_command_on_cpus(dev_training):
    command = container_value(dev_training, PREPARE, "Command")
    assert command == store.job_command()
    assert command[0] == store.SUBCOMMAND
    resources = {r["Type"]: r["Value"] for r in container_value(dev_training, PREPARE, "ResourceRequirements")}
    assert resources == {"VCPU": "4", "MEMORY": "6144"}  # no GPU
    # Every Ref:: has a default, so a plain `aws batch submit-job` prepares the default dataset.
    parameters = job_definition_value(dev_training, PREPARE, "Parameters")
    assert set(parameters) == set(store.JOB_PARAMETERS)
    assert text_of(parameters["input_uri"]) == "s3://<ref>/" + layout.DEFAULT_TRAIN_KEY
    assert text_of(parameters["store_uri"]) == "s3://<ref>/" + layout.prepared_prefix("train")
    assert text_of(parameters["model"]) == "s3://<ref>/models/bert-base-uncased/"
    names = {e["Name"] for e in container_value(dev_training, PREPARE, "Environment")}
    assert names == {job.ENV_PROFILE, job.ENV_DATA_URI, job.ENV_ARTIFACTS_URI}


def test_spot_reclaims_and_storage_errors_are_retried(dev_training):
    rules = job_definition_value(dev_training, PREPARE, "RetryStrategy")["EvaluateOnExit"]
    for rule in (
        {"Action": "RETRY", "OnStatusReason": "Host EC2*"},
        {"Action": "RETRY", "OnExitCode": str(job.EXIT_STORAGE_UNAVAILABLE)},
        {"Action": "RETRY", "OnExitCode": str(job.EXIT_INTERRUPTED)},  # prepare's SIGTERM exit
    ):
        one_has(dev_training, JOB_DEFINITION, PREPARE, {"RetryStrategy": {"EvaluateOnExit": Match.array_with([rule])}})
    assert rules[-1] == {"Action": "EXIT", "OnReason": "*"}
    one_has(dev_training, JOB_DEFINITION, PREPARE, {"RetryStrategy": {"Attempts": 5}})


def test_the_job_runs_as_the_prepare_role(dev_training):
    role = Capture()
    dev_training.has_resource_properties("AWS::Batch::JobDefinition", {
        "JobDefinitionName": "bert-batch-dev-bert-prepare",
        "ContainerProperties": Match.object_like({"JobRoleArn": {"Fn::GetAtt": [role, "Arn"]}}),
    })
    assert role.as_string().startswith("RolesPrepareRole")


def test_the_prepare_role_writes_tokenized_stores_and_nothing_else(dev_training):
    found = statements(dev_training, "RolesPreparePolicy")
    writes = [s for s in found if any(a in as_list(s["Action"]) for a in ("s3:PutObject", "s3:DeleteObject"))]
    assert [s["Sid"] for s in writes] == ["WriteTokenizedStores"]
    (resource,) = as_list(writes[0]["Resource"])
    assert text_of(resource).endswith("/" + layout.PREPARED_PREFIX + "*")
    for s in found:
        assert "*" not in as_list(s["Action"]) and "s3:*" not in as_list(s["Action"])
        assert "*" not in as_list(s["Resource"])
    reads = {s["Sid"]: text_of(as_list(s["Resource"])[0]) for s in found if s["Action"] == "s3:GetObject"}
    assert reads == {"ReadDatasets": "arn:<ref>:s3:::<ref>/" + layout.DATASETS_PREFIX + "*",
                     "ReadStagedModels": "arn:<ref>:s3:::<ref>/" + layout.MODELS_PREFIX + "*"}
