"""The test platform built from the synthesized templates is what the templates declare, and the
discovery parameters point at resources that exist."""

from __future__ import annotations

import json

import pytest

from bertbatch_contract import discovery, hyperparameters
from bertbatch_contract.naming import Naming
from tests.platform_from_templates import Deployed, Resolver, deploy, stack_name, synthesized
from tests.submit_job_rules import node_range

from .conftest import client


@pytest.fixture
def deployed(aws) -> Deployed:
    return deploy()


def unresolved(value) -> list[str]:
    """Intrinsics left anywhere in a value."""
    if isinstance(value, list):
        return [found for v in value for found in unresolved(v)]
    if isinstance(value, dict):
        here = [k for k in value if k == "Ref" or k.startswith("Fn::")]
        return here + [found for v in value.values() for found in unresolved(v)]
    return []


def test_every_discovery_key_is_published_and_points_at_something(deployed):
    names = deployed.names
    assert set(discovery.KEYS) <= set(names)
    batch = client("batch")
    queues = batch.describe_job_queues(jobQueues=[names[k] for k in jobs_queue_keys()])["jobQueues"]
    assert sorted(q["jobQueueName"] for q in queues) == sorted(names[k] for k in jobs_queue_keys())
    for key in (discovery.JOB_DEFINITION_SINGLE, discovery.JOB_DEFINITION_MULTI_NODE):
        (definition,) = batch.describe_job_definitions(jobDefinitions=[names[key]])["jobDefinitions"]
        assert definition["status"] == "ACTIVE"
    s3 = client("s3")
    for key in (discovery.DATA_BUCKET, discovery.ARTIFACTS_BUCKET):
        s3.head_bucket(Bucket=names[key])
    groups = client("logs").describe_log_groups(logGroupNamePrefix=names[discovery.LOG_GROUP])["logGroups"]
    assert [g["logGroupName"] for g in groups] == [names[discovery.LOG_GROUP]]


def jobs_queue_keys() -> tuple[str, ...]:
    return discovery.QUEUE_SPOT_FIRST, discovery.QUEUE_ON_DEMAND, discovery.QUEUE_MULTI_NODE


def test_nothing_sent_to_moto_is_left_unresolved(deployed):
    declared = deployed.declared
    for group in (declared.compute_environments, declared.job_queues, declared.job_definitions, declared.budgets):
        assert group and unresolved(group) == []
    assert unresolved(declared.parameters) == []


def test_job_definitions_in_moto_are_the_templates(deployed):
    batch = client("batch")
    for key in (discovery.JOB_DEFINITION_SINGLE, discovery.JOB_DEFINITION_MULTI_NODE):
        arn = deployed.names[key]
        (registered,) = batch.describe_job_definitions(jobDefinitions=[arn])["jobDefinitions"]
        declared = deployed.job_definition(arn)
        assert registered["parameters"] == declared["parameters"]
        assert registered["timeout"] == declared["timeout"]
        assert registered["retryStrategy"]["attempts"] == declared["retryStrategy"]["attempts"]
        data_bucket = deployed.names[discovery.DATA_BUCKET]
        assert registered["parameters"]["train_uri"] == f"s3://{data_bucket}/datasets/train.tsv"
        artifacts = deployed.names[discovery.ARTIFACTS_BUCKET]
        assert registered["parameters"]["model"] == f"s3://{artifacts}/models/bert-base-uncased/"
        assert {k: v for k, v in registered["parameters"].items() if not k.endswith("_uri")} == \
            {**hyperparameters.parameter_defaults(), "model": registered["parameters"]["model"]}
    single = batch.describe_job_definitions(jobDefinitions=[deployed.names[discovery.JOB_DEFINITION_SINGLE]])
    container = single["jobDefinitions"][0]["containerProperties"]
    assert container["command"] == hyperparameters.job_command()
    assert container["jobRoleArn"].startswith("arn:aws:iam::123456789012:role/BertBatch-dev-Training-")
    artifacts = {e["name"]: e["value"] for e in container["environment"]}["ARTIFACTS_URI"]
    assert artifacts == f"s3://{deployed.names[discovery.ARTIFACTS_BUCKET]}"


