"""GpuCompute (platform_constructs/batch_compute.py): the three compute environments and their security group."""

from __future__ import annotations

import pytest

from tests.stacks.conftest import (
    environment,
    one,
)

AL2023_NVIDIA = "ECS_AL2023_NVIDIA"


def test_three_gpu_compute_environments_and_one_for_data_preparation(dev_training):
    dev_training.resource_count_is("AWS::Batch::ComputeEnvironment", 4)
    gpu = dev_training.find_resources("AWS::Batch::ComputeEnvironment", {"Properties": {"ComputeResources": {
        "Ec2Configuration": [{"ImageType": AL2023_NVIDIA}]}}})
    assert len(gpu) == 3


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
    "env, max_vcpus", [("ComputeGpuSpot", 64), ("ComputeGpuOnDemand", 48), ("ComputeMultiNode", 96)]
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
    assert (
        resources_["InstanceTypes"] == ["g5.12xlarge", "p4d.24xlarge"] == prod.config.training.multinode_instance_types
    )
    assert len(resources_["Subnets"]) == 1
    pg_id, _ = one(prod_training, "AWS::EC2::PlacementGroup", "ComputeMultiNodePlacementGroup")
    assert resources_["PlacementGroup"] == {"Fn::GetAtt": [pg_id, "GroupName"]}


def test_gpu_environments_span_every_az(prod_training):
    for env in ("ComputeGpuSpot", "ComputeGpuOnDemand"):
        assert len(environment(prod_training, env)["ComputeResources"]["Subnets"]) == 3


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
    assert environment(dev_training, env)["ComputeResources"]["LaunchTemplate"] == {
        "LaunchTemplateId": {"Ref": lt_id},
        "Version": {"Fn::GetAtt": [lt_id, "LatestVersionNumber"]},
    }


def test_environments_use_the_compute_security_group(dev_training):
    for env in ("ComputeGpuSpot", "ComputeGpuOnDemand", "ComputeMultiNode"):
        assert len(environment(dev_training, env)["ComputeResources"]["SecurityGroupIds"]) == 1


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
        resources_ = environment(dev_training, env)["ComputeResources"]
        assert four_gpu <= set(resources_["InstanceTypes"]) and "g5.xlarge" in resources_["InstanceTypes"]
        assert resources_["MaxvCpus"] >= 48
