"""The job roles: what each container may do with the buckets and the project key.

- the training role (`bert-finetune`, `bert-finetune-multinode`): reads datasets/ and models/,
  reads and writes checkpoints/ and runs/, deletes only under checkpoints/ (the checkpoint store
  prunes old checkpoints; nothing deletes a run's outputs);
- the prediction role (`bert-predict`): reads datasets/, models/ and runs/ (the model it scores
  with), writes only under predictions/: a scoring job cannot touch any run's checkpoints or
  outputs;
- the data preparation role (`bert-prepare`): reads datasets/ and models/ (a tokenizer), writes
  only datasets/prepared/.

Batch passes a job role per job definition, not per job, so no role can be narrowed to one run
id: a grant on `checkpoints/*` reaches every run's checkpoints, and the cdk-nag reasons say so.
Each role has one customer-managed policy (explicit statements, no AWS-managed policy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Aws, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from bertbatch_contract.layout import (
    CHECKPOINTS_PREFIX,
    DATASETS_PREFIX,
    MODELS_PREFIX,
    PREDICTIONS_PREFIX,
    PREPARED_PREFIX,
    RUNS_PREFIX,
)
from platform_constructs.nag import acknowledge

# Outputs of the Data stack that hold the bucket names (see stacks/data_stack.py).
DATA_BUCKET_OUTPUT = "DataBucketName"
ARTIFACTS_BUCKET_OUTPUT = "ArtifactsBucketName"
# Task roles trust ECS tasks of this account only.
THIS_ACCOUNT = {"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
# What the training container's MLflow client calls on a SageMaker managed tracking server: find
# or create the experiment, find the run again on resume (by tag), log parameters, metrics, inputs
# and the model (MLflow 3 logged models too). No registry, no deletes, no UI access.
SAGEMAKER_MLFLOW_ACTIONS = sorted([
    "sagemaker-mlflow:CreateExperiment",
    "sagemaker-mlflow:GetExperiment",
    "sagemaker-mlflow:GetExperimentByName",
    "sagemaker-mlflow:SearchExperiments",
    "sagemaker-mlflow:CreateRun",
    "sagemaker-mlflow:GetRun",
    "sagemaker-mlflow:UpdateRun",
    "sagemaker-mlflow:SearchRuns",
    "sagemaker-mlflow:SetTag",
    "sagemaker-mlflow:LogParam",
    "sagemaker-mlflow:LogMetric",
    "sagemaker-mlflow:LogBatch",
    "sagemaker-mlflow:LogInputs",
    "sagemaker-mlflow:LogOutputs",
    "sagemaker-mlflow:LogModel",
    "sagemaker-mlflow:GetMetricHistory",
    "sagemaker-mlflow:ListArtifacts",
    "sagemaker-mlflow:FinalizeLoggedModel",
    "sagemaker-mlflow:GetLoggedModel",
    "sagemaker-mlflow:SetLoggedModelTags",
])
# Object writes without delete: whole objects and multipart uploads (an upload the container
# abandons is aborted). The write probe is an aborted multipart upload, so it needs no delete.
PUT_ACTIONS = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
# Why a grant on a run's prefix cannot be narrower (the cdk-nag reasons of checkpoints/ and runs/).
ANY_RUN = ("Batch sets a job role per job definition, not per job, so it cannot be narrowed to one run id: "
           "any run's objects under that prefix are reachable")


@dataclass(frozen=True)
class ProjectData:
    """The buckets and the project key a job role is granted on, and the roles' description prefix."""

    owner: str
    key: kms.IKey
    data_bucket: s3.IBucket
    artifacts_bucket: s3.IBucket

    def datasets(self, prefix: str = DATASETS_PREFIX) -> str:
        return objects_arn(self.data_bucket, DATA_BUCKET_OUTPUT, prefix)

    def artifacts(self, prefix: str) -> str:
        return objects_arn(self.artifacts_bucket, ARTIFACTS_BUCKET_OUTPUT, prefix)