def test_moto_drops_node_properties_so_the_side_record_keeps_them(deployed):
    arn = deployed.names[discovery.JOB_DEFINITION_MULTI_NODE]
    (registered,) = client("batch").describe_job_definitions(jobDefinitions=[arn])["jobDefinitions"]
    assert "nodeProperties" not in registered  # the moto fact this record exists for
    nodes = deployed.job_definition(arn)["nodeProperties"]
    assert nodes["mainNode"] == 0 and nodes["numNodes"] >= 2
    (node_range_props,) = nodes["nodeRangeProperties"]
    # `submit --nodes N` overrides numNodes: AWS allows that only for an open upper bound
    assert node_range(node_range_props["targetNodes"])[1] is None, node_range_props["targetNodes"]
    assert node_range_props["container"]["command"] == hyperparameters.job_command()


def test_compute_environments_and_queues_are_the_templates(deployed):
    batch = client("batch")
    environments = {ce["computeEnvironmentName"]: ce for ce in batch.describe_compute_environments()[
        "computeEnvironments"]}
    assert set(environments) == set(deployed.declared.compute_environments)
    for name, declared in deployed.declared.compute_environments.items():
        resources = environments[name]["computeResources"]
        assert resources["maxvCpus"] == declared["computeResources"]["maxvCpus"]
        assert resources["instanceTypes"] == declared["computeResources"]["instanceTypes"]
        assert environments[name]["status"] == "VALID"
    (spot_first,) = batch.describe_job_queues(jobQueues=[deployed.names[discovery.QUEUE_SPOT_FIRST]])["jobQueues"]
    order = [environments_by_arn(environments)[o["computeEnvironment"]] for o in sorted(
        spot_first["computeEnvironmentOrder"], key=lambda o: o["order"])]
    assert [ce["computeResources"]["type"] for ce in order] == ["SPOT", "EC2"]
    assert deployed.declared.left_out[order[0]["computeEnvironmentName"]] == [
        "replaceComputeEnvironment", "updatePolicy"]  # update-only properties, not CreateComputeEnvironment's


def environments_by_arn(environments: dict) -> dict:
    return {ce["computeEnvironmentArn"]: ce for ce in environments.values()}


def test_ssm_values_match_the_stack_outputs(deployed):
    """The CloudFormation outputs and the SSM parameters publish the same names."""
    stack = stack_name("dev", "Training")
    outputs = deployed.templates[stack]["Outputs"]
    naming = Naming("dev")
    for key in (discovery.QUEUE_MULTI_NODE, discovery.DATA_BUCKET, discovery.JOB_DEFINITION_SINGLE):
        output_id = "".join(part.capitalize() for part in key.replace("/", "-").split("-"))
        assert deployed.resolver.resolve(stack, outputs[output_id]["Value"]) == deployed.names[key]
        assert deployed.declared.parameters[naming.parameter(key)] == deployed.names[key]


def test_resolver_intrinsics():
    templates = {"A": {"Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "b"}}},
                       "Outputs": {"Out": {"Value": {"Ref": "B"}, "Export": {"Name": "a-out"}}}}}
    resolver = Resolver(templates, "eu-west-1", {})
    assert resolver.resolve("A", {"Fn::Sub": ["${AWS::Region}/${B}/${B.Arn}/${X}", {"X": "x"}]}) == \
        "eu-west-1/b/arn:aws:s3:::b/x"
    assert resolver.resolve("A", {"Fn::Select": [1, {"Fn::GetAZs": ""}]}) == "eu-west-1b"
    assert resolver.resolve("A", {"Fn::Join": ["-", ["x", {"Fn::ImportValue": "a-out"}]]}) == "x-b"
    assert resolver.resolve("A", {"Fn::GetStackOutput": {"StackName": "A", "OutputName": "Out"}}) == "b"
    with pytest.raises(NotImplementedError, match="Fn::If"):
        resolver.resolve("A", {"Fn::If": ["c", 1, 2]})


def test_synthesized_once_per_profile():
    assert synthesized("dev") is synthesized("dev")
    assert json.dumps(synthesized("dev")).count("Fn::GetStackOutput") > 0  # the cross-stack form resolved above
