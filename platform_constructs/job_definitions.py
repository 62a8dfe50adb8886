"""The training job definitions: `bert-finetune` (one node, 1..N GPUs) and
`bert-finetune-multinode` (multi-node parallel, torchrun in the image's entrypoint).

The command is only the flags, built from `bert_train.contract.JOB_PARAMETERS` as
`[flag, "Ref::<name>"]` pairs, so the CLI, the job definitions and the container cannot drift.
Retries: RETRY when the instance went away (`Host EC2*`, i.e. Spot reclaim) or the container
exited 75 (it caught SIGTERM and wrote a checkpoint), EXIT on anything else.
"""

from __future__ import annotations

from typing import Mapping

from aws_cdk import Duration, Size, aws_batch as batch, aws_ecs as ecs, aws_iam as iam, aws_logs as logs
from constructs import Construct

from bertbatch import discovery
from platform_constructs.contracts import contract
from platform_constructs.lustre import MOUNT_PATH
from stacks.config import PlatformConfig

SINGLE = "bert-finetune"
MULTI_NODE = "bert-finetune-multinode"
FSX_VOLUME = "fsx"
NOFILE_LIMIT = 65536
EFA_DEVICE = "/dev/infiniband/uverbs0"


def job_command() -> list[str]:
    """`--flag Ref::name` for every Batch parameter; the image's entrypoint runs the trainer."""
    command: list[str] = []
    for name, flag in contract.JOB_PARAMETERS.items():
        command += [flag, f"Ref::{name}"]
    return command


def default_parameters(data_bucket_name: str) -> dict[str, str]:
    return {
        "train_uri": f"s3://{data_bucket_name}/datasets/train.tsv",
        "eval_uri": f"s3://{data_bucket_name}/datasets/dev.tsv",
        **contract.DEFAULT_PARAMETERS,
    }


def retry_strategies() -> list[batch.RetryStrategy]:
    return [
        batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom(on_status_reason="Host EC2*")),
        batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom(on_exit_code=str(contract.EXIT_INTERRUPTED))),
        batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom(on_reason="*")),
    ]


class TrainingJobDefinitions(Construct):
    """Attribute `definitions`: dict 'bert-finetune' | 'bert-finetune-multinode' -> job definition."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        image: ecs.ContainerImage,
        execution_role: iam.IRole,
        job_role: iam.IRole,
        log_group: logs.ILogGroup,
        environment: Mapping[str, str],
        data_bucket_name: str,
        fsx: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        t = config.training
        name = lambda kind: discovery.resource_name(kind, profile=config.profile, project=config.project_name)  # noqa: E731
        volumes = (
            [batch.EcsVolume.host(name=FSX_VOLUME, host_path=MOUNT_PATH, container_path=MOUNT_PATH, readonly=True)]
            if fsx
            else None
        )
        ulimits = [
            batch.Ulimit(name=batch.UlimitName.MEMLOCK, soft_limit=-1, hard_limit=-1),
            batch.Ulimit(name=batch.UlimitName.NOFILE, soft_limit=NOFILE_LIMIT, hard_limit=NOFILE_LIMIT),
        ]
        parameters = default_parameters(data_bucket_name)

        def container(construct_id: str, *, gpus: int, vcpus: int, memory_mib: int, stream: str, efa: bool = False):
            linux = batch.LinuxParameters(
                self, f"{construct_id}Linux", shared_memory_size=Size.mebibytes(t.shared_memory_mib)
            )
            env = dict(environment)
            if efa:
                linux.add_devices(
                    batch.Device(
                        host_path=EFA_DEVICE,
                        container_path=EFA_DEVICE,
                        permissions=[batch.DevicePermission.READ, batch.DevicePermission.WRITE, batch.DevicePermission.MKNOD],
                    )
                )
                env["FI_PROVIDER"] = "efa"
            return batch.EcsEc2ContainerDefinition(
                self,
                construct_id,
                image=image,
                cpu=vcpus,
                memory=Size.mebibytes(memory_mib),
                gpu=gpus,
                command=job_command(),
                environment=env,
                execution_role=execution_role,
                job_role=job_role,
                linux_parameters=linux,
                ulimits=ulimits,
                volumes=volumes,
                logging=ecs.LogDriver.aws_logs(log_group=log_group, stream_prefix=stream),
            )

        common = dict(
            parameters=parameters,
            retry_attempts=t.retry_attempts,
            retry_strategies=retry_strategies(),
            timeout=Duration.minutes(t.timeout_minutes),
            propagate_tags=True,
        )
        single = batch.EcsJobDefinition(
            self,
            "Single",
            job_definition_name=name(SINGLE),
            container=container(
                "SingleContainer",
                gpus=t.gpus_per_job,
                vcpus=t.vcpus_per_job,
                memory_mib=t.memory_mib_per_job,
                stream=SINGLE,
            ),
            **common,
        )
        multi = batch.MultiNodeJobDefinition(
            self,
            "MultiNode",
            job_definition_name=name(MULTI_NODE),
            main_node=0,
            containers=[
                batch.MultiNodeContainer(
                    start_node=0,
                    end_node=t.multinode_nodes - 1,
                    container=container(
                        "MultiNodeContainer",
                        gpus=t.multinode_gpus_per_node,
                        vcpus=t.multinode_vcpus_per_node,
                        memory_mib=t.multinode_memory_mib_per_node,
                        stream=MULTI_NODE,
                        efa=t.efa,
                    ),
                )
            ],
            **common,
        )
        self.definitions = {SINGLE: single, MULTI_NODE: multi}
