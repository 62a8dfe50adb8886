"""Batch GPU compute: launch templates, compute environments, placement group, job queues.

- GPU Spot and GPU On-Demand environments over the same instance types, any AZ;
- a multi-node On-Demand environment in one AZ and a cluster placement group (Batch does not
  run multi-node parallel jobs on Spot), optionally with an EFA interface on every network
  card (platform_constructs/efa.py);
- queues `spot-first` [Spot, On-Demand], `on-demand` [On-Demand], `multi-node` [Multi-node].
  The spot-first queue cancels a job that waits RUNNABLE for Spot capacity longer than
  `capacity_wait_minutes`; the fallback handler then resubmits it to `on-demand`. Every queue
  cancels a job that can never be placed after `unplaceable_wait_minutes`, and on-demand and
  multi-node cancel one that waited `on_demand_capacity_wait_minutes` for EC2 capacity, each
  with Batch's reason as the job's status reason. Every queue schedules by the teams' fair
  shares (platform_constructs/fair_share.py), not first-in-first-out.

All environments: ECS_AL2023_NVIDIA images named explicitly, no "optimal" instance classes,
0 vCPUs when idle, and the Batch service-linked role (no service role of our own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from bertbatch_contract import job
from bertbatch_contract.discovery import ComputeCapacity
from bertbatch_contract.naming import Naming
from platform_constructs.efa import network_interfaces
from platform_constructs.lustre import MOUNT_PATH, LinkedLustre
from platform_constructs.training_iam import compute_environment_name

ECS_CONFIG_FILE = "/etc/ecs/ecs.config"
ROOT_DEVICE = "/dev/xvda"  # the AL2023 ECS GPU AMI's root volume
QUEUE_SPOT_FIRST = "spot-first"
QUEUE_ON_DEMAND = "on-demand"
QUEUE_MULTI_NODE = "multi-node"
# The environments behind each queue, in order.
QUEUE_ENVIRONMENTS: dict[str, tuple[str, ...]] = {
    QUEUE_SPOT_FIRST: ("gpu-spot", "gpu-on-demand"),
    QUEUE_ON_DEMAND: ("gpu-on-demand",),
    QUEUE_MULTI_NODE: ("multi-node",),
}
UNPLACEABLE_REASONS = (
    batch.JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT,
    batch.JobStateTimeLimitActionsReason.COMPUTE_ENVIRONMENT_MAX_RESOURCE,
)


def ecs_settings_script(stop_timeout_seconds: int) -> ec2.UserData:
    """ECS agent settings: Spot notices become SIGTERM (draining), a stop timeout long enough to
    write a checkpoint, and awslogs through the execution role. Task metrics and Docker health
    checks are off: Batch jobs use neither, and with both off the agent opens no telemetry
    session, so an isolated VPC needs no ecs-telemetry endpoint (network.JOB_HOST_ENDPOINTS).
    The multi-GB training image is pulled once per host: `prefer-cached` starts later jobs from
    the cached copy. The image asset's tag is its content hash, so a cached tag is never stale; a
    prebuilt `training.image_uri` needs a new tag per build for the same reason."""
    script = ec2.UserData.for_linux()
    script.add_commands(
        f"cat >> {ECS_CONFIG_FILE} <<'EOF'",
        "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true",
        f"ECS_CONTAINER_STOP_TIMEOUT={stop_timeout_seconds}s",
        "ECS_ENABLE_AWSLOGS_EXECUTIONROLE_OVERRIDE=true",
        "ECS_DISABLE_METRICS=true",
        "ECS_DISABLE_DOCKER_HEALTH_CHECK=true",
        "ECS_IMAGE_PULL_BEHAVIOR=prefer-cached",
        "EOF",
    )
    return script


MOUNT_TRIES, MOUNT_RETRY_SECONDS = 30, 10
CONTAINER_UID = 1000  # the training image's user (training_container/Dockerfile: USER 1000:1000)
LOG_TAG = "bert-batch"


def lustre_mount_script(lustre: LinkedLustre) -> ec2.UserData:
    """Install the Lustre client (AL2023: dnf) and mount the file system at /fsx.

    A failed install or mount does not stop the boot: the host still joins the cluster and its
    jobs read their inputs from S3. It is reported, not silent: a line on the console and in the
    journal (tag `bert-batch`), and the marker file `/fsx/.mount-failed` (holding the reason) in
    the bare mount directory, which the jobs see in their read-only /fsx volume. A mounted file
    system hides the directory, so the marker is visible exactly when /fsx is not Lustre.
    """
    source = f"{lustre.dns_name}@tcp:/{lustre.mount_name}"
    marker = f"{MOUNT_PATH}/{job.FSX_MOUNT_FAILED_MARKER}"
    script = ec2.UserData.for_linux()
    script.add_commands(
        "set -uo pipefail",
        "fsx_failed() {",
        f"  echo \"$1\" > {marker}",
        f"  echo \"{LOG_TAG}: FSx for Lustre is not mounted at {MOUNT_PATH}: $1\" "
        f"| tee /dev/console | logger -t {LOG_TAG}",
        "  exit 0",
        "}",
        f"mkdir -p {MOUNT_PATH}",
        f"rm -f {marker}",
        "dnf install -y lustre-client || fsx_failed 'dnf install lustre-client failed'",
        f"grep -q ' {MOUNT_PATH} lustre ' /etc/fstab || "
        f"echo '{source} {MOUNT_PATH} lustre defaults,noatime,flock,_netdev 0 0' >> /etc/fstab",
        # The file system may still be coming up when the first instance boots: retry.
        f"for _ in $(seq 1 {MOUNT_TRIES}); do mount {MOUNT_PATH} && break; sleep {MOUNT_RETRY_SECONDS}; done",
        f"mountpoint -q {MOUNT_PATH} || fsx_failed 'mount {source} failed {MOUNT_TRIES} times'",
        f"echo '{LOG_TAG}: FSx for Lustre mounted at {MOUNT_PATH}' | logger -t {LOG_TAG}",
        # The one writable place on the mount: the tokenized-dataset cache, owned by the image's
        # unprivileged user (uid 1000 in training_container/Dockerfile).
        f"install -d -m 0755 -o {CONTAINER_UID} -g {CONTAINER_UID} {MOUNT_PATH}/{job.FSX_CACHE_DIR}",
    )
    return script


IMDS_URL = "http://169.254.169.254/latest"
IMDS_CURL = "curl -sSf --retry 3 --max-time 5"


def instance_info_script() -> ec2.UserData:
    """Copy the instance type and life cycle from the instance metadata to job.INSTANCE_INFO_FILE,
    which the job definitions mount read-only: with a hop limit of 1 the host reaches IMDS and
    a job's container does not, so the cost cap reads them here. Written to a temporary file in
    the same directory and renamed (a job never sees half a file), readable by all (the image's
    user is not root). Without metadata there is no file, the boot goes on, and a job with a cost
    cap refuses to start (it cannot price the instance); the reason is logged."""
    directory, target = job.INSTANCE_INFO_DIR, job.INSTANCE_INFO_FILE
    script = ec2.UserData.for_linux()
    script.add_commands(
        "set -uo pipefail",
        "instance_info_failed() {",
        f"  echo \"{LOG_TAG}: no {target}, a job with a cost cap will refuse to start: $1\" >&2",
        f"  logger -t {LOG_TAG} \"no {target}: $1\"",
        "  rm -f \"${tmp:-}\"",
        "  exit 0",
        "}",
        f"token=$({IMDS_CURL} -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' {IMDS_URL}/api/token) "
        "|| instance_info_failed 'no IMDSv2 token'",
        f"metadata() {{ {IMDS_CURL} -H \"X-aws-ec2-metadata-token: $token\" \"{IMDS_URL}/meta-data/$1\"; }}",
        "instance_type=$(metadata instance-type) || instance_info_failed 'cannot read instance-type'",
        "life_cycle=$(metadata instance-life-cycle) || instance_info_failed 'cannot read instance-life-cycle'",
        f"install -d -m 0755 {directory} || instance_info_failed 'cannot create {directory}'",
        f"tmp=$(mktemp {directory}/.instance.json.XXXXXX) || instance_info_failed 'cannot write in {directory}'",
        "if ! { printf '{\"instance_type\": \"%s\", \"life_cycle\": \"%s\"}\\n' \"$instance_type\" \"$life_cycle\" "
        f"> \"$tmp\" && chmod 0644 \"$tmp\" && mv -f \"$tmp\" {target}; }}; then",
        f"  instance_info_failed 'cannot write {target}'",
        "fi",
    )
    return script


def batch_user_data(*, stop_timeout_seconds: int, lustre: LinkedLustre | None) -> ec2.MultipartUserData:
    """MIME multipart user data (Batch requires it): ECS settings, the Lustre mount (with FSx),
    then the instance file."""
    user_data = ec2.MultipartUserData()
    user_data.add_user_data_part(ecs_settings_script(stop_timeout_seconds), ec2.MultipartBody.SHELL_SCRIPT, True)
    if lustre is not None:
        user_data.add_user_data_part(lustre_mount_script(lustre), ec2.MultipartBody.SHELL_SCRIPT, False)
    user_data.add_user_data_part(instance_info_script(), ec2.MultipartBody.SHELL_SCRIPT, False)
    return user_data


@dataclass(frozen=True)
class GpuComputeSettings:
    """The sizes and waits of the GPU environments and queues (`training.*` in the config)."""

    gpu_instance_types: Sequence[str]
    multinode_instance_types: Sequence[str]
    spot_max_vcpus: int
    on_demand_max_vcpus: int
    multinode_max_vcpus: int
    capacity_wait_minutes: int
    unplaceable_wait_minutes: int
    on_demand_capacity_wait_minutes: int
    container_stop_timeout_seconds: int
    root_volume_gib: int
    efa_interfaces: int  # per multi-node host, one per network card; 0: no EFA


class GpuCompute(Construct):
    """Attributes: `environments` (dict 'gpu-spot' | 'gpu-on-demand' | 'multi-node' -> CE),
    `launch_templates` (dict 'gpu' | 'multi-node'), `placement_group`, `queues` (dict
    'spot-first' | 'on-demand' | 'multi-node' -> batch.JobQueue), `capacity` (dict queue kind ->
    the ComputeCapacity of its environments, for discovery)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        naming: Naming,
        settings: GpuComputeSettings,
        vpc: ec2.IVpc,
        compute_subnets: ec2.SubnetSelection,
        multinode_subnet: ec2.ISubnet,
        security_group: ec2.ISecurityGroup,
        instance_role: iam.IRole,
        lustre: LinkedLustre | None,
        scheduling_policy: batch.ISchedulingPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.placement_group = ec2.PlacementGroup(
            self, "MultiNodePlacementGroup", strategy=ec2.PlacementGroupStrategy.CLUSTER
        )
        self.launch_templates = self._launch_templates(
            batch_user_data(stop_timeout_seconds=settings.container_stop_timeout_seconds, lustre=lustre),
            batch_user_data(stop_timeout_seconds=settings.container_stop_timeout_seconds, lustre=lustre),
            root_volume_gib=settings.root_volume_gib,
        )
        if settings.efa_interfaces:
            self._add_efa_interfaces(security_group, settings.efa_interfaces)
        common: dict[str, Any] = dict(
            vpc=vpc,
            images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023_NVIDIA)],
            use_optimal_instance_classes=False,
            minv_cpus=0,
            instance_role=instance_role,
            security_groups=[security_group],
        )
        self.environments = {
            **self._gpu_environments(naming, settings, compute_subnets, common=common),
            "multi-node": self._multi_node_environment(naming, settings, multinode_subnet, common=common),
        }
        self._pin_launch_templates_and_service_role()
        if settings.efa_interfaces:
            cfn_of(self.environments["multi-node"]).add_property_deletion_override("ComputeResources.SecurityGroupIds")
        self.queues = self._queues(
            naming,
            scheduling_policy=scheduling_policy,
            spot_capacity=Duration.minutes(settings.capacity_wait_minutes),
            unplaceable=Duration.minutes(settings.unplaceable_wait_minutes),
            on_demand_capacity=Duration.minutes(settings.on_demand_capacity_wait_minutes),
        )
        self.capacity = queue_capacity(naming, settings)

    def _launch_templates(self, gpu_user_data: ec2.UserData, multi_node_user_data: ec2.UserData, *,
                          root_volume_gib: int) -> dict[str, ec2.LaunchTemplate]:
        """'gpu' for the single-node environments, 'multi-node' in the cluster placement group
        (each with a user data object of its own)."""
        return {
            "gpu": encrypted_launch_template(
                self, "GpuLaunchTemplate", user_data=gpu_user_data, root_volume_gib=root_volume_gib
            ),
            "multi-node": encrypted_launch_template(
                self,
                "MultiNodeLaunchTemplate",
                user_data=multi_node_user_data,
                root_volume_gib=root_volume_gib,
                placement_group=self.placement_group,
            ),
        }

    def _add_efa_interfaces(self, security_group: ec2.ISecurityGroup, count: int) -> None:
        """An EFA interface on each of the `count` network cards. With interfaces in the launch
        template, the security group goes there and not on the compute environment."""
        cfn_of(self.launch_templates["multi-node"]).add_property_override(
            "LaunchTemplateData.NetworkInterfaces", network_interfaces(count, security_group.security_group_id)
        )

    def _gpu_environments(self, naming: Naming, settings: GpuComputeSettings, compute_subnets: ec2.SubnetSelection,
                          *, common: dict[str, Any]) -> dict[str, batch.ManagedEc2EcsComputeEnvironment]:
        """GPU Spot and GPU On-Demand over the same instance types and subnets."""
        gpu_types = [ec2.InstanceType(x) for x in settings.gpu_instance_types]
        return {
            "gpu-spot": batch.ManagedEc2EcsComputeEnvironment(
                self,
                "GpuSpot",
                compute_environment_name=compute_environment_name(naming, "gpu-spot"),
                spot=True,
                allocation_strategy=batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED,
                instance_types=gpu_types,
                maxv_cpus=settings.spot_max_vcpus,
                launch_template=self.launch_templates["gpu"],
                vpc_subnets=compute_subnets,
                **common,
            ),
            "gpu-on-demand": batch.ManagedEc2EcsComputeEnvironment(
                self,
                "GpuOnDemand",
                compute_environment_name=compute_environment_name(naming, "gpu-on-demand"),
                allocation_strategy=batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
                instance_types=gpu_types,
                maxv_cpus=settings.on_demand_max_vcpus,
                launch_template=self.launch_templates["gpu"],
                vpc_subnets=compute_subnets,
                **common,
            ),
        }

    def _multi_node_environment(self, naming: Naming, settings: GpuComputeSettings, subnet: ec2.ISubnet, *,
                                common: dict[str, Any]) -> batch.ManagedEc2EcsComputeEnvironment:
        """On-Demand in one subnet (one AZ) and the cluster placement group."""
        return batch.ManagedEc2EcsComputeEnvironment(
            self,
            "MultiNode",
            compute_environment_name=compute_environment_name(naming, "multi-node"),
            allocation_strategy=batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
            instance_types=[ec2.InstanceType(x) for x in settings.multinode_instance_types],
            maxv_cpus=settings.multinode_max_vcpus,
            launch_template=self.launch_templates["multi-node"],
            placement_group=self.placement_group,
            vpc_subnets=ec2.SubnetSelection(subnets=[subnet]),
            **common,
        )

    def _pin_launch_templates_and_service_role(self) -> None:
        launch_template_of = {"gpu-spot": "gpu", "gpu-on-demand": "gpu", "multi-node": "multi-node"}
        for kind, environment in self.environments.items():
            pin_launch_template_and_service_role(environment, self.launch_templates[launch_template_of[kind]])

    def _queues(
        self,
        naming: Naming,
        *,
        scheduling_policy: batch.ISchedulingPolicy,
        spot_capacity: Duration,
        unplaceable: Duration,
        on_demand_capacity: Duration,
    ) -> dict[str, batch.JobQueue]:
        def ordered(queue: str) -> list[batch.OrderedComputeEnvironment]:
            return [
                batch.OrderedComputeEnvironment(compute_environment=self.environments[kind], order=i)
                for i, kind in enumerate(QUEUE_ENVIRONMENTS[queue], start=1)
            ]

        # A job no environment can ever hold is cancelled with a readable reason, not left waiting.
        never_placed = unplaceable_actions(unplaceable)
        capacity = batch.JobStateTimeLimitActionsReason.INSUFFICIENT_INSTANCE_CAPACITY
        # spot-first: the fallback handler resubmits capacity cancellations to on-demand.
        capacity_wait = {
            QUEUE_SPOT_FIRST: spot_capacity,
            QUEUE_ON_DEMAND: on_demand_capacity,
            QUEUE_MULTI_NODE: on_demand_capacity,
        }
        construct_ids = {
            QUEUE_SPOT_FIRST: "SpotFirstQueue",
            QUEUE_ON_DEMAND: "OnDemandQueue",
            QUEUE_MULTI_NODE: "MultiNodeQueue",
        }
        return {
            queue: batch.JobQueue(
                self,
                construct_ids[queue],
                job_queue_name=naming.resource(queue),
                compute_environments=ordered(queue),
                job_state_time_limit_actions=[cancel_runnable(capacity, capacity_wait[queue]), *never_placed],
                scheduling_policy=scheduling_policy,
            )
            for queue in QUEUE_ENVIRONMENTS
        }


