"""Least-privilege IAM for the training platform: instance and execution roles here, the job
roles (training, prediction, data preparation) in `platform_constructs.job_roles`.

Each role gets one customer-managed policy with explicit statements (no AWS-managed policies,
no inline policies). The roles are handed to the Batch constructs through
`without_policy_updates()`, so no construct can widen them with an implicit grant: what the
template holds is exactly what is written here.
"""

from __future__ import annotations

import re

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from bertbatch_contract.naming import Naming
from platform_constructs.job_roles import THIS_ACCOUNT, ProjectData, prediction_role, prepare_role, training_role
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


class TrainingRoles(Construct):
    """`instance_role` (EC2 instances of the compute environments), `execution_role` (ECS
    agent: image pull, awslogs), `job_role` (the training containers), `predict_role` (batch
    scoring: writes predictions/ only), `prepare_role` (the data preparation container: reads
    datasets/, writes datasets/prepared/ only). See `platform_constructs.job_roles`."""

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
        """`mlflow_tracking_server_arn`: a SageMaker managed MLflow tracking server the training
        role may log to (None: no SageMaker MLflow permissions)."""
        super().__init__(scope, construct_id)
        owner = f"{naming.project} {naming.profile}"
        instance_policy, self.instance_role = self._instance_role(naming, owner)
        execution_policy, self.execution_role = self._execution_role(owner, log_group, image_repository_arn)
        data = ProjectData(owner, key, data_bucket, artifacts_bucket)
        job_policy, self.job_role = training_role(self, data, mlflow_tracking_server_arn)
        predict_policy, self.predict_role = prediction_role(self, data)
        prepare_policy, self.prepare_role = prepare_role(self, data)
        self.policies = {"instance": instance_policy, "execution": execution_policy, "job": job_policy,
                         "predict": predict_policy, "prepare": prepare_policy}

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
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com", conditions=THIS_ACCOUNT),
            description=f"{owner}: ECS agent for training jobs (image pull, logs)",
            managed_policies=[execution_policy],
        )
        return execution_policy, role
