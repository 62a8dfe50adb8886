"""The Spot -> On-Demand fallback: an EventBridge rule on failed spot-first jobs and the Lambda
(`platform_constructs/runtime/fallback.py`) that resubmits them, once, to the on-demand queue.

See docs/fallback.md for the whole chain.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import (
    Aws,
    Duration,
    RemovalPolicy,
)
from aws_cdk import (
    aws_batch as batch,
)
from aws_cdk import (
    aws_events as events,
)
from aws_cdk import (
    aws_events_targets as targets,
)
from aws_cdk import (
    aws_iam as iam,
)
from aws_cdk import (
    aws_kms as kms,
)
from aws_cdk import (
    aws_lambda as lambda_,
)
from constructs import Construct

from bertbatch_contract import metrics
from bertbatch_contract.naming import Naming
from bertbatch_contract.tags import TAG_FALLBACK_FROM, TAG_FALLBACK_TO, TAG_RUN_ID
from platform_constructs.checkov import skip
from platform_constructs.functions import (
    RUNTIME,
    dead_letter_and_environment_statements,
    encrypted_dead_letter_queue,
    handler_of,
    handlers_code,
)
from platform_constructs.logs import encrypted_log_group
from platform_constructs.nag import acknowledge, acknowledge_compliance
from platform_constructs.runtime import fallback as runtime

HANDLER = handler_of(runtime)
# Failed Spot jobs arrive in bursts when a Spot pool dries up; a throttled event waits in
# Lambda's asynchronous queue (retried for up to 6 hours), so a few concurrent runs suffice.
RESERVED_CONCURRENCY = 5


class SpotFallback(Construct):
    """Attributes: `function`, `rule`, `dead_letter_queue`, `log_group`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        naming: Naming,
        source_queue: batch.IJobQueue,
        target_queue: batch.IJobQueue,
        job_definition_names: Sequence[str],
        key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        owner = f"{naming.project} {naming.profile}"
        self.log_group = encrypted_log_group(
            self,
            "Logs",
            name=naming.log_group("fallback"),
            key=key,
            days=log_retention_days,
            removal_policy=removal_policy,
        )
        # Events the function could not handle after Lambda's own retries land here.
        self.dead_letter_queue = encrypted_dead_letter_queue(self, "DeadLetters", key=key)
        policy = self._policy(owner, target_queue, job_definition_names, key)
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{owner}: Spot -> On-Demand fallback handler",
            managed_policies=[policy],
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=naming.resource("spot-fallback"),
            description="Resubmits Spot jobs that ran out of Spot capacity or attempts to On-Demand, once",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=HANDLER,
            code=handlers_code(),
            timeout=Duration.seconds(30),
            memory_size=256,
            role=role.without_policy_updates(),
            log_group=self.log_group,
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=2,
            reserved_concurrent_executions=RESERVED_CONCURRENCY,
            environment_encryption=key,
            environment={
                runtime.ENV_SOURCE_QUEUE: source_queue.job_queue_arn,
                runtime.ENV_TARGET_QUEUE: target_queue.job_queue_arn,
                runtime.ENV_METRICS_NAMESPACE: metrics.DEFAULT_NAMESPACE,
                runtime.ENV_METRIC_NAME: metrics.FALLBACK_RESUBMISSIONS.name,
                runtime.ENV_PROFILE: naming.profile,
            },
        )
        # The role must hold its policy before the function can be invoked.
        self.function.node.add_dependency(role)
        outside_vpc = (
            "The handler only calls the AWS Batch API, which has no VPC endpoint in this VPC (no NAT "
            "by design); it touches no data and runs outside the VPC."
        )
        acknowledge_compliance(self.function, "LambdaInsideVPC", outside_vpc)
        skip(self.function, "CKV_AWS_117", outside_vpc)
        self.rule = events.Rule(
            self,
            "FailedSpotJobs",
            description="Failed jobs of the spot-first queue -> fallback handler",
            event_pattern=events.EventPattern(
                source=["aws.batch"],
                detail_type=["Batch Job State Change"],
                detail={"status": ["FAILED"], "jobQueue": [source_queue.job_queue_arn]},
            ),
            targets=[targets.LambdaFunction(self.function, retry_attempts=4, max_event_age=Duration.hours(2))],
        )

    def _policy(
        self, owner: str, target_queue: batch.IJobQueue, job_definition_names: Sequence[str], key: kms.IKey
    ) -> iam.ManagedPolicy:
        """SubmitJob to the target queue with the given definitions, tag and describe jobs, write
        the own log group and dead-letter queue (and use `key` for it and the environment)."""
        region, account, partition = Aws.REGION, Aws.ACCOUNT_ID, Aws.PARTITION
        job_definitions = [
            f"arn:{partition}:batch:{region}:{account}:job-definition/{name}:*" for name in job_definition_names
        ]
        policy = iam.ManagedPolicy(
            self,
            "Policy",
            description=f"{owner}: resubmit failed Spot jobs to the on-demand queue",
            statements=[
                iam.PolicyStatement(
                    sid="SubmitToOnDemand",
                    actions=["batch:SubmitJob"],
                    resources=[target_queue.job_queue_arn, *job_definitions],
                ),
                *_tag_statements(f"arn:{partition}:batch:{region}:{account}:job/*"),
                iam.PolicyStatement(sid="DescribeJobs", actions=["batch:DescribeJobs"], resources=["*"]),
                iam.PolicyStatement(
                    sid="WriteOwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.log_group.log_group_arn],
                ),
                *dead_letter_and_environment_statements(self.dead_letter_queue, key),
            ],
        )
        acknowledge(
            policy,
            "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
            "batch:DescribeJobs has no resource-level permission; the handler only reads the failed "
            "job's current tags to avoid resubmitting it twice.",
        )
        acknowledge(
            policy,
            "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job/*]",
            "Job ids are assigned at submission: SubmitJob with tags and TagResource on the replaced "
            "job need the job ARN pattern; tagging is limited by the request's tags (a resubmission's "
            "fallback-from and run-id tags, or only the fallback-to tag on the replaced job), and "
            "submission to one queue and the listed definitions.",
        )
        for job_definition in job_definition_names:
            acknowledge(
                policy,
                f"AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job-definition/{job_definition}:*]",
                "The failed job may have used any revision of this project's job definition; the "
                "wildcard covers revisions of that one definition name only.",
            )
        return policy


def _tag_statements(jobs_arn: str) -> list[iam.PolicyStatement]:
    """TagResource on jobs, as narrow as Batch allows: its only condition keys for tagging a job
    are the request's tags (aws:RequestTag, aws:TagKeys) and the job's own tags
    (aws:ResourceTag); nothing names the job's queue (Service Authorization Reference, AWS
    Batch). The resubmission is tagged at submit with the fallback-from and run-id tags (and the
    failed job's others, copied); the replaced job gets the fallback-to tag and nothing else."""
    return [
        iam.PolicyStatement(
            sid="TagResubmittedJobs",
            actions=["batch:TagResource"],
            resources=[jobs_arn],
            conditions={
                "Null": {f"aws:RequestTag/{TAG_FALLBACK_FROM}": "false", f"aws:RequestTag/{TAG_RUN_ID}": "false"}
            },
        ),
        iam.PolicyStatement(
            sid="MarkReplacedJobs",
            actions=["batch:TagResource"],
            resources=[jobs_arn],
            conditions={
                "ForAllValues:StringEquals": {"aws:TagKeys": [TAG_FALLBACK_TO]},
                # ForAllValues holds for an empty list too: require tags to be present.
                "Null": {"aws:TagKeys": "false"},
            },
        ),
    ]
