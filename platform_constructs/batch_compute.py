"""Batch GPU compute: launch templates, compute environments, placement group, job queues.

- GPU Spot and GPU On-Demand environments over the same instance types, any AZ;
- a multi-node On-Demand environment in one AZ and a cluster placement group (Batch does not
  run multi-node parallel jobs on Spot), optionally with an EFA interface;
- queues `spot-first` [Spot, On-Demand], `on-demand` [On-Demand], `multi-node` [Multi-node].
  The spot-first queue cancels a job that waits RUNNABLE for Spot capacity longer than
  `capacity_wait_minutes`; the fallback handler then resubmits it to `on-demand`.

All environments: ECS_AL2023_NVIDIA images named explicitly, no "optimal" instance classes,
0 vCPUs when idle, and the Batch service-linked role (no service role of our own).
"""

from __future__ import annotations

from aws_cdk import Duration, aws_batch as batch, aws_ec2 as ec2, aws_iam as iam
from constructs import Construct

from bertbatch import discovery
from platform_constructs.lustre import MOUNT_PATH, LinkedLustre
from platform_constructs.training_iam import batch_cluster_prefix
from stacks.config import PlatformConfig

ECS_CONFIG_FILE = "/etc/ecs/ecs.config"
ROOT_DEVICE = "/dev/xvda"  # the AL2023 ECS GPU AMI's root volume
QUEUE_SPOT_FIRST = "spot-first"
QUEUE_ON_DEMAND = "on-demand"
QUEUE_MULTI_NODE = "multi-node"


def ecs_settings_script(stop_timeout_seconds: int) -> ec2.UserData:
    """ECS agent settings: Spot notices become SIGTERM (draining), a stop timeout long enough to
    write a checkpoint, and awslogs through the execution role."""
    script = ec2.UserData.for_linux()
    script.add_commands(
        f"cat >> {ECS_CONFIG_FILE} <<'EOF'",
        "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true",
        f"ECS_CONTAINER_STOP_TIMEOUT={stop_timeout_seconds}s",
        "ECS_ENABLE_AWSLOGS_EXECUTIONROLE_OVERRIDE=true",
        "EOF",
    )
    return script


def lustre_mount_script(lustre: LinkedLustre) -> ec2.UserData:
    """Install the Lustre client (AL2023: dnf) and mount the file system at /fsx."""
    source = f"{lustre.dns_name}@tcp:/{lustre.mount_name}"
    script = ec2.UserData.for_linux()
    script.add_commands(
        "set -euo pipefail",
        "dnf install -y lustre-client",
        f"mkdir -p {MOUNT_PATH}",
        f"echo '{source} {MOUNT_PATH} lustre defaults,noatime,flock,_netdev 0 0' >> /etc/fstab",
        # The file system may still be coming up when the first instance boots: retry.
        f"for i in $(seq 1 30); do mount {MOUNT_PATH} && break; sleep 10; done",
        f"mountpoint -q {MOUNT_PATH}",
    )
    return script


def gpu_user_data(*, stop_timeout_seconds: int, lustre: LinkedLustre | None) -> ec2.MultipartUserData:
    """MIME multipart user data (Batch requires it): ECS settings, then the Lustre mount."""
    user_data = ec2.MultipartUserData()
    user_data.add_user_data_part(ecs_settings_script(stop_timeout_seconds), ec2.MultipartBody.SHELL_SCRIPT, True)
    if lustre is not None:
        user_data.add_user_data_part(lustre_mount_script(lustre), ec2.MultipartBody.SHELL_SCRIPT, False)
    return user_data


