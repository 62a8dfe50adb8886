"""Training stack: Batch GPU compute, queues, job definitions, IAM, fallback, discovery."""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aws_cdk import (
    Annotations,
    FileSystem,
    IgnoreMode,
    Stack,
)
from aws_cdk import (
    aws_ec2 as ec2,
)
from aws_cdk import (
    aws_ecr_assets as ecr_assets,
)
from aws_cdk import (
    aws_ecs as ecs,
)
from aws_cdk import (
    aws_kms as kms,
)
from aws_cdk import (
    aws_s3 as s3,
)
from constructs import Construct

from bertbatch_contract import discovery, job, layout, metrics, teams
from platform_constructs import job_definitions as jobdefs
from platform_constructs import reserved_capacity
from platform_constructs.batch_compute import QUEUE_MULTI_NODE, QUEUE_ON_DEMAND, QUEUE_SPOT_FIRST, GpuCompute
from platform_constructs.data_preparation import JOB_DEFINITION as JOB_DEFINITION_PREPARE_NAME
from platform_constructs.data_preparation import QUEUE_PREPARE, DataPreparation
from platform_constructs.discovery_params import DiscoveryParameters
from platform_constructs.fair_share import FairShare
from platform_constructs.fallback import SpotFallback
from platform_constructs.logs import encrypted_log_group
from platform_constructs.lustre import MOUNT_PATH, LinkedLustre
from platform_constructs.training_iam import TrainingRoles, ecr_repository_arn_of
from stacks.config import ConfigError, PlatformConfig

FSX_DISABLED = discovery.NOT_CONFIGURED  # discovery value of the FSx mount path when FSx is off
# The image's build context is the repository root (the image copies bertbatch_contract beside
# the trainer); the root .dockerignore is an allow-list of what goes in.
REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "training_container/Dockerfile"
PACKAGE = "bert-batch"
IMAGE_VERSION_ARG = "IMAGE_VERSION"  # the Dockerfile's build arg, recorded in every model card
BASE_IMAGE_DIGEST_ARG = "BASE_IMAGE_DIGEST"  # the Dockerfile's FROM pins the base image to it
BASE_IMAGE_DIGEST_FILE = "training_container/base-image.digest"  # `make base-image-digest` writes it
EFA_INSTALLER_SHA256_ARG = "EFA_INSTALLER_SHA256"  # the Dockerfile checks the EFA installer against it
EFA_INSTALLER_SHA256_FILE = "training_container/efa-installer.sha256"  # `make efa-installer-sha256` writes it


