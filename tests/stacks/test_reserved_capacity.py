"""Reserved capacity: a compute environment and queue per training.reservations entry, whose
launch template targets the reservation (dev_variant: a Capacity Block and an ODCR group)."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Capture, Match

from bertbatch_contract import discovery
from stacks.config import ConfigError
from tests.stacks.conftest import (
    CAPACITY_BLOCK_ID,
    LAUNCH_TEMPLATE,
    ODCR_GROUP_ARN,
    RESERVATIONS,
    config_for,
    one_has,
    user_data,
)


def launch_template_of(template, environment_name: str) -> str:
    """The logical id of the launch template of the compute environment named `environment_name`."""
    logical_id = Capture()
    template.has_resource_properties("AWS::Batch::ComputeEnvironment", {
        "ComputeEnvironmentName": environment_name,
        "ComputeResources": {"LaunchTemplate": {"LaunchTemplateId": {"Ref": logical_id}}},
    })
    return logical_id.as_string()


def launch_template_has(template, environment_name: str, data: dict) -> None:
    one_has(template, LAUNCH_TEMPLATE, launch_template_of(template, environment_name), {"LaunchTemplateData": data})


def test_a_capacity_block_launch_template_targets_the_block_by_id(variant_training):
    launch_template_has(variant_training, "bert-batch-dev-ce-reserved-p5", {
        "CapacityReservationSpecification": Match.exact({
            "CapacityReservationTarget": {"CapacityReservationId": CAPACITY_BLOCK_ID}}),
        "InstanceMarketOptions": Match.exact({"MarketType": "capacity-block"}),
    })


def test_an_odcr_launch_template_targets_the_group_and_stays_on_demand(variant_training):
    launch_template_has(variant_training, "bert-batch-dev-ce-reserved-g6-odcr", {
        "CapacityReservationSpecification": Match.exact({
            "CapacityReservationTarget": {"CapacityReservationResourceGroupArn": ODCR_GROUP_ARN}}),
        "InstanceMarketOptions": Match.absent(),
    })


@pytest.mark.parametrize("name", ["p5", "g6-odcr"])
def test_reserved_launch_templates_keep_the_gpu_user_data_and_encryption(variant_training, name):
    environment = f"bert-batch-dev-ce-reserved-{name}"
    launch_template_has(variant_training, environment, {
        "BlockDeviceMappings": [{"Ebs": {"Encrypted": True}}],  # the root volume, the only one
        "MetadataOptions": Match.exact({"HttpPutResponseHopLimit": 1, "HttpTokens": "required"}),
    })
    text = user_data(variant_training, launch_template_of(variant_training, environment))
    assert "ECS_CONTAINER_STOP_TIMEOUT=" in text and "instance-life-cycle" in text


@pytest.mark.parametrize(("name", "instance_type", "max_vcpus"), [("p5", "p5.48xlarge", 192),
                                                                 ("g6-odcr", "g6.12xlarge", 96)])
def test_reserved_environment_is_on_demand_best_fit_progressive_with_the_reserved_type(
        variant_training, name, instance_type, max_vcpus):
    variant_training.has_resource_properties("AWS::Batch::ComputeEnvironment", {
        "ComputeEnvironmentName": f"bert-batch-dev-ce-reserved-{name}",
        "ServiceRole": Match.absent(),
        "ComputeResources": Match.object_like({
            "Type": "EC2",
            "AllocationStrategy": "BEST_FIT_PROGRESSIVE",
            "InstanceTypes": [instance_type],
            "MinvCpus": 0,
            "MaxvCpus": max_vcpus,
            "LaunchTemplate": {"LaunchTemplateId": Match.any_value(), "Version": Match.any_value()},
        }),
    })


def test_reserved_environment_is_in_the_reservation_subnet_only(variant_training):
    subnets = Capture()
    variant_training.has_resource_properties("AWS::Batch::ComputeEnvironment", {
        "ComputeEnvironmentName": "bert-batch-dev-ce-reserved-p5",
        "ComputeResources": Match.object_like({"Subnets": subnets}),
    })
    (subnet,) = subnets.as_array()
    assert "Subnet2" in json.dumps(subnet)  # subnet_index 1: the second private subnet


@pytest.mark.parametrize("name", ["p5", "g6-odcr"])
def test_reserved_queue_has_the_fair_share_policy_and_only_unplaceable_cancellations(variant_training, name):
    (policy_id,) = variant_training.find_resources("AWS::Batch::SchedulingPolicy")
    actions = Capture()
    variant_training.has_resource_properties("AWS::Batch::JobQueue", {
        "JobQueueName": f"bert-batch-dev-reserved-{name}",
        "SchedulingPolicyArn": {"Fn::GetAtt": [policy_id, "Arn"]},
        "JobStateTimeLimitActions": actions,
    })
    # a job waiting for the block's window or a free reserved instance waits on purpose
    assert {a["Reason"] for a in actions.as_array()} == {
        "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"}


def test_reservations_and_their_queues_are_published(variant_training):
    values = {}
    for key in ["reservations", "queue/reserved/p5", "capacity/reserved/p5"]:
        value = Capture()
        variant_training.has_resource_properties("AWS::SSM::Parameter", {
            "Name": f"/bert-batch/dev/{key}", "Value": value})
        values[key] = value.as_string()
    published = discovery.parse_reservations(values["reservations"])
    assert published["p5"] == discovery.Reservation("p5", "capacity-block", "p5.48xlarge",
                                                    reservation_id=CAPACITY_BLOCK_ID)
    assert published["g6-odcr"].resource_group_arn == ODCR_GROUP_ARN
    assert values["queue/reserved/p5"] == "bert-batch-dev-reserved-p5"
    (capacity,) = discovery.parse_capacity(values["capacity/reserved/p5"])
    assert capacity == discovery.ComputeCapacity("bert-batch-dev-ce-reserved-p5", ("p5.48xlarge",), 192, False)


def test_without_reservations_an_empty_list_is_published(dev_training):
    dev_training.has_resource_properties("AWS::SSM::Parameter", {
        "Name": "/bert-batch/dev/reservations", "Value": "{}"})


P5 = RESERVATIONS[0]


@pytest.mark.parametrize(("reservations", "message"), [
    ([{**P5, "name": "P5"}], "training.reservations.name = P5: 'P5': a reservation name is"),
    ([{**P5, "reservation_id": "cr-12"}], "training.reservations.reservation_id = cr-12"),
    ([{**P5, "reservation_id": ""}], "training.reservations.p5.reservation_id = \"\": set exactly one of"),
    ([{**P5, "reservation_id": "", "resource_group_arn": ODCR_GROUP_ARN}],
     "training.reservations.p5.resource_group_arn = arn:aws:resource-groups:us-east-1:111122223333:group/gpu-odcrs: "
     "a capacity-block is targeted by its reservation_id"),
    ([P5, P5], "training.reservations.p5.name = p5: is used by two reservations"),
    ([{**P5, "subnet_index": 2}], "training.reservations.p5.subnet_index = 2: must be < the number of AZs (2)"),
    ([{**P5, "kind": "spot"}], "training.reservations.kind = spot"),
    ([{**P5, "instance_type": "p5"}], "training.reservations.instance_type = p5: 'p5' is not an EC2 instance type"),
])
def test_bad_reservations_stop_synth_with_one_line_naming_the_key(reservations, message):
    with pytest.raises(ConfigError) as raised:
        config_for("dev", **{"training.reservations": json.dumps(reservations)})
    assert str(raised.value).startswith(f"config error: {message}")
    assert "\n" not in str(raised.value)