def stack_output(resource: Construct, output_id: str) -> str:
    """`Fn::GetStackOutput` of an output of the stack that holds `resource`.

    Used for the bucket names in object ARNs: an explicit reference renders the same in every
    synth, so the cdk-nag findings on those ARNs can be acknowledged one by one.
    """
    stack = Stack.of(resource)
    return Fn.get_stack_output(stack.stack_name, output_id, stack.region)


def objects_arn(bucket: s3.IBucket, output_id: str, prefix: str) -> str:
    """Objects under `prefix` of `bucket`, the bucket named through its stack output."""
    return f"arn:{Aws.PARTITION}:s3:::{stack_output(bucket, output_id)}/{prefix}*"


def nag_resource(scope: Construct, value: str) -> str:
    """A policy resource as cdk-nag writes it in a finding id: pseudo parameters and
    same-stack references as `<Name>` / `<LogicalId.Attr>`, other intrinsics as compact JSON."""

    def render(node: object) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, dict) and len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Fn::Join":
                return arg[0].join(render(part) for part in arg[1])
            if fn == "Ref":
                return f"<{arg}>"
            if fn == "Fn::GetAtt":
                return f"<{'.'.join(arg)}>"
        return json.dumps(node, separators=(",", ":"))

    return render(Stack.of(scope).resolve(value))


def acknowledge_object_wildcards(policy: iam.ManagedPolicy, grants: list[tuple[str, str]]) -> None:
    """IAM5 on `<bucket>/<prefix>*` object ARNs, one acknowledgment each with its reason."""
    for objects, why in grants:
        objects_arn = nag_resource(policy, objects)
        acknowledge(
            policy,
            f"AwsSolutions::AwsSolutions-IAM5[Resource::{objects_arn}]",
            f"Object keys are chosen at run time: {why}; the wildcard stops at that prefix of that bucket.",
        )


def list_statement(sid: str, bucket: s3.IBucket, prefixes: list[str]) -> iam.PolicyStatement:
    """ListBucket on `bucket`, only under `prefixes`."""
    return iam.PolicyStatement(
        sid=sid,
        actions=["s3:ListBucket"],
        resources=[bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [x for p in prefixes for x in (p, f"{p}*")]}},
    )


def datasets_statements(data: ProjectData) -> list[iam.PolicyStatement]:
    return [
        iam.PolicyStatement(sid="ReadDatasets", actions=["s3:GetObject"], resources=[data.datasets()]),
        list_statement("ListDatasets", data.data_bucket, [DATASETS_PREFIX]),
    ]


def key_through_s3(key: kms.IKey) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid="ProjectKeyThroughS3",
        actions=["kms:Decrypt", "kms:GenerateDataKey"],
        resources=[key.key_arn],
        conditions={"StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"}},
    )


def task_role(scope: Construct, name: str, description: str, statements: list[iam.PolicyStatement]
              ) -> tuple[iam.ManagedPolicy, iam.Role]:
    """`<name>Policy` and `<name>Role`: an ECS task role of this account with that one policy."""
    policy = iam.ManagedPolicy(scope, f"{name}Policy", description=description, statements=statements)
    role = iam.Role(
        scope,
        f"{name}Role",
        assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com", conditions=THIS_ACCOUNT),
        description=description,
        managed_policies=[policy],
    )
    return policy, role


