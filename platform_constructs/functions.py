"""Small Python Lambda functions whose code is a module of `platform_constructs/runtime/`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from platform_constructs.checkov import skip
from platform_constructs.lambda_asset import staged_directory
from platform_constructs.logs import encrypted_log_group
from platform_constructs.nag import acknowledge_compliance

RUNTIME = lambda_.Runtime.PYTHON_3_14
DEFAULT_TIMEOUT = Duration.seconds(60)
DEAD_LETTER_RETENTION = Duration.days(14)
# Lambda retries an asynchronous invocation that hits the reservation (for up to 6 hours), so a
# small one only delays a burst; it stays far below a new account's concurrency limit.
DEFAULT_RESERVED_CONCURRENCY = 1


def handlers_code() -> lambda_.Code:
    """The asset every project function runs (see platform_constructs.lambda_asset)."""
    return lambda_.Code.from_asset(str(staged_directory()))


def handler_of(module: ModuleType) -> str:
    """The Lambda handler of a runtime module: `<module>.handler` (the asset is flat)."""
    return f"{module.__name__.rsplit('.', 1)[-1]}.handler"


def encrypted_dead_letter_queue(scope: Construct, construct_id: str, *, key: kms.IKey) -> sqs.Queue:
    """Where Lambda puts an asynchronous event the function failed on after its retries:
    encrypted with `key`, TLS only, kept for 14 days (the SQS maximum)."""
    return sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=DEAD_LETTER_RETENTION,
    )


def dead_letter_and_environment_statements(queue: sqs.IQueue, key: kms.IKey) -> list[iam.PolicyStatement]:
    """What a function's role needs for a KMS-encrypted dead-letter queue and environment:
    send to the queue, and use `key` only through SQS and Lambda (`kms:ViaService`)."""
    return [
        iam.PolicyStatement(sid="SendDeadLetters", actions=["sqs:SendMessage"], resources=[queue.queue_arn]),
        iam.PolicyStatement(
            sid="UseKeyViaSqsAndLambda",
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=[key.key_arn],
            conditions={
                "StringEquals": {
                    "kms:ViaService": [f"sqs.{Aws.REGION}.amazonaws.com", f"lambda.{Aws.REGION}.amazonaws.com"]
                }
            },
        ),
    ]


def handler_function(
    scope: Construct,
    construct_id: str,
    *,
    handler: str,
    description: str,
    environment: Mapping[str, str],
    log_group_name: str,
    key: kms.IKey,
    log_retention_days: int,
    removal_policy: RemovalPolicy,
    statements: Sequence[iam.PolicyStatement] = (),
    timeout: Duration = DEFAULT_TIMEOUT,
    reserved_concurrency: int = DEFAULT_RESERVED_CONCURRENCY,
) -> lambda_.Function:
    """An arm64 Python function running `handler` ("module.function") of the runtime asset,
    for asynchronous invocation: its own KMS-encrypted log group with the configured
    retention, environment encrypted with `key`, a KMS-encrypted dead-letter queue
    (`<construct_id>DeadLetters`) and a small reserved concurrency.

    Its role has one customer-managed policy: write its own log group, the dead-letter queue
    and key use, plus `statements` (no AWS managed policy, no inline policy).
    """
    log_group = encrypted_log_group(
        scope,
        f"{construct_id}Logs",
        name=log_group_name,
        key=key,
        days=log_retention_days,
        removal_policy=removal_policy,
    )
    dead_letters = encrypted_dead_letter_queue(scope, f"{construct_id}DeadLetters", key=key)
    policy = iam.ManagedPolicy(
        scope,
        f"{construct_id}Policy",
        description=description,
        statements=[
            iam.PolicyStatement(
                sid="WriteOwnLogGroup",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            ),
            *dead_letter_and_environment_statements(dead_letters, key),
            *statements,
        ],
    )
    role = iam.Role(
        scope,
        f"{construct_id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
        managed_policies=[policy],
    )
    function = lambda_.Function(
        scope,
        construct_id,
        role=role.without_policy_updates(),
        runtime=RUNTIME,
        architecture=lambda_.Architecture.ARM_64,
        handler=handler,
        code=handlers_code(),
        description=description,
        environment=dict(environment),
        environment_encryption=key,
        dead_letter_queue=dead_letters,
        reserved_concurrent_executions=reserved_concurrency,
        memory_size=256,
        timeout=timeout,
        log_group=log_group,
    )
    # The role must hold its policy before the function can be invoked.
    function.node.add_dependency(role)
    return function


def acknowledge_small_function(function: lambda_.Function, trigger: str) -> None:
    """The rule that does not fit a small control-plane function outside the VPC, for cdk-nag
    (NIST 800-53 R5 / HIPAA) and checkov (`trigger` says what invokes it, for the reasons)."""
    reason = (
        f"Invoked only by {trigger}; it calls only AWS control-plane APIs (Batch, CloudWatch) and "
        "handles no data; the Monitoring stack has no VPC, and a VPC would need extra endpoints for no benefit."
    )
    acknowledge_compliance(function, "LambdaInsideVPC", reason)
    skip(function, "CKV_AWS_117", reason)
