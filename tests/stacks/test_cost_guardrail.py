"""CostGuardrail (platform_constructs/guardrail.py): the function on the alerts topic."""

from __future__ import annotations

import json

from aws_cdk.assertions import Capture, Match

from platform_constructs.guardrail import GUARDRAIL_HANDLER
from platform_constructs.lambda_asset import RUNTIME_DIR
from tests.stacks.conftest import value_of
from tests.stacks.monitoring_standalone import (
    budget_topic_ref,
    function_with_handler,
    topic_ref,
)
from tests.stacks.monitoring_standalone import resolve as resolve_str

FUNCTION = "AWS::Lambda::Function"


def test_guardrail_function_knows_the_budget_and_the_queues(dev_mon):
    function_with_handler(dev_mon, GUARDRAIL_HANDLER)
    queues = Capture()
    dev_mon.template.has_resource_properties(FUNCTION, {
        "Handler": GUARDRAIL_HANDLER,
        "Environment": {"Variables": Match.object_like({
            "BUDGET_NAME": "bert-batch-dev",
            "BUDGET_LIMIT_USD": "500",
            "MIN_PERCENT": "100",
            "JOB_QUEUES": queues,
            "BUDGET_TOPIC_ARN": Match.exact(budget_topic_ref(dev_mon)),
        })},
    })
    assert json.loads(resolve_str(value_of(queues))) == dev_mon.queue_arns()


def test_guardrail_function_is_python_on_arm64(dev_mon):
    function_with_handler(dev_mon, GUARDRAIL_HANDLER)
    dev_mon.template.has_resource_properties(FUNCTION, {
        "Handler": GUARDRAIL_HANDLER,
        "Runtime": Match.string_like_regexp(r"^python3\."),
        "Architectures": ["arm64"],
    })


def test_guardrail_is_subscribed_to_the_budget_topic_only(dev_mon):
    endpoint = {"Fn::GetAtt": [function_with_handler(dev_mon, GUARDRAIL_HANDLER), "Arn"]}
    of_the_function = {"Endpoint": Match.exact(endpoint)}
    dev_mon.template.resource_properties_count_is("AWS::SNS::Subscription", of_the_function, 1)
    dev_mon.template.has_resource_properties(
        "AWS::SNS::Subscription", {**of_the_function, "TopicArn": Match.exact(budget_topic_ref(dev_mon))})
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
    prod_mon.template.resource_properties_count_is(FUNCTION, {"Handler": GUARDRAIL_HANDLER}, 0)


def test_handler_code_is_a_runtime_module():
    assert (RUNTIME_DIR / "guardrail.py").is_file()
    assert (RUNTIME_DIR / "job_gauge.py").is_file()


def test_function_roles_use_no_aws_managed_policy(dev_mon):
    # Ours are references to the stack's managed policies; an AWS managed one is an ARN.
    ours = Match.object_like({"Ref": Match.any_value()})
    dev_mon.template.resource_properties_count_is(
        "AWS::IAM::Role", {"ManagedPolicyArns": Match.array_with([Match.not_(ours)])}, 0)
