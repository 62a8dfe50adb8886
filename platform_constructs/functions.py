"""Small Python Lambda functions whose code is the `bertbatch/handlers/` package."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy, aws_iam as iam, aws_kms as kms, aws_lambda as lambda_
from constructs import Construct

from platform_constructs.logs import encrypted_log_group
from platform_constructs.nag import acknowledge_compliance

# Resolved from this file, not the working directory: synth works from anywhere.
HANDLERS_DIR = Path(__file__).resolve().parent.parent / "bertbatch" / "handlers"
RUNTIME = lambda_.Runtime.PYTHON_3_14


def handlers_code() -> lambda_.Code:
    """The asset every project function runs: the bertbatch/handlers package."""
    return lambda_.Code.from_asset(str(HANDLERS_DIR), exclude=["__pycache__", "*.pyc"])


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
    timeout: Duration = Duration.seconds(60),
) -> lambda_.Function:
    """An arm64 Python function running `handler` ("module.function") from bertbatch/handlers,
    logging to its own KMS-encrypted log group with the configured retention.

    Its role has one customer-managed policy: write its own log group, plus `statements`
    (no AWS managed policy, no inline policy).
    """
    log_group = encrypted_log_group(
        scope,
        f"{construct_id}Logs",
        name=log_group_name,
        key=key,
        days=log_retention_days,
        removal_policy=removal_policy,
    )
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
    return lambda_.Function(
        scope,
        construct_id,
        role=role,
        runtime=RUNTIME,
        architecture=lambda_.Architecture.ARM_64,
        handler=handler,
        code=handlers_code(),
        description=description,
        environment=dict(environment),
        memory_size=256,
        timeout=timeout,
        log_group=log_group,
    )


def acknowledge_small_function(function: lambda_.Function, trigger: str) -> None:
    """The NIST 800-53 R5 / HIPAA Lambda rules that do not fit a small control-plane function
    (`trigger` says what invokes it, for the reasons)."""
    acknowledge_compliance(
        function,
        "LambdaConcurrency",
        f"Invoked only by {trigger}; reserved concurrency would take capacity from the account's "
        "unreserved pool (new accounts cannot reserve any) and adds no protection here.",
    )
    acknowledge_compliance(
        function,
        "LambdaDLQ",
        f"Invoked only by {trigger}; a failed invocation raises, which the function's Errors "
        "alarm reports to the alerts topic, so a dead-letter queue would only duplicate that.",
    )
    acknowledge_compliance(
        function,
        "LambdaInsideVPC",
        "Calls only AWS control-plane APIs (Batch, CloudWatch) and handles no data; the "
        "Monitoring stack has no VPC, and a VPC would need extra endpoints for no benefit.",
    )