def queue_capacity(naming: Naming, settings: GpuComputeSettings) -> dict[str, list[ComputeCapacity]]:
    """Queue kind -> the ComputeCapacity of its environments, in order (for discovery)."""
    instance_types = {"gpu-spot": settings.gpu_instance_types, "gpu-on-demand": settings.gpu_instance_types,
                      "multi-node": settings.multinode_instance_types}
    max_vcpus = {"gpu-spot": settings.spot_max_vcpus, "gpu-on-demand": settings.on_demand_max_vcpus,
                 "multi-node": settings.multinode_max_vcpus}
    environment_capacity = {
        kind: ComputeCapacity(compute_environment_name(naming, kind), tuple(types), max_vcpus[kind], kind == "gpu-spot")
        for kind, types in instance_types.items()
    }
    return {queue: [environment_capacity[kind] for kind in kinds] for queue, kinds in QUEUE_ENVIRONMENTS.items()}


def pin_launch_template_and_service_role(environment: batch.ManagedEc2EcsComputeEnvironment,
                                         launch_template: ec2.LaunchTemplate) -> None:
    cfn = cfn_of(environment)
    # Pin the launch template version, so a change to it updates the environment.
    cfn.add_property_override("ComputeResources.LaunchTemplate.Version", launch_template.latest_version_number)
    # The Batch service-linked role (AWSServiceRoleForBatch) instead of a role of our own.
    cfn.add_property_deletion_override("ServiceRole")
    environment.node.try_remove_child("BatchServiceRole")


