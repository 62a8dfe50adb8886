"""Training stack: Batch GPU compute, queues, job definitions, IAM, fallback, discovery."""

from __future__ import annotations

from typing import Any, Sequence

from aws_cdk import (
    Annotations,
    Stack,
    aws_ec2 as ec2,
    aws_ecr_assets as ecr_assets,
    aws_ecs as ecs,
    aws_kms as kms,
    aws_s3 as s3,
)
from constructs import Construct

from bertbatch import discovery
from platform_constructs import job_definitions as jobdefs
from platform_constructs.batch_compute import QUEUE_MULTI_NODE, QUEUE_ON_DEMAND, QUEUE_SPOT_FIRST, GpuCompute
from platform_constructs.contracts import TRAINING_CONTAINER_DIR, contract, metrics
from platform_constructs.discovery_params import DiscoveryParameters
from platform_constructs.fallback import SpotFallback
from platform_constructs.logs import encrypted_log_group
from platform_constructs.lustre import DATASETS_PREFIX, FILE_SYSTEM_PATH, MOUNT_PATH, LinkedLustre
from platform_constructs.training_iam import TrainingRoles, ecr_repository_arn_of
from stacks.config import PlatformConfig

FSX_DISABLED = "none"  # discovery value of the FSx mount path when FSx is off
IMAGE_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache"]


class TrainingStack(Stack):
    """Exposes `job_queues` (dict: 'spot-first', 'on-demand', 'multi-node' -> batch.IJobQueue),
    `job_definitions` (dict: 'bert-finetune', 'bert-finetune-multinode' -> job definition),
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
        t = config.training
        project, profile = config.project_name, config.profile
        removal = config.removal_policy_value

        # --- image: a prebuilt URI from config, or training_container/ built at deploy -----
        if t.image_uri:
            self.image_asset = None
            image = ecs.ContainerImage.from_registry(t.image_uri)
            repository_arn = ecr_repository_arn_of(t.image_uri)
        else:
            self.image_asset = ecr_assets.DockerImageAsset(
                self,
                "TrainingImage",
                directory=str(TRAINING_CONTAINER_DIR),
                platform=ecr_assets.Platform.LINUX_AMD64,
                exclude=IMAGE_EXCLUDES,
            )
            image = ecs.ContainerImage.from_docker_image_asset(self.image_asset)
            repository_arn = self.image_asset.repository.repository_arn

        # --- logs and roles ----------------------------------------------------------------
        self.job_log_group = encrypted_log_group(
            self,
            "JobLogs",
            name=f"/{project}/{profile}/jobs",
            key=key,
            days=config.log_retention_days,
            removal_policy=removal,
        )
        self.roles = TrainingRoles(
            self,
            "Roles",
            project=project,
            profile=profile,
            key=key,
            data_bucket=data_bucket,
            artifacts_bucket=artifacts_bucket,
            log_group=self.job_log_group,
            image_repository_arn=repository_arn,
        )

        # --- compute and queues --------------------------------------------------------------
        self.compute = GpuCompute(
            self,
            "Compute",
            config=config,
            vpc=vpc,
            compute_subnets=compute_subnets,
            multinode_subnet=private_subnets[t.multinode_subnet_index],
            security_group=compute_security_group,
            instance_role=self.roles.instance_role.without_policy_updates(),
            lustre=lustre,
        )
        self.job_queues = dict(self.compute.queues)

        # --- job definitions -----------------------------------------------------------------
        fsx = lustre is not None
        data_uri = f"{MOUNT_PATH}{FILE_SYSTEM_PATH}" if fsx else f"s3://{data_bucket.bucket_name}/{DATASETS_PREFIX.rstrip('/')}"
        environment = {
            contract.ENV_PROFILE: profile,
            contract.ENV_DATA_URI: data_uri,
            contract.ENV_ARTIFACTS_URI: f"s3://{artifacts_bucket.bucket_name}",
            contract.ENV_CHECKPOINT_URI: f"s3://{artifacts_bucket.bucket_name}/{contract.CHECKPOINTS_PREFIX.rstrip('/')}",
            contract.ENV_METRICS_NAMESPACE: metrics.DEFAULT_NAMESPACE,
            contract.ENV_CHECKPOINT_EVERY_STEPS: str(t.checkpoint_every_steps),
            contract.ENV_CHECKPOINT_EVERY_MINUTES: str(t.checkpoint_every_minutes),
        }
        if fsx:
            environment[contract.ENV_FSX_MOUNT] = MOUNT_PATH
        definitions = jobdefs.TrainingJobDefinitions(
            self,
            "JobDefinitions",
            config=config,
            image=image,
            execution_role=self.roles.execution_role.without_policy_updates(),
            job_role=self.roles.job_role.without_policy_updates(),
            log_group=self.job_log_group,
            environment=environment,
            data_bucket_name=data_bucket.bucket_name,
            fsx=fsx,
        )
        self.job_definitions = dict(definitions.definitions)
        if t.image_uri and repository_arn:
            # CDK warns that a registry image from ECR needs pull permissions: the execution
            # policy above grants them on exactly that repository.
            Annotations.of(definitions).acknowledge_warning(
                "@aws-cdk/aws-ecs:ecrImageRequiresPolicy",
                "The execution role's policy grants ECR pull on the configured image's repository.",
            )

        # --- fallback --------------------------------------------------------------------------
        self.fallback = SpotFallback(
            self,
            "Fallback",
            project=project,
            profile=profile,
            source_queue=self.job_queues[QUEUE_SPOT_FIRST],
            target_queue=self.job_queues[QUEUE_ON_DEMAND],
            job_definition_names=[discovery.resource_name(jobdefs.SINGLE, profile=profile, project=project)],
            key=key,
            log_retention_days=config.log_retention_days,
            removal_policy=removal,
        )
        self.fallback_function = self.fallback.function
        self.fallback_dead_letter_queue = self.fallback.dead_letter_queue

        # --- discovery -------------------------------------------------------------------------
        queue_name = lambda kind: discovery.resource_name(kind, profile=profile, project=project)  # noqa: E731
        self.discovery = DiscoveryParameters(
            self,
            "Discovery",
            project=project,
            profile=profile,
            values={
                discovery.QUEUE_SPOT_FIRST: queue_name(QUEUE_SPOT_FIRST),
                discovery.QUEUE_ON_DEMAND: queue_name(QUEUE_ON_DEMAND),
                discovery.QUEUE_MULTI_NODE: queue_name(QUEUE_MULTI_NODE),
                discovery.JOB_DEFINITION_SINGLE: self.job_definitions[jobdefs.SINGLE].job_definition_arn,
                discovery.JOB_DEFINITION_MULTI_NODE: self.job_definitions[jobdefs.MULTI_NODE].job_definition_arn,
                discovery.DATA_BUCKET: data_bucket.bucket_name,
                discovery.ARTIFACTS_BUCKET: artifacts_bucket.bucket_name,
                discovery.LOG_GROUP: self.job_log_group.log_group_name,
                discovery.FSX_MOUNT_PATH: MOUNT_PATH if fsx else FSX_DISABLED,
                discovery.METRICS_NAMESPACE: metrics.DEFAULT_NAMESPACE,
            },
        )