def training_role(scope: Construct, data: ProjectData, mlflow_tracking_server_arn: str | None
                  ) -> tuple[iam.ManagedPolicy, iam.Role]:
    """`Job`: the training containers (datasets and staged models in, checkpoints and runs out)."""
    checkpoints, runs = data.artifacts(CHECKPOINTS_PREFIX), data.artifacts(RUNS_PREFIX)
    models = data.artifacts(MODELS_PREFIX)
    tracking = [
        iam.PolicyStatement(sid="LogToSageMakerMlflow", actions=SAGEMAKER_MLFLOW_ACTIONS,
                            resources=[mlflow_tracking_server_arn])
    ] if mlflow_tracking_server_arn else []
    description = f"{data.owner}: the training containers (datasets and models in, checkpoints and runs out)"
    policy, role = task_role(scope, "Job", description, [
        *datasets_statements(data),
        iam.PolicyStatement(sid="ReadWriteCheckpointsAndRuns", actions=["s3:GetObject", *PUT_ACTIONS],
                            resources=[checkpoints, runs]),
        # The checkpoint store keeps the newest few checkpoints of a run and deletes the older ones.
        iam.PolicyStatement(sid="PruneOldCheckpoints", actions=["s3:DeleteObject"], resources=[checkpoints]),
        iam.PolicyStatement(sid="ReadModels", actions=["s3:GetObject"], resources=[models]),
        list_statement("ListArtifacts", data.artifacts_bucket, [CHECKPOINTS_PREFIX, RUNS_PREFIX, MODELS_PREFIX]),
        key_through_s3(data.key),
        *tracking,
    ])
    acknowledge_object_wildcards(policy, [
        (data.datasets(), "a training job reads any dataset object under datasets/ of the data bucket"),
        (checkpoints, f"a training job writes its checkpoints and prunes old ones under checkpoints/; {ANY_RUN}"),
        (runs, f"a training job writes its model and metrics under runs/ (never deletes there); {ANY_RUN}"),
        (models, "a training job reads the staged base model it is given under models/"),
    ])
    return policy, role


def prediction_role(scope: Construct, data: ProjectData) -> tuple[iam.ManagedPolicy, iam.Role]:
    """`Predict`: batch scoring (the data and a model in, predictions out); no write of any kind
    to checkpoints/ or runs/."""
    models_and_runs = [data.artifacts(MODELS_PREFIX), data.artifacts(RUNS_PREFIX)]
    predictions = data.artifacts(PREDICTIONS_PREFIX)
    description = f"{data.owner}: the prediction container (datasets and a model in, predictions out)"
    policy, role = task_role(scope, "Predict", description, [
        *datasets_statements(data),
        iam.PolicyStatement(sid="ReadModelsAndRuns", actions=["s3:GetObject"], resources=models_and_runs),
        # Delete: a shard's segments and progress record once its part file is written.
        iam.PolicyStatement(sid="ReadWritePredictions", actions=["s3:GetObject", "s3:DeleteObject", *PUT_ACTIONS],
                            resources=[predictions]),
        list_statement("ListArtifacts", data.artifacts_bucket, [RUNS_PREFIX, MODELS_PREFIX, PREDICTIONS_PREFIX]),
        key_through_s3(data.key),
    ])
    acknowledge_object_wildcards(policy, [
        (data.datasets(), "a prediction job reads the input it scores, any object under datasets/ of the data bucket"),
        (models_and_runs[0], "a prediction job reads the staged or registered model it is given under models/"),
        (models_and_runs[1], "a prediction job reads the trained model it is given under runs/ (read only); "
                             + ANY_RUN),
        (predictions, "a prediction job writes, and cleans up after, its shards and manifests under predictions/ "
                      "(any prediction id: Batch cannot put the id into a role)"),
    ])
    return policy, role


def prepare_role(scope: Construct, data: ProjectData) -> tuple[iam.ManagedPolicy, iam.Role]:
    """`Prepare`: read the raw data and the staged tokenizers; write tokenized stores, and nothing
    else: a bug in preparation can neither touch the inputs nor any training output."""
    stores, models = data.datasets(PREPARED_PREFIX), data.artifacts(MODELS_PREFIX)
    description = f"{data.owner}: the data preparation container (datasets in, tokenized stores out)"
    policy, role = task_role(scope, "Prepare", description, [
        *datasets_statements(data),
        # No delete: a retried child overwrites its own files, and the write probe is aborted.
        iam.PolicyStatement(sid="WriteTokenizedStores", actions=PUT_ACTIONS, resources=[stores]),
        iam.PolicyStatement(sid="ReadStagedModels", actions=["s3:GetObject"], resources=[models]),
        list_statement("ListStagedModels", data.artifacts_bucket, [MODELS_PREFIX]),
        key_through_s3(data.key),
    ])
    acknowledge_object_wildcards(policy, [
        (data.datasets(), "preparation reads the input files it is given under datasets/ of the data bucket"),
        (stores, "preparation writes a store's shards and manifests under datasets/prepared/ (any store name: "
                 "Batch cannot put the name into a role)"),
        (models, "preparation reads the tokenizer of the staged model it is given under models/"),
    ])
    return policy, role
