"""Cost guardrail: a Lambda on the budget topic that disables the job queues at 100% ACTUAL."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from platform_constructs.functions import acknowledge_small_function, handler_function, handler_of
from platform_constructs.runtime import guardrail as runtime

GUARDRAIL_HANDLER = handler_of(runtime)


class CostGuardrail(Construct):
    """Subscribes `platform_constructs/runtime/guardrail.py` to the budget topic (`topic`: the
    one only AWS Budgets may publish to; the function also ignores records from other topics).

    The function acts only on this budget's ACTUAL alert at >= 100% of the limit:
    `batch:UpdateJobQueue` state=DISABLED on each queue (it may update these queues and nothing
    else). Running jobs finish; no new job starts.

    Attributes: `function`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        topic: sns.ITopic,
        budget_name: str,
        limit_usd: float,
        queue_arns: Sequence[str],
        log_group_name: str,
        key: kms.IKey,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function: lambda_.Function = handler_function(
            self,
            "Function",
            handler=GUARDRAIL_HANDLER,
            description=f"Disables the job queues when budget {budget_name} reaches 100% of actual spend",
            environment={
                runtime.ENV_BUDGET_NAME: budget_name,
                runtime.ENV_BUDGET_LIMIT_USD: f"{limit_usd:g}",
                runtime.ENV_BUDGET_TOPIC_ARN: topic.topic_arn,
                runtime.ENV_JOB_QUEUES: _json_list(self, queue_arns),
                runtime.ENV_MIN_PERCENT: f"{runtime.DEFAULT_MIN_PERCENT:g}",
            },
            log_group_name=log_group_name,
            key=key,
            log_retention_days=log_retention_days,
            removal_policy=removal_policy,
            statements=[
                iam.PolicyStatement(
                    sid="DisableProjectJobQueues",
                    actions=["batch:UpdateJobQueue"],
                    resources=list(queue_arns),
                )
            ]
            if queue_arns
            else [],
        )
        topic.add_subscription(subs.LambdaSubscription(self.function))
        acknowledge_small_function(self.function, "budget notifications (a handful a month)")


def _json_list(scope: Construct, values: Sequence[str]) -> str:
    """A JSON list that may contain tokens (queue ARNs from another stack)."""
    return Stack.of(scope).to_json_string(list(values))
