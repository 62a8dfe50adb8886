"""The job definitions of the training image: `bert-finetune` (one node, 1..N GPUs),
`bert-finetune-multinode` (multi-node parallel, torchrun in the image's entrypoint) and
`bert-predict` (batch scoring, one GPU).

The command is `--flag Ref::<parameter>` pairs generated from the contract's tables
(`bertbatch_contract.hyperparameters`, `bertbatch_contract.prediction`), as are the parameter
defaults, so the CLI, the job definitions and the container cannot drift. A `Ref::` without a
default reaches the container as its literal text: the CLI sends those parameters on every
submit (`predict_parameters_without_default`).
Retries: RETRY when the instance went away (`Host EC2*`, i.e. Spot reclaim), when the container
exited 75 (it caught SIGTERM and wrote a checkpoint) or 74 (the checkpoint store or the host's
FSx was unavailable; the next attempt resumes), EXIT on anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Size
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from bertbatch_contract import hyperparameters, job, layout, prediction
from bertbatch_contract.naming import Naming
from platform_constructs.efa import EFA_ENVIRONMENT, verbs_devices
from platform_constructs.lustre import MOUNT_PATH

SINGLE = "bert-finetune"
MULTI_NODE = "bert-finetune-multinode"
PREDICT = "bert-predict"
PREDICT_GPUS = 1  # one process per job; an array job spreads shards over several GPUs
FSX_VOLUME = "fsx"
INSTANCE_INFO_VOLUME = "instance-info"
FSX_CACHE_VOLUME = "fsx-cache"
FSX_CACHE_PATH = f"{MOUNT_PATH}/{job.FSX_CACHE_DIR}"
NOFILE_LIMIT = 65536
# One node range with an open upper bound: SubmitJob's `nodeOverrides.numNodes` (what
# `bertbatch submit --nodes N` sends) is only allowed for such a range.
OPEN_NODE_RANGE = "0:"


@dataclass(frozen=True)
class ContainerResources:
    """What one container (one node of a multi-node job) asks for."""

    gpus: int
    vcpus: int
    memory_mib: int


def default_parameters(data_bucket_name: str, artifacts_bucket_name: str) -> dict[str, str]:
    """The job definitions' parameter defaults: the inputs under the data bucket, then the
    defaults of the hyperparameter table, with the default model as its staged copy in the
    artifacts bucket (jobs have no internet: a plain `aws batch submit-job` must not ask a hub)."""
    defaults = {
        "train_uri": layout.s3_uri(data_bucket_name, layout.DEFAULT_TRAIN_KEY),
        "eval_uri": layout.s3_uri(data_bucket_name, layout.DEFAULT_EVAL_KEY),
        **hyperparameters.parameter_defaults(),
    }
    model = hyperparameters.BY_NAME["model"]
    defaults[str(model.parameter)] = layout.staged_model_uri(artifacts_bucket_name, str(model.default))
    return defaults


def predict_parameter_defaults() -> dict[str, str]:
    """`bert-predict`'s parameter defaults: the rows of the prediction table that have one, and ""
    (not given) for those the container takes from the run's training_args.json."""
    return {
        parameter: row.job_default
        for parameter, row in prediction.JOB_PARAMETERS.items()
        if row.default is not None or row.name in prediction.FROM_TRAINING
    }


def predict_parameters_without_default() -> list[str]:
    """The `bert-predict` parameters a submit must always set (the model, the input, and the
    optional output and shard count, whose defaults live in the container, not in Batch)."""
    return [parameter for parameter in prediction.JOB_PARAMETERS if parameter not in predict_parameter_defaults()]


def efa_device(path: str) -> batch.Device:
    """A host's EFA verbs device in the container, as the EFA provider opens it."""
    permissions = [batch.DevicePermission.READ, batch.DevicePermission.WRITE, batch.DevicePermission.MKNOD]
    return batch.Device(host_path=path, container_path=path, permissions=permissions)


def instance_info_volume() -> batch.EcsVolume:
    """The host's instance file (job.INSTANCE_INFO_FILE, written at boot), read-only: how the cost
    cap learns the instance type and life cycle now that a container cannot reach IMDS."""
    return batch.EcsVolume.host(name=INSTANCE_INFO_VOLUME, host_path=job.INSTANCE_INFO_DIR,
                                container_path=job.INSTANCE_INFO_DIR, readonly=True)


def retry_strategies() -> list[batch.RetryStrategy]:
    return [
        batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom(on_status_reason="Host EC2*")),
        batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom(on_exit_code=str(job.EXIT_INTERRUPTED))),
        # The checkpoint store (or the host's FSx) was unavailable: the next attempt resumes.
        batch.RetryStrategy.of(
            batch.Action.RETRY, batch.Reason.custom(on_exit_code=str(job.EXIT_STORAGE_UNAVAILABLE))
        ),
        batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom(on_reason="*")),
    ]


