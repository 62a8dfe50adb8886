"""GpuCompute (platform_constructs/batch_compute.py): the three compute environments and their security group."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Capture, Match

from tests.stacks.conftest import COMPUTE_ENVIRONMENT, compute_resources_has, one, one_has

AL2023_NVIDIA = "ECS_AL2023_NVIDIA"


def test_three_gpu_compute_environments_and_one_for_data_preparation(dev_training):
    dev_training.resource_count_is("AWS::Batch::ComputeEnvironment", 4)
    gpu = dev_training.find_resources("AWS::Batch::ComputeEnvironment", {"Properties": {"ComputeResources": {
        "Ec2Configuration": [{"ImageType": AL2023_NVIDIA}]}}})
    assert len(gpu) == 3


@pytest.mark.parametrize("env", ["ComputeGpuSpot", "ComputeGpuOnDemand", "ComputeMultiNode"])
def test_every_environment_uses_the_al2023_nvidia_image(dev_training, env):
    compute_resources_has(dev_training, env, {"Ec2Configuration": Match.exact([{"ImageType": AL2023_NVIDIA}])})


@pytest.mark.parametrize("env", ["ComputeGpuSpot", "ComputeGpuOnDemand", "ComputeMultiNode"])
def test_every_environment_scales_to_zero(dev_training, env):
    compute_resources_has(dev_training, env, {"MinvCpus": 0})


@pytest.mark.parametrize("env", ["ComputeGpuSpot", "ComputeGpuOnDemand", "ComputeMultiNode"])
def test_no_optimal_instance_classes(dev_training, env):
    # use_optimal_instance_classes=False: only the configured types, no "optimal".
    compute_resources_has(dev_training, env, {"InstanceTypes": Match.not_(Match.array_with(["optimal"]))})


@pytest.mark.parametrize("env", ["ComputeGpuSpot", "ComputeGpuOnDemand", "ComputeMultiNode"])
def test_environments_use_the_batch_service_linked_role(dev_training, env):
    one_has(dev_training, COMPUTE_ENVIRONMENT, env, {"ServiceRole": Match.absent()})


@pytest.mark.parametrize(
    "env, max_vcpus", [("ComputeGpuSpot", 64), ("ComputeGpuOnDemand", 48), ("ComputeMultiNode", 96)]
)
def test_max_vcpus_from_config_dev(dev_training, env, max_vcpus):
    compute_resources_has(dev_training, env, {"MaxvCpus": max_vcpus})


@pytest.mark.parametrize(
    "env, max_vcpus", [("ComputeGpuSpot", 256), ("ComputeGpuOnDemand", 128), ("ComputeMultiNode", 384)]
)
def test_max_vcpus_from_config_prod(prod_training, env, max_vcpus):
    compute_resources_has(prod_training, env, {"MaxvCpus": max_vcpus})


def test_spot_environment(dev_training, dev):
    assert len(dev.config.training.gpu_instance_types) > 1
    compute_resources_has(dev_training, "ComputeGpuSpot", {
        "Type": "SPOT",
        "AllocationStrategy": "SPOT_PRICE_CAPACITY_OPTIMIZED",
        "InstanceTypes": dev.config.training.gpu_instance_types,
    })


def test_on_demand_environment_has_the_same_types(dev_training, dev):
    compute_resources_has(dev_training, "ComputeGpuOnDemand", {
        "Type": "EC2", "InstanceTypes": dev.config.training.gpu_instance_types})


def test_multi_node_environment_is_on_demand_in_one_az_with_a_placement_group(prod_training, prod):
    assert prod.config.training.multinode_instance_types == ["g5.12xlarge"]
    pg_id, _ = one(prod_training, "AWS::EC2::PlacementGroup", "ComputeMultiNodePlacementGroup")
    compute_resources_has(prod_training, "ComputeMultiNode", {
        "Type": "EC2",
        "InstanceTypes": ["g5.12xlarge"],
        "Subnets": [Match.any_value()],
        "PlacementGroup": Match.exact({"Fn::GetAtt": [pg_id, "GroupName"]}),
    })


def test_gpu_environments_span_every_az(prod_training):
    for env in ("ComputeGpuSpot", "ComputeGpuOnDemand"):
        compute_resources_has(prod_training, env, {"Subnets": [Match.any_value()] * 3})


def test_placement_group_is_a_cluster(dev_training):
    dev_training.has_resource_properties("AWS::EC2::PlacementGroup", {"Strategy": "cluster"})


@pytest.mark.parametrize(
    "env, template",
    [
        ("ComputeGpuSpot", "ComputeGpuLaunchTemplate"),
        ("ComputeGpuOnDemand", "ComputeGpuLaunchTemplate"),
        ("ComputeMultiNode", "ComputeMultiNodeLaunchTemplate"),
    ],
)
def test_environments_pin_their_launch_template_version(dev_training, env, template):
    lt_id, _ = one(dev_training, "AWS::EC2::LaunchTemplate", template)
    compute_resources_has(dev_training, env, {"LaunchTemplate": Match.exact({
        "LaunchTemplateId": {"Ref": lt_id},
        "Version": {"Fn::GetAtt": [lt_id, "LatestVersionNumber"]},
    })})


def test_environments_use_the_compute_security_group(dev_training):
    for env in ("ComputeGpuSpot", "ComputeGpuOnDemand", "ComputeMultiNode"):
        compute_resources_has(dev_training, env, {"SecurityGroupIds": [Match.any_value()]})


def test_efa_security_group_admits_all_traffic_within_itself(dev_network):
    # EFA needs all traffic in and out between members of the group (Network stack).
    group_id = [
        k for k in dev_network.find_resources("AWS::EC2::SecurityGroup") if k.startswith("SecurityGroupsCompute")
    ][0]
    dev_network.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {
            "IpProtocol": "-1",
            "GroupId": {"Fn::GetAtt": [group_id, "GroupId"]},
            "SourceSecurityGroupId": {"Fn::GetAtt": [group_id, "GroupId"]},
        },
    )
    dev_network.has_resource_properties(
        "AWS::EC2::SecurityGroupEgress",
        {
            "IpProtocol": "-1",
            "GroupId": {"Fn::GetAtt": [group_id, "GroupId"]},
            "DestinationSecurityGroupId": {"Fn::GetAtt": [group_id, "GroupId"]},
        },
    )


def test_single_node_environments_include_multi_gpu_types_by_default(dev_training, dev):
    """`--gpus 4` must place on one node: 4-GPU sizes beside the 1-GPU ones, in Spot and On-Demand,
    and the On-Demand cap holds one of them (48 vCPUs)."""
    four_gpu = {"g5.12xlarge", "g6.12xlarge", "g6e.12xlarge"}
    assert four_gpu <= set(dev.config.training.gpu_instance_types)
    for env in ("ComputeGpuSpot", "ComputeGpuOnDemand"):
        types, max_vcpus = Capture(), Capture()
        compute_resources_has(dev_training, env, {"InstanceTypes": types, "MaxvCpus": max_vcpus})
        assert four_gpu <= set(types.as_array()) and "g5.xlarge" in types.as_array()
        assert max_vcpus.as_number() >= 48
