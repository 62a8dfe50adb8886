"""CostGuardrail (platform_constructs/guardrail.py): the function on the alerts topic."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from platform_constructs.guardrail import GUARDRAIL_HANDLER
from platform_constructs.lambda_asset import RUNTIME_DIR
from tests.stacks.monitoring_standalone import (
    budget_topic_ref,
    function_with_handler,
    topic_ref,
)
from tests.stacks.monitoring_standalone import resolve as resolve_str


def test_guardrail_function_knows_the_budget_and_the_queues(dev_mon):
    _, props = function_with_handler(dev_mon, GUARDRAIL_HANDLER)
    env = props["Environment"]["Variables"]
    assert env["BUDGET_NAME"] == "bert-batch-dev"
    assert env["BUDGET_LIMIT_USD"] == "500"
    assert env["MIN_PERCENT"] == "100"
    assert json.loads(resolve_str(env["JOB_QUEUES"])) == dev_mon.queue_arns()
    assert env["BUDGET_TOPIC_ARN"] == budget_topic_ref(dev_mon)


def test_guardrail_function_is_python_on_arm64(dev_mon):
    _, props = function_with_handler(dev_mon, GUARDRAIL_HANDLER)
    assert props["Runtime"].startswith("python3.")
    assert props["Architectures"] == ["arm64"]


def test_guardrail_is_subscribed_to_the_budget_topic_only(dev_mon):
    function_id, _ = function_with_handler(dev_mon, GUARDRAIL_HANDLER)
    endpoint = {"Fn::GetAtt": [function_id, "Arn"]}
    topics = [
        r["Properties"]["TopicArn"]
        for r in dev_mon.of_type("AWS::SNS::Subscription").values()
        if r["Properties"]["Endpoint"] == endpoint
    ]
    assert topics == [budget_topic_ref(dev_mon)]
    assert topic_ref(dev_mon) != budget_topic_ref(dev_mon)


def test_guardrail_may_update_only_the_project_queues(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Sid": "DisableProjectJobQueues",
                            "Effect": "Allow",
                            "Action": "batch:UpdateJobQueue",
                            "Resource": sorted(dev_mon.queue_arns()),
                        }
                    ]
                )
            }
        },
    )


def test_no_guardrail_when_config_turns_it_off(prod_mon):
    assert prod_mon.config.budget.cost_guardrail is False
    handlers = [r["Properties"]["Handler"] for r in prod_mon.of_type("AWS::Lambda::Function").values()]
    assert GUARDRAIL_HANDLER not in handlers


def test_handler_code_is_a_runtime_module():
    assert (RUNTIME_DIR / "guardrail.py").is_file()
    assert (RUNTIME_DIR / "job_gauge.py").is_file()


def test_function_roles_use_no_aws_managed_policy(dev_mon):
    for role in dev_mon.of_type("AWS::IAM::Role").values():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert "Ref" in arn, f"AWS managed policy attached: {arn}"
