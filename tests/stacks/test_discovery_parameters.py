"""DiscoveryParameters (platform_constructs/discovery_params.py): SSM parameters and outputs."""

from __future__ import annotations

import json

import pytest

from bertbatch_contract import discovery, metrics
from bertbatch_contract.naming import Naming
from tests.stacks.conftest import (
    one,
    resources,
)


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
    params = {
        r["Properties"]["Name"]: r["Properties"]["Value"]
        for r in resources(dev_training, "AWS::SSM::Parameter").values()
    }
    value = lambda key: params[Naming("dev").parameter(key)]  # noqa: E731
    queue_names = {r["Properties"]["JobQueueName"] for r in resources(dev_training, "AWS::Batch::JobQueue").values()}
    assert value(discovery.QUEUE_SPOT_FIRST) == "bert-batch-dev-spot-first"
    assert value(discovery.QUEUE_ON_DEMAND) == "bert-batch-dev-on-demand"
    assert value(discovery.QUEUE_MULTI_NODE) == "bert-batch-dev-multi-node"
    assert value(discovery.QUEUE_PREPARE) == "bert-batch-dev-prepare"
    assert queue_names == {"bert-batch-dev-spot-first", "bert-batch-dev-on-demand", "bert-batch-dev-multi-node",
                           "bert-batch-dev-prepare"}
    single, _ = one(dev_training, "AWS::Batch::JobDefinition", "JobDefinitionsSingle")
    multi, _ = one(dev_training, "AWS::Batch::JobDefinition", "JobDefinitionsMultiNode")
    assert value(discovery.JOB_DEFINITION_SINGLE) == {"Ref": single}
    assert value(discovery.JOB_DEFINITION_MULTI_NODE) == {"Ref": multi}
    predict, _ = one(dev_training, "AWS::Batch::JobDefinition", "JobDefinitionsPredict")
    assert value(discovery.JOB_DEFINITION_PREDICT) == {"Ref": predict}
    prepare, _ = one(dev_training, "AWS::Batch::JobDefinition", "DataPreparationJobDefinition")
    assert value(discovery.JOB_DEFINITION_PREPARE) == {"Ref": prepare}
    assert value(discovery.MLFLOW_TRACKING_URI) == discovery.NOT_CONFIGURED == "none"
    log_group, _ = one(dev_training, "AWS::Logs::LogGroup", "JobLogs")
    assert value(discovery.LOG_GROUP) == {"Ref": log_group}
    assert value(discovery.FSX_MOUNT_PATH) == "none"  # dev: no FSx by default
    assert value(discovery.METRICS_NAMESPACE) == metrics.DEFAULT_NAMESPACE
    assert "Fn::GetStackOutput" in value(discovery.DATA_BUCKET)
    assert "Fn::GetStackOutput" in value(discovery.ARTIFACTS_BUCKET)


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
    names = [r["Properties"]["Name"] for r in resources(prod_training, "AWS::SSM::Parameter").values()]
    assert names and all(n.startswith("/bert-batch/prod/") for n in names)


def test_data_stack_outputs_used_for_bucket_names_exist(dev_data):
    assert {"DataBucketName", "ArtifactsBucketName"} <= set(dev_data.to_json()["Outputs"])


def test_without_fsx_discovery_says_none(dev_training):
    params = {
        r["Properties"]["Name"]: r["Properties"]["Value"]
        for r in resources(dev_training, "AWS::SSM::Parameter").values()
    }
    assert params[Naming("dev").parameter(discovery.FSX_MOUNT_PATH)] == "none"


def _params(template) -> dict[str, str]:
    return {
        r["Properties"]["Name"]: r["Properties"]["Value"] for r in resources(template, "AWS::SSM::Parameter").values()
    }


def test_internet_egress_follows_the_nat_gateways(dev_training, variant_training):
    key = Naming("dev").parameter(discovery.INTERNET_EGRESS)
    assert _params(dev_training)[key] == "false"  # no NAT gateway in the dev profile
    assert _params(variant_training)[key] == "true"  # the variant has one


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
    value = _params(prod_training)[Naming("prod").parameter(discovery.capacity_key(queue))]
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
    by_name = {
        r["Properties"]["ComputeEnvironmentName"]: r["Properties"]["ComputeResources"]
        for r in resources(prod_training, "AWS::Batch::ComputeEnvironment").values()
    }
    for env in discovery.parse_capacity(value):
        assert by_name[env.name]["MaxvCpus"] == env.max_vcpus
        assert by_name[env.name]["InstanceTypes"] == list(env.instance_types)


def test_queue_kinds_of_the_contract_are_the_stack_queues():
    from platform_constructs.batch_compute import QUEUE_ENVIRONMENTS

    assert tuple(QUEUE_ENVIRONMENTS) == discovery.QUEUE_KINDS
    with pytest.raises(ValueError, match="unknown queue kind"):
        discovery.capacity_key("gpu")
    with pytest.raises(ValueError, match="malformed capacity value"):
        discovery.parse_capacity('{"compute_environments": [{"name": "x"}]}')