def cancel_runnable(reason: batch.JobStateTimeLimitActionsReason, after: Duration) -> batch.JobStateTimeLimitAction:
    """Cancel a job that waited RUNNABLE `after` for `reason`, with Batch's reason as its status."""
    return batch.JobStateTimeLimitAction(
        action=batch.JobStateTimeLimitActionsAction.CANCEL,
        reason=reason,
        state=batch.JobStateTimeLimitActionsState.RUNNABLE,
        max_time=after,
    )


def unplaceable_actions(after: Duration) -> list[batch.JobStateTimeLimitAction]:
    """Cancel, with Batch's reason, a job no environment of the queue can ever hold."""
    return [cancel_runnable(reason, after) for reason in UNPLACEABLE_REASONS]


def cfn_of(construct: Construct) -> Any:
    """The L1 resource under an L2 construct (for property overrides)."""
    return construct.node.default_child


def encrypted_launch_template(
    scope: Construct,
    construct_id: str,
    *,
    user_data: ec2.UserData,
    root_volume_gib: int,
    placement_group: ec2.PlacementGroup | None = None,
) -> ec2.LaunchTemplate:
    return ec2.LaunchTemplate(
        scope,
        construct_id,
        user_data=user_data,
        require_imdsv2=True,
        http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
        # One hop: the host only. A job's container is one hop further and cannot reach the
        # metadata service, so it cannot take the instance role's credentials.
        http_put_response_hop_limit=1,
        placement_group=placement_group,
        block_devices=[
            ec2.BlockDevice(
                device_name=ROOT_DEVICE,
                volume=ec2.BlockDeviceVolume.ebs(
                    root_volume_gib,
                    encrypted=True,
                    volume_type=ec2.EbsDeviceVolumeType.GP3,
                    delete_on_termination=True,
                ),
            )
        ],
    )
