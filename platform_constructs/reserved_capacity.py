"""Reserved capacity: one compute environment and job queue per On-Demand Capacity Reservation
(ODCR) or EC2 Capacity Block for ML (`training.reservations`).

Each environment launches the reservation's instance type, On-Demand (EC2, never Spot), with
BEST_FIT_PROGRESSIVE, in the subnet of the reservation's Availability Zone, from a launch
template with the GPU user data and encrypted root volume of the other GPU environments plus:

- `CapacityReservationSpecification.CapacityReservationTarget`: `CapacityReservationId` (cr-...)
  or `CapacityReservationResourceGroupArn` (a group of ODCRs); with a target, EC2 launches into
  that reservation only (CloudFormation AWS::EC2::LaunchTemplate CapacityReservationTarget; EC2
  User Guide, "Capacity Reservations": targeted reservations take only launches naming them);
- for a Capacity Block, `InstanceMarketOptions.MarketType: capacity-block` (CloudFormation
  AWS::EC2::LaunchTemplate InstanceMarketOptions; EC2 User Guide, "Capacity Blocks for ML": a
  block is a targeted reservation in one AZ, launched into by its reservation id).

AWS Batch's guidance for Capacity Blocks (AWS HPC blog "How to use Capacity Blocks for ML with
AWS Batch"; Batch User Guide, allocation strategies) is an EC2 (On-Demand) environment with the
block's instance type and AZ, minimum 0 vCPUs (Batch starts instances when the window opens),
and a launch template naming the block. The queue only cancels jobs that can never be placed:
a job waiting for the window to open or an instance to be free is waiting on purpose.

No IAM is added: the instances are launched by Batch's service-linked role (AWS managed
BatchServiceRolePolicy) with the launch template, and the instance role is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from bertbatch_contract import discovery
from bertbatch_contract.discovery import ComputeCapacity, Reservation
from bertbatch_contract.naming import Naming
from platform_constructs.batch_compute import (
    batch_user_data,
    cfn_of,
    encrypted_launch_template,
    pin_launch_template_and_service_role,
    unplaceable_actions,
)
from platform_constructs.lustre import LinkedLustre
from platform_constructs.training_iam import compute_environment_name

CAPACITY_BLOCK = "capacity-block"


@dataclass(frozen=True)
class ReservedEnvironment:
    """One reservation as the construct builds it: what to target, how big, which subnet."""

    reservation: Reservation
    max_vcpus: int
    subnet: ec2.ISubnet


def capacity_reservation_target(reservation: Reservation) -> dict[str, str]:
    if reservation.reservation_id:
        return {"CapacityReservationId": reservation.reservation_id}
    return {"CapacityReservationResourceGroupArn": reservation.resource_group_arn}


def queue_kind(name: str) -> str:
    """`reserved-<name>`: the queue's name suffix and its key among the stack's job queues."""
    return f"reserved-{name}"


class ReservedCapacity(Construct):
    """Attributes, by reservation name: `launch_templates`, `environments`, `queues`
    (batch.JobQueue named <project>-<profile>-reserved-<name>) and `capacity` (the
    ComputeCapacity published under `capacity/reserved/<name>`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        naming: Naming,
        reservations: Sequence[ReservedEnvironment],
        container_stop_timeout_seconds: int,
        lustre: LinkedLustre | None,
        root_volume_gib: int,
        unplaceable_wait_minutes: int,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        instance_role: iam.IRole,
        scheduling_policy: batch.ISchedulingPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.launch_templates: dict[str, ec2.LaunchTemplate] = {}
        self.environments: dict[str, batch.ManagedEc2EcsComputeEnvironment] = {}
        self.queues: dict[str, batch.JobQueue] = {}
        self.capacity: dict[str, ComputeCapacity] = {}
        for spec in reservations:
            name = spec.reservation.name
            # The user data of the other GPU environments: ECS settings, the Lustre mount, instance file.
            user_data = batch_user_data(stop_timeout_seconds=container_stop_timeout_seconds, lustre=lustre)
            template = self._launch_template(spec.reservation, user_data, root_volume_gib)
            environment_name = compute_environment_name(naming, queue_kind(name))
            environment = batch.ManagedEc2EcsComputeEnvironment(
                self,
                f"Environment-{name}",
                compute_environment_name=environment_name,
                vpc=vpc,
                vpc_subnets=ec2.SubnetSelection(subnets=[spec.subnet]),
                images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023_NVIDIA)],
                use_optimal_instance_classes=False,
                instance_types=[ec2.InstanceType(spec.reservation.instance_type)],
                allocation_strategy=batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
                minv_cpus=0,
                maxv_cpus=spec.max_vcpus,
                launch_template=template,
                instance_role=instance_role,
                security_groups=[security_group],
            )
            pin_launch_template_and_service_role(environment, template)
            self.launch_templates[name], self.environments[name] = template, environment
            self.queues[name] = batch.JobQueue(
                self,
                f"Queue-{name}",
                job_queue_name=naming.resource(queue_kind(name)),
                compute_environments=[batch.OrderedComputeEnvironment(compute_environment=environment, order=1)],
                job_state_time_limit_actions=unplaceable_actions(Duration.minutes(unplaceable_wait_minutes)),
                scheduling_policy=scheduling_policy,
            )
            self.capacity[name] = ComputeCapacity(environment_name, (spec.reservation.instance_type,),
                                                  spec.max_vcpus, spot=False)

    def _launch_template(self, reservation: Reservation, user_data: ec2.UserData,
                         root_volume_gib: int) -> ec2.LaunchTemplate:
        template = encrypted_launch_template(self, f"LaunchTemplate-{reservation.name}", user_data=user_data,
                                             root_volume_gib=root_volume_gib)
        cfn = cfn_of(template)
        cfn.add_property_override("LaunchTemplateData.CapacityReservationSpecification",
                                  {"CapacityReservationTarget": capacity_reservation_target(reservation)})
        if reservation.kind == CAPACITY_BLOCK:
            cfn.add_property_override("LaunchTemplateData.InstanceMarketOptions", {"MarketType": CAPACITY_BLOCK})
        return template


def discovery_values(reserved: ReservedCapacity, reservations: Sequence[Reservation], naming: Naming) -> dict[str, str]:
    """What the CLI reads: the reservations, and each reserved queue's name and capacity."""
    values = {discovery.RESERVATIONS: discovery.reservations_value(reservations)}
    for r in reservations:
        values[discovery.reserved_queue_key(r.name)] = naming.resource(queue_kind(r.name))
        values[discovery.capacity_key(discovery.reserved_queue_kind(r.name))] = discovery.capacity_value(
            [reserved.capacity[r.name]])
    return values
