"""The Spot -> On-Demand fallback: an EventBridge rule on failed spot-first jobs and the Lambda
(`bertbatch/handlers/fallback.py`) that resubmits them, once, to the on-demand queue.

See docs/fallback.md for the whole chain.
"""

from __future__ import annotations

from aws_cdk import (
    Aws,
    Duration,
    RemovalPolicy,
    aws_batch as batch,
    aws_events as events,
    aws_events_targets as targets,
    aws_iam as iam,
    aws_kms as kms,
    aws_lambda as lambda_,
    aws_sqs as sqs,
)
from constructs import Construct

from platform_constructs.contracts import metrics
from platform_constructs.functions import RUNTIME, handlers_code
from platform_constructs.logs import encrypted_log_group
from platform_constructs.nag import acknowledge, acknowledge_compliance

HANDLER = "fallback.handler"


class SpotFallback(Construct):
    """Attributes: `function`, `rule`, `dead_letter_queue`, `log_group`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project: str,
        profile: str,
        source_queue: batch.IJobQueue,
        target_queue: batch.IJobQueue,
        job_definition_names: list[str],
        key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        region, account, partition = Aws.REGION, Aws.ACCOUNT_ID, Aws.PARTITION
        self.log_group = encrypted_log_group(
            self,
            "Logs",
            name=f"/{project}/{profile}/fallback",
            key=key,
            days=log_retention_days,
            removal_policy=removal_policy,
        )
        # Events the function could not handle after Lambda's own retries land here.
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        job_definitions = [
            f"arn:{partition}:batch:{region}:{account}:job-definition/{name}:*" for name in job_definition_names
        ]
        policy = iam.ManagedPolicy(
            self,
            "Policy",
            description=f"{project} {profile}: resubmit failed Spot jobs to the on-demand queue",
            statements=[
                iam.PolicyStatement(
                    sid="SubmitToOnDemand",
                    actions=["batch:SubmitJob"],
                    resources=[target_queue.job_queue_arn, *job_definitions],
                ),
                iam.PolicyStatement(
                    sid="TagJobs",
                    actions=["batch:TagResource"],
                    resources=[f"arn:{partition}:batch:{region}:{account}:job/*"],
                ),
                iam.PolicyStatement(sid="DescribeJobs", actions=["batch:DescribeJobs"], resources=["*"]),
                iam.PolicyStatement(
                    sid="WriteOwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.log_group.log_group_arn],
                ),
                iam.PolicyStatement(
                    sid="DeadLetters",
                    actions=["sqs:SendMessage"],
                    resources=[self.dead_letter_queue.queue_arn],
                ),
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
            "job need the job ARN pattern; submission itself is limited to one queue and definition.",
        )
        for job_definition in job_definition_names:
            acknowledge(
                policy,
                f"AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job-definition/{job_definition}:*]",
                "The failed job may have used any revision of this project's job definition; the "
                "wildcard covers revisions of that one definition name only.",
            )
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{project} {profile}: Spot -> On-Demand fallback handler",
            managed_policies=[policy],
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=f"{project}-{profile}-spot-fallback",
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
            environment={
                "SOURCE_QUEUE_ARN": source_queue.job_queue_arn,
                "TARGET_QUEUE_ARN": target_queue.job_queue_arn,
                "METRICS_NAMESPACE": metrics.DEFAULT_NAMESPACE,
                "METRIC_NAME": metrics.FALLBACK_RESUBMISSIONS.name,
                "PROFILE": profile,
            },
        )
        # The role must hold its policy before the function can be invoked.
        self.function.node.add_dependency(role)
        acknowledge_compliance(
            self.function,
            "LambdaInsideVPC",
            "The handler only calls the AWS Batch API, which has no VPC endpoint in this VPC (no NAT "
            "by design); it touches no data and runs outside the VPC.",
        )
        acknowledge_compliance(
            self.function,
            "LambdaConcurrency",
            "Invoked once per failed Spot job; reserving concurrency would take capacity from the "
            "account's unreserved pool and can fail deployment in accounts with a low limit.",
        )
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