class TrainingJobDefinitions(Construct):
    """Attribute `definitions`: dict 'bert-finetune' | 'bert-finetune-multinode' | 'bert-predict'
    -> job definition."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        naming: Naming,
        image: ecs.ContainerImage,
        execution_role: iam.IRole,
        job_role: iam.IRole,
        predict_role: iam.IRole,
        log_group: logs.ILogGroup,
        environment: Mapping[str, str],
        training_environment: Mapping[str, str],
        data_bucket_name: str,
        artifacts_bucket_name: str,
        fsx: bool,
        single_node: ContainerResources,
        per_node: ContainerResources,
        nodes: int,
        efa_interfaces: int,
        shared_memory_mib: int,
        retry_attempts: int,
        timeout_minutes: int,
        predict_timeout_minutes: int,
    ) -> None:
        """`single_node`: the `bert-finetune` container; `per_node`: each of the `nodes`
        containers of `bert-finetune-multinode` (with the verbs device of each of its hosts'
        `efa_interfaces`, none when 0); `bert-predict`
        asks for one GPU and the vCPUs and memory of `single_node`, and runs as `predict_role`
        (the training ones as `job_role`). `environment` goes to every
        container, `training_environment` (experiment tracking) to the two training ones only."""
        super().__init__(scope, construct_id)
        self._image, self._log_group = image, log_group
        self._execution_role, self._job_role, self._predict_role = execution_role, job_role, predict_role
        self._environment = dict(environment)
        training_env = {**self._environment, **training_environment}
        self._fsx, self._shared_memory_mib = fsx, shared_memory_mib

        retries = dict(retry_attempts=retry_attempts, retry_strategies=retry_strategies(), propagate_tags=True)
        common = dict(
            parameters=default_parameters(data_bucket_name, artifacts_bucket_name),
            timeout=Duration.minutes(timeout_minutes),
            **retries,
        )
        single = batch.EcsJobDefinition(
            self,
            "Single",
            job_definition_name=naming.resource(SINGLE),
            container=self._container(
                "SingleContainer", single_node, stream=SINGLE, command=hyperparameters.job_command(), env=training_env
            ),
            **common,
        )
        multi = batch.MultiNodeJobDefinition(
            self,
            "MultiNode",
            job_definition_name=naming.resource(MULTI_NODE),
            main_node=0,
            containers=[
                batch.MultiNodeContainer(
                    start_node=0,
                    end_node=nodes - 1,
                    container=self._container(
                        "MultiNodeContainer",
                        per_node,
                        stream=MULTI_NODE,
                        command=hyperparameters.job_command(),
                        env=training_env,
                        efa_interfaces=efa_interfaces,
                    ),
                )
            ],
            **common,
        )
        cfn_multi: Any = multi.node.default_child  # the L1 batch.CfnJobDefinition
        cfn_multi.add_property_override("NodeProperties.NodeRangeProperties.0.TargetNodes", OPEN_NODE_RANGE)
        predict = batch.EcsJobDefinition(
            self,
            "Predict",
            job_definition_name=naming.resource(PREDICT),
            container=self._container(
                "PredictContainer",
                ContainerResources(gpus=PREDICT_GPUS, vcpus=single_node.vcpus, memory_mib=single_node.memory_mib),
                stream=PREDICT,
                command=prediction.job_command(),
                env=self._environment,
                job_role=self._predict_role,
            ),
            parameters=predict_parameter_defaults(),
            timeout=Duration.minutes(predict_timeout_minutes),
            **retries,
        )
        self.definitions: dict[str, batch.EcsJobDefinition | batch.MultiNodeJobDefinition] = {
            SINGLE: single,
            MULTI_NODE: multi,
            PREDICT: predict,
        }

    def _container(
        self,
        construct_id: str,
        resources: ContainerResources,
        *,
        stream: str,
        command: list[str],
        env: Mapping[str, str],
        efa_interfaces: int = 0,
        job_role: iam.IRole | None = None,
    ) -> batch.EcsEc2ContainerDefinition:
        """A container of the training image; `job_role` defaults to the training role."""
        linux = batch.LinuxParameters(
            self, f"{construct_id}Linux", shared_memory_size=Size.mebibytes(self._shared_memory_mib)
        )
        env = dict(env)
        if efa_interfaces:
            linux.add_devices(*(efa_device(path) for path in verbs_devices(efa_interfaces)))
            env.update(EFA_ENVIRONMENT)
        volumes = [instance_info_volume()]
        if self._fsx:
            volumes += [
                batch.EcsVolume.host(name=FSX_VOLUME, host_path=MOUNT_PATH, container_path=MOUNT_PATH, readonly=True),
                # Inside the read-only mount, the tokenized-dataset cache is writable (fsx.py).
                batch.EcsVolume.host(name=FSX_CACHE_VOLUME, host_path=FSX_CACHE_PATH, container_path=FSX_CACHE_PATH,
                                     readonly=False),
            ]
        return batch.EcsEc2ContainerDefinition(
            self,
            construct_id,
            image=self._image,
            cpu=resources.vcpus,
            memory=Size.mebibytes(resources.memory_mib),
            gpu=resources.gpus,
            command=command,
            environment=env,
            execution_role=self._execution_role,
            job_role=job_role or self._job_role,
            linux_parameters=linux,
            ulimits=[
                batch.Ulimit(name=batch.UlimitName.MEMLOCK, soft_limit=-1, hard_limit=-1),
                batch.Ulimit(name=batch.UlimitName.NOFILE, soft_limit=NOFILE_LIMIT, hard_limit=NOFILE_LIMIT),
            ],
            volumes=volumes,
            logging=ecs.LogDriver.aws_logs(log_group=self._log_group, stream_prefix=stream),
        )
