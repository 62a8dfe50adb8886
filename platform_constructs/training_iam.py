"""Least-privilege IAM for the training platform: instance, execution and job roles.

Each role gets one customer-managed policy with explicit statements (no AWS-managed policies,
no inline policies). The roles are handed to the Batch constructs through
`without_policy_updates()`, so no construct can widen them with an implicit grant: what the
template holds is exactly what is written here.
"""

from __future__ import annotations

import json
import re

from aws_cdk import Aws, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
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
from bertbatch_contract.naming import Naming
from platform_constructs.nag import acknowledge

ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
LOG_WRITE_ACTIONS = ["logs:CreateLogStream", "logs:PutLogEvents"]
# ECS container agent calls on its own cluster and container instance (the ECS part of
# AmazonEC2ContainerServiceforEC2Role, without CreateCluster: Batch creates the cluster).
ECS_AGENT_ACTIONS = [
    "ecs:DeregisterContainerInstance",
    "ecs:Poll",
    "ecs:RegisterContainerInstance",
    "ecs:StartTelemetrySession",
    "ecs:SubmitAttachmentStateChanges",
    "ecs:SubmitContainerStateChange",
    "ecs:SubmitTaskStateChange",
    "ecs:UpdateContainerInstancesState",
    "ecs:ListTagsForResource",
]
# Actions with no resource-level permission: the only place `Resource: "*"` appears.
NO_RESOURCE_LEVEL_ACTIONS = frozenset({
    "ecs:DiscoverPollEndpoint",
    "ec2:DescribeTags",
    "ecr:GetAuthorizationToken",
    "batch:DescribeJobs",
})
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
# Outputs of the Data stack that hold the bucket names (see stacks/data_stack.py).
DATA_BUCKET_OUTPUT = "DataBucketName"
ARTIFACTS_BUCKET_OUTPUT = "ArtifactsBucketName"
# Task roles trust ECS tasks of this account only.
_THIS_ACCOUNT = {"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
_ECR_URI = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)")


def ecr_repository_arn_of(image_uri: str) -> str | None:
    """The ECR repository ARN of a prebuilt image URI, or None for other registries."""
    m = _ECR_URI.match(image_uri)
    if not m:
        return None
    account, region, repo = m.groups()
    return f"arn:{Aws.PARTITION}:ecr:{region}:{account}:repository/{repo}"


def compute_environment_name(naming: Naming, kind: str) -> str:
    """<project>-<profile>-ce-<kind>: the instance role's ECS permissions depend on this shape."""
    return naming.resource(f"ce-{kind}")


def batch_cluster_prefix(naming: Naming) -> str:
    """Batch names a managed environment's ECS cluster `<environment name>_Batch_<uuid>`; the
    compute environments are named `<project>-<profile>-ce-...`."""
    return compute_environment_name(naming, "")


def stack_output(resource: Construct, output_id: str) -> str:
    """`Fn::GetStackOutput` of an output of the stack that holds `resource`.

    Used for the bucket names in object ARNs: an explicit reference renders the same in every
    synth, so the cdk-nag findings on those ARNs can be acknowledged one by one.
    """
    stack = Stack.of(resource)
    return Fn.get_stack_output(stack.stack_name, output_id, stack.region)


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