class GpuCompute(Construct):
    """Attributes: `environments` (dict 'gpu-spot' | 'gpu-on-demand' | 'multi-node' -> CE),
    `launch_templates` (dict 'gpu' | 'multi-node'), `placement_group`, `queues` (dict
    'spot-first' | 'on-demand' | 'multi-node' -> batch.JobQueue)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        vpc: ec2.IVpc,
        compute_subnets: ec2.SubnetSelection,
        multinode_subnet: ec2.ISubnet,
        security_group: ec2.ISecurityGroup,
        instance_role: iam.IRole,
        lustre: LinkedLustre | None,
    ) -> None:
        super().__init__(scope, construct_id)
        t = config.training
        name = lambda kind: discovery.resource_name(kind, profile=config.profile, project=config.project_name)  # noqa: E731
        # The instance role's ECS permissions are scoped to clusters named after these.
        environment_prefix = batch_cluster_prefix(config.project_name, config.profile)

        self.placement_group = ec2.PlacementGroup(
            self, "MultiNodePlacementGroup", strategy=ec2.PlacementGroupStrategy.CLUSTER
        )
        self.launch_templates = {
            "gpu": self._launch_template("GpuLaunchTemplate", config=config, lustre=lustre),
            "multi-node": self._launch_template(
                "MultiNodeLaunchTemplate", config=config, lustre=lustre, placement_group=self.placement_group
            ),
        }
        if t.efa:
            # One EFA interface as the primary network interface. With interfaces in the launch
            # template, the security group goes there and not on the compute environment.
            cfn_lt = self.launch_templates["multi-node"].node.default_child
            cfn_lt.add_property_override(
                "LaunchTemplateData.NetworkInterfaces",
                [{
                    "DeviceIndex": 0,
                    "NetworkCardIndex": 0,
                    "InterfaceType": "efa",
                    "Groups": [security_group.security_group_id],
                    "DeleteOnTermination": True,
                }],
            )

        gpu_types = [ec2.InstanceType(x) for x in t.gpu_instance_types]
        common = dict(
            vpc=vpc,
            images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023_NVIDIA)],
            use_optimal_instance_classes=False,
            minv_cpus=0,
            instance_role=instance_role,
            security_groups=[security_group],
        )
        self.environments = {
            "gpu-spot": batch.ManagedEc2EcsComputeEnvironment(
                self,
                "GpuSpot",
                compute_environment_name=environment_prefix + "gpu-spot",
                spot=True,
                allocation_strategy=batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED,
                instance_types=gpu_types,
                maxv_cpus=t.spot_max_vcpus,
                launch_template=self.launch_templates["gpu"],
                vpc_subnets=compute_subnets,
                **common,
            ),
            "gpu-on-demand": batch.ManagedEc2EcsComputeEnvironment(
                self,
                "GpuOnDemand",
                compute_environment_name=environment_prefix + "gpu-on-demand",
                allocation_strategy=batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
                instance_types=gpu_types,
                maxv_cpus=t.on_demand_max_vcpus,
                launch_template=self.launch_templates["gpu"],
                vpc_subnets=compute_subnets,
                **common,
            ),
            "multi-node": batch.ManagedEc2EcsComputeEnvironment(
                self,
                "MultiNode",
                compute_environment_name=environment_prefix + "multi-node",
                allocation_strategy=batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
                instance_types=[ec2.InstanceType(x) for x in t.multinode_instance_types],
                maxv_cpus=t.multinode_max_vcpus,
                launch_template=self.launch_templates["multi-node"],
                placement_group=self.placement_group,
                vpc_subnets=ec2.SubnetSelection(subnets=[multinode_subnet]),
                **common,
            ),
        }
        launch_template_of = {"gpu-spot": "gpu", "gpu-on-demand": "gpu", "multi-node": "multi-node"}
        for kind, environment in self.environments.items():
            cfn = environment.node.default_child
            # Pin the launch template version, so a change to it updates the environment.
            cfn.add_property_override(
                "ComputeResources.LaunchTemplate.Version",
                self.launch_templates[launch_template_of[kind]].latest_version_number,
            )
            # The Batch service-linked role (AWSServiceRoleForBatch) instead of a role of our own.
            cfn.add_property_deletion_override("ServiceRole")
            environment.node.try_remove_child("BatchServiceRole")
        if t.efa:
            self.environments["multi-node"].node.default_child.add_property_deletion_override(
                "ComputeResources.SecurityGroupIds"
            )

        self.queues = {
            QUEUE_SPOT_FIRST: batch.JobQueue(
                self,
                "SpotFirstQueue",
                job_queue_name=name(QUEUE_SPOT_FIRST),
                compute_environments=[
                    batch.OrderedComputeEnvironment(compute_environment=self.environments["gpu-spot"], order=1),
                    batch.OrderedComputeEnvironment(compute_environment=self.environments["gpu-on-demand"], order=2),
                ],
                job_state_time_limit_actions=[
                    batch.JobStateTimeLimitAction(
                        action=batch.JobStateTimeLimitActionsAction.CANCEL,
                        reason=batch.JobStateTimeLimitActionsReason.INSUFFICIENT_INSTANCE_CAPACITY,
                        state=batch.JobStateTimeLimitActionsState.RUNNABLE,
                        max_time=Duration.minutes(t.capacity_wait_minutes),
                    )
                ],
            ),
            QUEUE_ON_DEMAND: batch.JobQueue(
                self,
                "OnDemandQueue",
                job_queue_name=name(QUEUE_ON_DEMAND),
                compute_environments=[
                    batch.OrderedComputeEnvironment(compute_environment=self.environments["gpu-on-demand"], order=1),
                ],
            ),
            QUEUE_MULTI_NODE: batch.JobQueue(
                self,
                "MultiNodeQueue",
                job_queue_name=name(QUEUE_MULTI_NODE),
                compute_environments=[
                    batch.OrderedComputeEnvironment(compute_environment=self.environments["multi-node"], order=1),
                ],
            ),
        }

    def _launch_template(
        self,
        construct_id: str,
        *,
        config: PlatformConfig,
        lustre: LinkedLustre | None,
        placement_group: ec2.PlacementGroup | None = None,
    ) -> ec2.LaunchTemplate:
        return ec2.LaunchTemplate(
            self,
            construct_id,
            user_data=gpu_user_data(
                stop_timeout_seconds=config.training.container_stop_timeout_seconds, lustre=lustre
            ),
            require_imdsv2=True,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            http_put_response_hop_limit=2,
            placement_group=placement_group,
            block_devices=[
                ec2.BlockDevice(
                    device_name=ROOT_DEVICE,
                    volume=ec2.BlockDeviceVolume.ebs(
                        config.training.root_volume_gib,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
