"""Data preparation on cheap CPUs: a Spot CPU compute environment, the `prepare` queue and the
`bert-prepare` job definition, which runs `python -m bert_train prepare` in the training image.

`bertbatch prepare` submits it as an array job (one child per group of input files, each writing
its own tokenized shards and partial manifest), then one job that depends on the array and merges
the partial manifests (`--merge`). Tokenizing needs no GPU: a 4-vCPU Spot instance costs a tenth
of the cheapest GPU one. The command and its parameters come from the contract
(`bertbatch_contract.store`), so the CLI, this definition and the container cannot drift.

Retries: RETRY when the instance went away (`Host EC2*`, Spot reclaim) or the container exited 74
(storage unavailable); a retried child rewrites only its own output. EXIT on anything else (bad
input is reported in one line and fails the child at once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, Size
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from bertbatch_contract import layout, store
from bertbatch_contract.naming import Naming
from platform_constructs.batch_compute import (
    batch_user_data,
    cfn_of,
    encrypted_launch_template,
    unplaceable_actions,
)
from platform_constructs.job_definitions import instance_info_volume, retry_strategies
from platform_constructs.training_iam import compute_environment_name

QUEUE_PREPARE = "prepare"
ENVIRONMENT = "cpu-spot"
JOB_DEFINITION = "bert-prepare"
DEFAULT_STORE = "train"  # datasets/prepared/train/: the store of the default input, datasets/train.tsv
SHARED_MEMORY_MIB = 1024  # the tokenizer processes of a child
CONTAINER_STOP_TIMEOUT_SECONDS = 30  # a child holds nothing worth saving: a retry redoes its files


def prepare_parameter_defaults(data_bucket_name: str, artifacts_bucket_name: str) -> dict[str, str]:
    """Defaults of `bert-prepare`'s parameters: the job definitions' default training file into
    datasets/prepared/train/, with the staged default model's tokenizer, so a plain
    `aws batch submit-job` prepares the default dataset."""
    defaults = {parameter: row.job_default for parameter, row in store.JOB_PARAMETERS.items()}
    defaults[store.BY_NAME["input"].parameter or ""] = layout.s3_uri(data_bucket_name, layout.DEFAULT_TRAIN_KEY)
    defaults[store.BY_NAME["output"].parameter or ""] = layout.s3_uri(
        data_bucket_name, layout.prepared_prefix(DEFAULT_STORE))
    defaults[store.BY_NAME["model"].parameter or ""] = layout.staged_model_uri(
        artifacts_bucket_name, str(store.BY_NAME["model"].default))
    return defaults


class DataPreparation(Construct):
    """Attributes: `environment` (the Spot CPU compute environment), `queue` (batch.JobQueue),
    `job_definition` (batch.EcsJobDefinition), `launch_template`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        naming: Naming,
        instance_types: Sequence[str],
        max_vcpus: int,
        vcpus_per_job: int,
        memory_mib_per_job: int,
        retry_attempts: int,
        timeout_minutes: int,
        unplaceable_wait_minutes: int,
        root_volume_gib: int,
        vpc: ec2.IVpc,
        compute_subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        instance_role: iam.IRole,
        image: ecs.ContainerImage,
        execution_role: iam.IRole,
        job_role: iam.IRole,
        log_group: logs.ILogGroup,
        environment: Mapping[str, str],
        data_bucket_name: str,
        artifacts_bucket_name: str,
        scheduling_policy: batch.ISchedulingPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        user_data = batch_user_data(stop_timeout_seconds=CONTAINER_STOP_TIMEOUT_SECONDS, lustre=None)
        self.launch_template = encrypted_launch_template(
            self, "LaunchTemplate", user_data=user_data, root_volume_gib=root_volume_gib)
        self.environment = batch.ManagedEc2EcsComputeEnvironment(
            self,
            "CpuSpot",
            compute_environment_name=compute_environment_name(naming, ENVIRONMENT),
            spot=True,
            allocation_strategy=batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED,
            instance_types=[ec2.InstanceType(x) for x in instance_types],
            images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023)],
            use_optimal_instance_classes=False,
            minv_cpus=0,  # nothing runs, nothing is paid
            maxv_cpus=max_vcpus,
            instance_role=instance_role,
            security_groups=[security_group],
            launch_template=self.launch_template,
            vpc=vpc,
            vpc_subnets=compute_subnets,
        )
        cfn = cfn_of(self.environment)
        cfn.add_property_override("ComputeResources.LaunchTemplate.Version",
                                  self.launch_template.latest_version_number)
        cfn.add_property_deletion_override("ServiceRole")  # the Batch service-linked role
        self.environment.node.try_remove_child("BatchServiceRole")

        unplaceable = Duration.minutes(unplaceable_wait_minutes)
        self.queue = batch.JobQueue(
            self,
            "Queue",
            job_queue_name=naming.resource(QUEUE_PREPARE),
            compute_environments=[batch.OrderedComputeEnvironment(compute_environment=self.environment, order=1)],
            scheduling_policy=scheduling_policy,
            job_state_time_limit_actions=unplaceable_actions(unplaceable),
        )
        self.job_definition = batch.EcsJobDefinition(
            self,
            "JobDefinition",
            job_definition_name=naming.resource(JOB_DEFINITION),
            container=batch.EcsEc2ContainerDefinition(
                self,
                "Container",
                image=image,
                cpu=vcpus_per_job,
                memory=Size.mebibytes(memory_mib_per_job),
                command=store.job_command(),
                environment=dict(environment),
                execution_role=execution_role,
                job_role=job_role,
                linux_parameters=batch.LinuxParameters(
                    self, "Linux", shared_memory_size=Size.mebibytes(SHARED_MEMORY_MIB)),
                volumes=[instance_info_volume()],
                logging=ecs.LogDriver.aws_logs(log_group=log_group, stream_prefix=JOB_DEFINITION),
            ),
            parameters=prepare_parameter_defaults(data_bucket_name, artifacts_bucket_name),
            timeout=Duration.minutes(timeout_minutes),
            retry_attempts=retry_attempts,
            retry_strategies=retry_strategies(),
            propagate_tags=True,
        )
