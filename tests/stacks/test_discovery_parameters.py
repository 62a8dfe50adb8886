"""DiscoveryParameters (platform_constructs/discovery_params.py): SSM parameters and outputs."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Capture, Match

from bertbatch_contract import discovery, metrics
from bertbatch_contract.naming import Naming
from tests.stacks.conftest import one, value_of

PARAMETER = "AWS::SSM::Parameter"
STACK_OUTPUT = Match.object_like({"Fn::GetStackOutput": Match.any_value()})


def _published(template, key: str, value, profile: str = "dev") -> None:
    template.has_resource_properties(PARAMETER, {"Name": Naming(profile).parameter(key), "Value": value})


@pytest.mark.parametrize("key", sorted(discovery.KEYS))
def test_every_discovery_key_is_an_ssm_parameter(dev_training, key):
    dev_training.has_resource_properties(
        "AWS::SSM::Parameter",
        {
            "Name": Naming("dev").parameter(key),
            "Type": "String",
        },
    )


def test_discovery_values(dev_training):
    queues = {
        discovery.QUEUE_SPOT_FIRST: "bert-batch-dev-spot-first",
        discovery.QUEUE_ON_DEMAND: "bert-batch-dev-on-demand",
        discovery.QUEUE_MULTI_NODE: "bert-batch-dev-multi-node",
        discovery.QUEUE_PREPARE: "bert-batch-dev-prepare",
    }
    dev_training.resource_count_is("AWS::Batch::JobQueue", len(queues))
    for key, name in queues.items():
        _published(dev_training, key, name)
        dev_training.has_resource_properties("AWS::Batch::JobQueue", {"JobQueueName": name})
    for key, logical_prefix in (
        (discovery.JOB_DEFINITION_SINGLE, "JobDefinitionsSingle"),
        (discovery.JOB_DEFINITION_MULTI_NODE, "JobDefinitionsMultiNode"),
        (discovery.JOB_DEFINITION_PREDICT, "JobDefinitionsPredict"),
        (discovery.JOB_DEFINITION_PREPARE, "DataPreparationJobDefinition"),
    ):
        job_definition, _ = one(dev_training, "AWS::Batch::JobDefinition", logical_prefix)
        _published(dev_training, key, Match.exact({"Ref": job_definition}))
    assert discovery.NOT_CONFIGURED == "none"
    _published(dev_training, discovery.MLFLOW_TRACKING_URI, discovery.NOT_CONFIGURED)
    log_group, _ = one(dev_training, "AWS::Logs::LogGroup", "JobLogs")
    _published(dev_training, discovery.LOG_GROUP, Match.exact({"Ref": log_group}))
    _published(dev_training, discovery.FSX_MOUNT_PATH, "none")  # dev: no FSx by default
    _published(dev_training, discovery.METRICS_NAMESPACE, metrics.DEFAULT_NAMESPACE)
    _published(dev_training, discovery.DATA_BUCKET, STACK_OUTPUT)
    _published(dev_training, discovery.ARTIFACTS_BUCKET, STACK_OUTPUT)


def test_discovery_values_are_outputs_too(dev_training):
    outputs = dev_training.to_json()["Outputs"]
    assert {
        "QueueSpotFirst",
        "QueueOnDemand",
        "QueueMultiNode",
        "JobDefinitionBertFinetune",
        "JobDefinitionBertFinetuneMultinode",
        "BucketData",
        "BucketArtifacts",
        "LogGroup",
        "FsxMountPath",
        "MetricsNamespace",
    } <= set(outputs)


def test_prod_parameters_live_under_the_prod_prefix(prod_training):
    assert prod_training.find_resources(PARAMETER)
    prod_training.all_resources_properties(PARAMETER, {"Name": Match.string_like_regexp("^/bert-batch/prod/")})


def test_data_stack_outputs_used_for_bucket_names_exist(dev_data):
    assert {"DataBucketName", "ArtifactsBucketName"} <= set(dev_data.to_json()["Outputs"])


def test_without_fsx_discovery_says_none(dev_training):
    _published(dev_training, discovery.FSX_MOUNT_PATH, "none")


def _value(template, key: str, profile: str) -> str:
    value = Capture()
    _published(template, key, value, profile)
    return value_of(value)


def test_internet_egress_follows_the_nat_gateways(dev_training, variant_training):
    _published(dev_training, discovery.INTERNET_EGRESS, "false")  # no NAT gateway in the dev profile
    _published(variant_training, discovery.INTERNET_EGRESS, "true")  # the variant has one


def test_internet_egress_of_an_existing_vpc_comes_from_config():
    from tests.stacks.conftest import config_for

    existing = {"vpc_id": "vpc-0123456789abcdef0", "availability_zones": ["us-east-1a"],
                "private_subnet_ids": ["subnet-0123456789abcdef0"]}
    assert config_for("dev", **{"network.existing_vpc": json.dumps(existing)}).internet_egress is False
    with_egress = {**existing, "internet_egress": True}
    assert config_for("dev", **{"network.existing_vpc": json.dumps(with_egress)}).internet_egress is True


@pytest.mark.parametrize(
    "queue, environments",
    [
        ("spot-first", [("gpu-spot", True), ("gpu-on-demand", False)]),
        ("on-demand", [("gpu-on-demand", False)]),
        ("multi-node", [("multi-node", False)]),
    ],
)
def test_capacity_of_each_queue_names_its_environments_in_order(prod_training, prod, queue, environments):
    t = prod.config.training
    caps = {"gpu-spot": t.spot_max_vcpus, "gpu-on-demand": t.on_demand_max_vcpus, "multi-node": t.multinode_max_vcpus}
    types = {"gpu-spot": t.gpu_instance_types, "gpu-on-demand": t.gpu_instance_types,
             "multi-node": t.multinode_instance_types}
    value = _value(prod_training, discovery.capacity_key(queue), "prod")
    assert discovery.parse_capacity(value) == [
        discovery.ComputeCapacity(
            name=Naming("prod").resource(f"ce-{kind}"),
            instance_types=tuple(types[kind]),
            max_vcpus=caps[kind],
            spot=spot,
        )
        for kind, spot in environments
    ]
    # Every compute environment named here exists in the template with that cap.
    for env in discovery.parse_capacity(value):
        prod_training.has_resource_properties("AWS::Batch::ComputeEnvironment", {
            "ComputeEnvironmentName": env.name,
            "ComputeResources": {"MaxvCpus": env.max_vcpus, "InstanceTypes": list(env.instance_types)},
        })


def test_queue_kinds_of_the_contract_are_the_stack_queues():
    from platform_constructs.batch_compute import QUEUE_ENVIRONMENTS

    assert tuple(QUEUE_ENVIRONMENTS) == discovery.QUEUE_KINDS
    with pytest.raises(ValueError, match="unknown queue kind"):
        discovery.capacity_key("gpu")
    with pytest.raises(ValueError, match="malformed capacity value"):
        discovery.parse_capacity('{"compute_environments": [{"name": "x"}]}')