class TrainingRoles(Construct):
    """`instance_role` (EC2 instances of the compute environments), `execution_role` (ECS
    agent: image pull, awslogs), `job_role` (the training container), `prepare_role` (the data
    preparation container: reads datasets/, writes datasets/prepared/ only)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        naming: Naming,
        key: kms.IKey,
        data_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        log_group: logs.ILogGroup,
        image_repository_arn: str | None,
        mlflow_tracking_server_arn: str | None = None,
    ) -> None:
        """`mlflow_tracking_server_arn`: a SageMaker managed MLflow tracking server the job role
        may log to (None: no SageMaker MLflow permissions)."""
        super().__init__(scope, construct_id)
        owner = f"{naming.project} {naming.profile}"
        instance_policy, self.instance_role = self._instance_role(naming, owner)
        execution_policy, self.execution_role = self._execution_role(owner, log_group, image_repository_arn)
        job_policy, self.job_role = self._job_role(
            owner, key, data_bucket, artifacts_bucket, mlflow_tracking_server_arn
        )
        prepare_policy, self.prepare_role = self._prepare_role(owner, key, data_bucket, artifacts_bucket)
        self.policies = {"instance": instance_policy, "execution": execution_policy, "job": job_policy,
                         "prepare": prepare_policy}

    def _instance_role(self, naming: Naming, owner: str) -> tuple[iam.ManagedPolicy, iam.Role]:
        ecs = f"arn:{Aws.PARTITION}:ecs:{Aws.REGION}:{Aws.ACCOUNT_ID}"
        clusters = batch_cluster_prefix(naming) + "*"
        instance_policy = iam.ManagedPolicy(
            self,
            "InstancePolicy",
            description=f"{owner}: ECS agent on Batch instances (GPU and data preparation)",
            statements=[
                iam.PolicyStatement(
                    sid="EcsAgentOnProjectClusters",
                    actions=ECS_AGENT_ACTIONS,
                    resources=[
                        f"{ecs}:cluster/{clusters}",
                        f"{ecs}:container-instance/{clusters}/*",
                        f"{ecs}:task/{clusters}/*",
                    ],
                ),
                iam.PolicyStatement(
                    sid="EcsTagOnRegister",
                    actions=["ecs:TagResource"],
                    resources=[f"{ecs}:container-instance/{clusters}/*"],
                    conditions={"StringEquals": {"ecs:CreateAction": "RegisterContainerInstance"}},
                ),
                iam.PolicyStatement(
                    sid="NoResourceLevelPermissions",
                    actions=["ecs:DiscoverPollEndpoint", "ec2:DescribeTags"],
                    resources=["*"],
                ),
            ],
        )
        acknowledge(
            instance_policy,
            "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
            "ecs:DiscoverPollEndpoint and ec2:DescribeTags have no resource-level permissions; the "
            "ECS agent on each Batch instance needs them to find its endpoint and read instance tags.",
        )
        acknowledge(
            instance_policy,
            f"AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:cluster/{clusters}]",
            "Batch creates and names the ECS clusters of managed compute environments itself "
            "(<environment name>_Batch_<uuid>); the wildcard is limited to this project's environments.",
        )
        for kind in ("container-instance", "task"):
            acknowledge(
                instance_policy,
                f"AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:{kind}/{clusters}/*]",
                f"ECS {kind} ids are assigned at run time inside the Batch-created clusters of this "
                "project's compute environments; the ARN is scoped to those clusters.",
            )
        role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description=f"{owner}: Batch instances (ECS agent)",
            managed_policies=[instance_policy],
        )
        return instance_policy, role

    def _execution_role(
        self, owner: str, log_group: logs.ILogGroup, image_repository_arn: str | None
    ) -> tuple[iam.ManagedPolicy, iam.Role]:
        execution_statements = [
            iam.PolicyStatement(sid="WriteJobLogs", actions=LOG_WRITE_ACTIONS, resources=[log_group.log_group_arn]),
        ]
        if image_repository_arn:
            execution_statements += [
                iam.PolicyStatement(
                    sid="PullTrainingImage", actions=ECR_PULL_ACTIONS, resources=[image_repository_arn]
                ),
                iam.PolicyStatement(sid="EcrAuthToken", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            ]
        execution_policy = iam.ManagedPolicy(
            self,
            "ExecutionPolicy",
            description=f"{owner}: pull the training image, write the job log group",
            statements=execution_statements,
        )
        if image_repository_arn:
            acknowledge(
                execution_policy,
                "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
                "ecr:GetAuthorizationToken has no resource-level permission; image pulls themselves "
                "are limited to the one training image repository.",
            )
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com", conditions=_THIS_ACCOUNT),
            description=f"{owner}: ECS agent for training jobs (image pull, logs)",
            managed_policies=[execution_policy],
        )
        return execution_policy, role

    def _job_role(
        self,
        owner: str,
        key: kms.IKey,
        data_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        mlflow_tracking_server_arn: str | None,
    ) -> tuple[iam.ManagedPolicy, iam.Role]:
        s3_via = {"StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"}}
        datasets = DATASETS_PREFIX
        outputs = [CHECKPOINTS_PREFIX, RUNS_PREFIX]
        datasets_objects = _objects_arn(data_bucket, DATA_BUCKET_OUTPUT, datasets)
        output_objects = [_objects_arn(artifacts_bucket, ARTIFACTS_BUCKET_OUTPUT, p) for p in outputs]
        # Batch scoring (bert-predict) reads models under models/ (runs/ is readable above) and
        # writes predictions/<id>/: parts, their manifests, the manifest.
        models_objects = _objects_arn(artifacts_bucket, ARTIFACTS_BUCKET_OUTPUT, MODELS_PREFIX)
        predictions_objects = _objects_arn(artifacts_bucket, ARTIFACTS_BUCKET_OUTPUT, PREDICTIONS_PREFIX)
        listed = [*outputs, MODELS_PREFIX, PREDICTIONS_PREFIX]
        tracking = (
            [
                iam.PolicyStatement(
                    sid="LogToSageMakerMlflow",
                    actions=SAGEMAKER_MLFLOW_ACTIONS,
                    resources=[mlflow_tracking_server_arn],
                )
            ]
            if mlflow_tracking_server_arn
            else []
        )
        job_policy = iam.ManagedPolicy(
            self,
            "JobPolicy",
            description=f"{owner}: training and prediction container data access",
            statements=[
                iam.PolicyStatement(
                    sid="ReadDatasets",
                    actions=["s3:GetObject"],
                    resources=[datasets_objects],
                ),
                iam.PolicyStatement(
                    sid="ListDatasets",
                    actions=["s3:ListBucket"],
                    resources=[data_bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [datasets, f"{datasets}*"]}},
                ),
                iam.PolicyStatement(
                    sid="ReadWriteCheckpointsAndRuns",
                    actions=[
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:DeleteObject",
                        "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts",
                    ],
                    resources=output_objects,
                ),
                iam.PolicyStatement(
                    sid="ReadModels",
                    actions=["s3:GetObject"],
                    resources=[models_objects],
                ),
                iam.PolicyStatement(
                    sid="ReadWritePredictions",
                    actions=[
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts",
                    ],
                    resources=[predictions_objects],
                ),
                iam.PolicyStatement(
                    sid="ListArtifacts",
                    actions=["s3:ListBucket"],
                    resources=[artifacts_bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [x for p in listed for x in (p, f"{p}*")]}},
                ),
                iam.PolicyStatement(
                    sid="ProjectKeyThroughS3",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[key.key_arn],
                    conditions=s3_via,
                ),
                *tracking,
            ],
        )
        self._acknowledge_object_wildcards(job_policy, [
            (datasets_objects, "the job reads any dataset object under datasets/ of the data bucket"),
            (output_objects[0], "the job writes and prunes its checkpoints under checkpoints/<run-id>/"),
            (output_objects[1], "the job writes its model and metrics under runs/<run-id>/"),
            (models_objects, "a prediction job reads the staged or registered model it is given under models/"),
            (predictions_objects, "a prediction job writes its shards and manifests under predictions/<id>/"),
        ])
        role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com", conditions=_THIS_ACCOUNT),
            description=f"{owner}: the training container (datasets in, checkpoints, runs and predictions out)",
            managed_policies=[job_policy],
        )
        return job_policy, role


    def _acknowledge_object_wildcards(self, policy: iam.ManagedPolicy, grants: list[tuple[str, str]]) -> None:
        """IAM5 on `<bucket>/<prefix>*` object ARNs, one acknowledgment each with its reason."""
        for objects, why in grants:
            objects_arn = nag_resource(self, objects)
            acknowledge(
                policy,
                f"AwsSolutions::AwsSolutions-IAM5[Resource::{objects_arn}]",
                f"Object keys are chosen at run time: {why}; the wildcard stops at that prefix of that bucket.",
            )

    def _prepare_role(
        self, owner: str, key: kms.IKey, data_bucket: s3.IBucket, artifacts_bucket: s3.IBucket
    ) -> tuple[iam.ManagedPolicy, iam.Role]:
        """Read the raw data and the staged tokenizers; write tokenized stores, and nothing else:
        a bug in preparation can neither touch the inputs nor any training output."""
        datasets_objects = _objects_arn(data_bucket, DATA_BUCKET_OUTPUT, DATASETS_PREFIX)
        stores_objects = _objects_arn(data_bucket, DATA_BUCKET_OUTPUT, PREPARED_PREFIX)
        models_objects = _objects_arn(artifacts_bucket, ARTIFACTS_BUCKET_OUTPUT, MODELS_PREFIX)
        policy = iam.ManagedPolicy(
            self,
            "PreparePolicy",
            description=f"{owner}: data preparation container (datasets in, tokenized stores out)",
            statements=[
                iam.PolicyStatement(sid="ReadDatasets", actions=["s3:GetObject"], resources=[datasets_objects]),
                iam.PolicyStatement(
                    sid="ListDatasets",
                    actions=["s3:ListBucket"],
                    resources=[data_bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [DATASETS_PREFIX, f"{DATASETS_PREFIX}*"]}},
                ),
                iam.PolicyStatement(
                    sid="WriteTokenizedStores",
                    # Delete: the write probe before any work, and a retried child's staging.
                    actions=["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                             "s3:ListMultipartUploadParts"],
                    resources=[stores_objects],
                ),
                iam.PolicyStatement(sid="ReadStagedModels", actions=["s3:GetObject"], resources=[models_objects]),
                iam.PolicyStatement(
                    sid="ListStagedModels",
                    actions=["s3:ListBucket"],
                    resources=[artifacts_bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [MODELS_PREFIX, f"{MODELS_PREFIX}*"]}},
                ),
                iam.PolicyStatement(
                    sid="ProjectKeyThroughS3",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"}},
                ),
            ],
        )
        self._acknowledge_object_wildcards(policy, [
            (datasets_objects, "preparation reads the input files it is given under datasets/ of the data bucket"),
            (stores_objects, "preparation writes a store's shards and manifests under datasets/prepared/<name>/"),
            (models_objects, "preparation reads the tokenizer of the staged model it is given under models/"),
        ])
        role = iam.Role(
            self,
            "PrepareRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com", conditions=_THIS_ACCOUNT),
            description=f"{owner}: the data preparation container (datasets in, tokenized stores out)",
            managed_policies=[policy],
        )
        return policy, role


def _objects_arn(bucket: s3.IBucket, output_id: str, prefix: str) -> str:
    """Objects under `prefix` of `bucket`, the bucket named through its stack output."""
    return f"arn:{Aws.PARTITION}:s3:::{stack_output(bucket, output_id)}/{prefix}*"