def image_version(build_context: Path = REPO_ROOT) -> str:
    """`<package version>-<12 hex digits>`: the hash covers exactly what the image is built
    from (the build context through its .dockerignore, as CDK's asset hash does), so a model
    card names the image that trained it. Valid as a Docker tag."""
    dockerignore = build_context / ".dockerignore"
    patterns = [
        line.strip()
        for line in dockerignore.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    fingerprint = FileSystem.fingerprint(str(build_context), exclude=patterns, ignore_mode=IgnoreMode.DOCKER)
    return f"{importlib.metadata.version(PACKAGE)}-{fingerprint[:12]}"


def recorded_value(repo: Path, file: str) -> str:
    """The value recorded in `file` beside the Dockerfile ('#' lines are comments), "" if none."""
    lines = (repo / file).read_text().splitlines()
    return " ".join(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def base_image_digest(repo: Path = REPO_ROOT) -> str:
    """The base image's digest recorded beside the Dockerfile. Empty until it is resolved:
    synth goes on, and building the image stops at its FROM."""
    digest = recorded_value(repo, BASE_IMAGE_DIGEST_FILE)
    if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ConfigError(f"{BASE_IMAGE_DIGEST_FILE}: {digest!r} is not a sha256:<64 hex> digest "
                         "(make base-image-digest writes it)")
    return digest


def efa_installer_sha256(repo: Path = REPO_ROOT) -> str:
    """The EFA installer archive's sha256 recorded beside the Dockerfile. Empty until it is
    recorded: the image is then built without the EFA stack."""
    checksum = recorded_value(repo, EFA_INSTALLER_SHA256_FILE)
    if checksum and not re.fullmatch(r"[0-9a-f]{64}", checksum):
        raise ConfigError(f"{EFA_INSTALLER_SHA256_FILE}: {checksum!r} is not a sha256 (64 hex) "
                          "(make efa-installer-sha256 writes it)")
    return checksum


def require_efa_installer(config: PlatformConfig, checksum: str) -> None:
    """EFA jobs need the EFA stack in the image built at deploy: say so at synth, not when a
    job's first collective fails."""
    if config.training.efa and not checksum:
        raise ConfigError(f"{EFA_INSTALLER_SHA256_FILE} holds no sha256: training.efa needs the EFA stack in the "
                          "image: run make efa-installer-sha256 (or set training.image_uri to an image that has it)")


class TrainingStack(Stack):
    """Exposes `job_queues` (dict: 'spot-first', 'on-demand', 'multi-node', 'prepare' -> batch.IJobQueue),
    `job_definitions` (dict: 'bert-finetune', 'bert-finetune-multinode', 'bert-predict', 'bert-prepare' -> job
    definition),
    `job_log_group` (logs.ILogGroup), `fallback_function` (lambda_.IFunction).

    Also `fallback_dead_letter_queue` (sqs.IQueue: events the fallback handler failed on),
    `roles` (instance / execution / job roles), `compute` (launch templates, compute
    environments, placement group), `image_asset` (None with a prebuilt `training.image_uri`).
    See docs/fallback.md for the Spot -> On-Demand chain."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        vpc: ec2.IVpc,
        compute_subnets: ec2.SubnetSelection,
        private_subnets: Sequence[ec2.ISubnet],
        compute_security_group: ec2.ISecurityGroup,
        key: kms.IKey,
        data_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        lustre: LinkedLustre | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        naming, removal = config.naming, config.removal_policy_value
        image, repository_arn, self.image_asset = training_image(self, config)
        self.fair_share = FairShare(self, "FairShare", naming=naming, weights=config.teams.weights,
                                    compute_reservation_percent=config.teams.compute_reservation_percent,
                                    share_decay_seconds=config.teams.share_decay_seconds)
        self.job_log_group = encrypted_log_group(self, "JobLogs", name=naming.log_group("jobs"), key=key,
                                                 days=config.log_retention_days, removal_policy=removal)
        self.roles = TrainingRoles(
            self,
            "Roles",
            naming=naming,
            key=key,
            data_bucket=data_bucket,
            artifacts_bucket=artifacts_bucket,
            log_group=self.job_log_group,
            image_repository_arn=repository_arn,
            mlflow_tracking_server_arn=config.tracking.sagemaker_tracking_server_arn,
        )
        multinode_subnet = private_subnets[config.training.multinode_subnet_index]
        self.compute = self._gpu_compute(config, vpc, compute_subnets, multinode_subnet, compute_security_group, lustre)
        self.job_queues = dict(self.compute.queues)
        self.reserved = self._reserved_capacity(config, vpc, private_subnets, compute_security_group, lustre)
        self.job_queues.update({reserved_capacity.queue_kind(name): q for name, q in self.reserved.queues.items()})
        fsx = lustre is not None
        definitions = self._job_definitions(config, image, data_bucket, artifacts_bucket, fsx=fsx)
        self.job_definitions = dict(definitions.definitions)
        # Data preparation: Spot CPUs, the prepare queue, the bert-prepare array job.
        self.preparation = self._data_preparation(config, image, vpc, compute_subnets, compute_security_group,
                                                  data_bucket, artifacts_bucket)
        self.job_queues[QUEUE_PREPARE] = self.preparation.queue
        self.job_definitions[JOB_DEFINITION_PREPARE_NAME] = self.preparation.job_definition
        if config.training.image_uri and repository_arn:
            # CDK warns that a registry image from ECR needs pull permissions: the execution
            # policy above grants them on exactly that repository.
            Annotations.of(definitions).acknowledge_warning(
                "@aws-cdk/aws-ecs:ecrImageRequiresPolicy",
                "The execution role's policy grants ECR pull on the configured image's repository.",
            )
        self.fallback = SpotFallback(
            self,
            "Fallback",
            naming=naming,
            source_queue=self.job_queues[QUEUE_SPOT_FIRST],
            target_queue=self.job_queues[QUEUE_ON_DEMAND],
            job_definition_names=[naming.resource(jobdefs.SINGLE), naming.resource(jobdefs.PREDICT)],
            key=key,
            log_retention_days=config.log_retention_days,
            removal_policy=removal,
        )
        self.fallback_function = self.fallback.function
        self.fallback_dead_letter_queue = self.fallback.dead_letter_queue
        self.discovery = DiscoveryParameters(
            self,
            "Discovery",
            naming=naming,
            values=discovery_values(self, config, data_bucket, artifacts_bucket, fsx=fsx),
            reservation_names=[r.name for r in config.training.reservations],
        )

    def _gpu_compute(self, config: PlatformConfig, vpc: ec2.IVpc, compute_subnets: ec2.SubnetSelection,
                     multinode_subnet: ec2.ISubnet, security_group: ec2.ISecurityGroup,
                     lustre: LinkedLustre | None) -> GpuCompute:
        """The GPU Spot, On-Demand and multi-node environments and their queues."""
        return GpuCompute(
            self,
            "Compute",
            naming=config.naming,
            settings=config.training.gpu_compute(),
            vpc=vpc,
            compute_subnets=compute_subnets,
            multinode_subnet=multinode_subnet,
            security_group=security_group,
            instance_role=self.roles.instance_role.without_policy_updates(),
            lustre=lustre,
            scheduling_policy=self.fair_share.policy,
        )

    def _job_definitions(self, config: PlatformConfig, image: ecs.ContainerImage, data_bucket: s3.IBucket,
                         artifacts_bucket: s3.IBucket, *, fsx: bool) -> jobdefs.TrainingJobDefinitions:
        """bert-finetune, bert-finetune-multinode and bert-predict."""
        t = config.training
        return jobdefs.TrainingJobDefinitions(
            self,
            "JobDefinitions",
            naming=config.naming,
            image=image,
            execution_role=self.roles.execution_role.without_policy_updates(),
            job_role=self.roles.job_role.without_policy_updates(),
            predict_role=self.roles.predict_role.without_policy_updates(),
            log_group=self.job_log_group,
            environment=job_environment(config, data_bucket, artifacts_bucket, fsx=fsx),
            training_environment=tracking_environment(config),
            data_bucket_name=data_bucket.bucket_name,
            artifacts_bucket_name=artifacts_bucket.bucket_name,
            fsx=fsx,
            single_node=jobdefs.ContainerResources(
                gpus=t.gpus_per_job, vcpus=t.vcpus_per_job, memory_mib=t.memory_mib_per_job
            ),
            per_node=jobdefs.ContainerResources(
                gpus=t.multinode_gpus_per_node,
                vcpus=t.multinode_vcpus_per_node,
                memory_mib=t.multinode_memory_mib_per_node,
            ),
            nodes=t.multinode_nodes,
            efa_interfaces=t.multinode_efa_interfaces(),
            shared_memory_mib=t.shared_memory_mib,
            retry_attempts=t.retry_attempts,
            timeout_minutes=t.timeout_minutes,
            predict_timeout_minutes=t.predict_timeout_minutes,
        )

    def _reserved_capacity(self, config: PlatformConfig, vpc: ec2.IVpc, private_subnets: Sequence[ec2.ISubnet],
                           security_group: ec2.ISecurityGroup,
                           lustre: LinkedLustre | None) -> reserved_capacity.ReservedCapacity:
        """A compute environment and queue per `training.reservations` entry (none by default)."""
        t = config.training
        return reserved_capacity.ReservedCapacity(
            self,
            "ReservedCapacity",
            naming=config.naming,
            reservations=[
                reserved_capacity.ReservedEnvironment(r.contract(), r.max_vcpus, private_subnets[r.subnet_index])
                for r in t.reservations
            ],
            container_stop_timeout_seconds=t.container_stop_timeout_seconds,
            lustre=lustre,
            root_volume_gib=t.root_volume_gib,
            unplaceable_wait_minutes=t.unplaceable_wait_minutes,
            vpc=vpc,
            security_group=security_group,
            instance_role=self.roles.instance_role.without_policy_updates(),
            scheduling_policy=self.fair_share.policy,
        )

    def _data_preparation(self, config: PlatformConfig, image: ecs.ContainerImage, vpc: ec2.IVpc,
                          compute_subnets: ec2.SubnetSelection, security_group: ec2.ISecurityGroup,
                          data_bucket: s3.IBucket, artifacts_bucket: s3.IBucket) -> DataPreparation:
        """The Spot CPU environment, the prepare queue and bert-prepare, run as the prepare role
        with only the job variables preparation reads."""
        p, t, naming = config.prepare, config.training, config.naming
        return DataPreparation(
            self,
            "DataPreparation",
            naming=naming,
            instance_types=p.instance_types,
            max_vcpus=p.max_vcpus,
            vcpus_per_job=p.vcpus_per_job,
            memory_mib_per_job=p.memory_mib_per_job,
            retry_attempts=p.retry_attempts,
            timeout_minutes=p.timeout_minutes,
            unplaceable_wait_minutes=t.unplaceable_wait_minutes,
            root_volume_gib=t.root_volume_gib,
            vpc=vpc,
            compute_subnets=compute_subnets,
            security_group=security_group,
            instance_role=self.roles.instance_role.without_policy_updates(),
            image=image,
            execution_role=self.roles.execution_role.without_policy_updates(),
            job_role=self.roles.prepare_role.without_policy_updates(),
            log_group=self.job_log_group,
            environment={k: v for k, v in job_environment(config, data_bucket, artifacts_bucket, fsx=False).items()
                         if k in (job.ENV_PROFILE, job.ENV_DATA_URI, job.ENV_ARTIFACTS_URI)},
            data_bucket_name=data_bucket.bucket_name,
            artifacts_bucket_name=artifacts_bucket.bucket_name,
            scheduling_policy=self.fair_share.policy,
        )


def training_image(stack: Stack, config: PlatformConfig
                   ) -> tuple[ecs.ContainerImage, str | None, ecr_assets.DockerImageAsset | None]:
    """A prebuilt URI from config, or the training image built from the repository at deploy;
    with the ECR repository ARN to pull from (None for another registry) and the image asset
    (None for a prebuilt image)."""
    if config.training.image_uri:
        return (
            ecs.ContainerImage.from_registry(config.training.image_uri),
            ecr_repository_arn_of(config.training.image_uri),
            None,
        )
    digest = base_image_digest()
    if not digest:  # the build would stop at FROM mid-deploy: say so at synth instead
        raise ConfigError(f"{BASE_IMAGE_DIGEST_FILE} holds no digest: run make base-image-digest "
                          "(or set training.image_uri to a prebuilt image)")
    efa_sha256 = efa_installer_sha256()
    require_efa_installer(config, efa_sha256)
    asset = ecr_assets.DockerImageAsset(
        stack,
        "TrainingImage",
        directory=str(REPO_ROOT),
        file=DOCKERFILE,
        platform=ecr_assets.Platform.LINUX_AMD64,
        build_args={IMAGE_VERSION_ARG: image_version(), BASE_IMAGE_DIGEST_ARG: digest,
                    EFA_INSTALLER_SHA256_ARG: efa_sha256},
    )
    # The asset lands in the CDK bootstrap's container-assets repository, shared by every CDK
    # app of the account and region. ECR grants stop at a repository (no per-image resource
    # or condition), so the pull grant is that whole repository; `training.image_uri` with a
    # repository of its own narrows it (docs/security.md).
    return ecs.ContainerImage.from_docker_image_asset(asset), asset.repository.repository_arn, asset


def discovery_values(stack: TrainingStack, config: PlatformConfig, data_bucket: s3.IBucket,
                     artifacts_bucket: s3.IBucket, *, fsx: bool) -> dict[str, str]:
    """What the CLI reads from SSM (bertbatch_contract.discovery)."""
    naming = config.naming
    return {
        discovery.QUEUE_SPOT_FIRST: naming.resource(QUEUE_SPOT_FIRST),
        discovery.QUEUE_ON_DEMAND: naming.resource(QUEUE_ON_DEMAND),
        discovery.QUEUE_MULTI_NODE: naming.resource(QUEUE_MULTI_NODE),
        discovery.JOB_DEFINITION_SINGLE: stack.job_definitions[jobdefs.SINGLE].job_definition_arn,
        discovery.JOB_DEFINITION_MULTI_NODE: stack.job_definitions[jobdefs.MULTI_NODE].job_definition_arn,
        discovery.JOB_DEFINITION_PREDICT: stack.job_definitions[jobdefs.PREDICT].job_definition_arn,
        discovery.QUEUE_PREPARE: naming.resource(QUEUE_PREPARE),
        discovery.JOB_DEFINITION_PREPARE: stack.preparation.job_definition.job_definition_arn,
        discovery.DATA_BUCKET: data_bucket.bucket_name,
        discovery.ARTIFACTS_BUCKET: artifacts_bucket.bucket_name,
        discovery.LOG_GROUP: stack.job_log_group.log_group_name,
        discovery.FSX_MOUNT_PATH: MOUNT_PATH if fsx else FSX_DISABLED,
        discovery.METRICS_NAMESPACE: metrics.DEFAULT_NAMESPACE,
        discovery.INTERNET_EGRESS: "true" if config.internet_egress else "false",
        discovery.MLFLOW_TRACKING_URI: config.tracking.mlflow_tracking_uri or discovery.NOT_CONFIGURED,
        discovery.TEAMS: teams.teams_value(config.teams.contract()),
        **{
            discovery.capacity_key(queue): discovery.capacity_value(environments)
            for queue, environments in stack.compute.capacity.items()
        },
        **reserved_capacity.discovery_values(stack.reserved, [r.contract() for r in config.training.reservations],
                                             naming),
    }


def job_environment(
    config: PlatformConfig, data_bucket: s3.IBucket, artifacts_bucket: s3.IBucket, *, fsx: bool
) -> dict[str, str]:
    """What the job definitions tell the container: where inputs and outputs are, the metrics
    namespace and profile, the checkpoint cadence; with FSx, where it is mounted (the data
    bucket's datasets prefix appears under it, see `job.FSX_MOUNT_FAILED_MARKER`)."""
    artifacts = layout.s3_uri(artifacts_bucket.bucket_name).rstrip("/")
    environment = {
        job.ENV_PROFILE: config.profile,
        job.ENV_DATA_URI: layout.s3_uri(data_bucket.bucket_name, layout.DATASETS_PREFIX.rstrip("/")),
        job.ENV_ARTIFACTS_URI: artifacts,
        job.ENV_CHECKPOINT_URI: layout.join(artifacts, layout.CHECKPOINTS_PREFIX),
        job.ENV_METRICS_NAMESPACE: metrics.DEFAULT_NAMESPACE,
        job.ENV_CHECKPOINT_EVERY_STEPS: str(config.training.checkpoint_every_steps),
        job.ENV_CHECKPOINT_EVERY_MINUTES: str(config.training.checkpoint_every_minutes),
    }
    if fsx:
        environment[job.ENV_FSX_MOUNT] = MOUNT_PATH
    return environment


def tracking_environment(config: PlatformConfig) -> dict[str, str]:
    """What only the training job definitions add: the MLflow tracking URI when the profile has
    one (unset, the container does no tracking and never imports MLflow)."""
    uri = config.tracking.mlflow_tracking_uri
    return {job.ENV_MLFLOW_TRACKING_URI: uri} if uri else {}
