"""The project's Lambda functions: reserved concurrency, dead-letter queues, KMS on environments."""

from __future__ import annotations

from aws_cdk.assertions import Capture, Match

from tests.stacks.conftest import one, one_has, policy_has, resources, statement_like

FUNCTION, QUEUE = "AWS::Lambda::Function", "AWS::SQS::Queue"
MONITORING_FUNCTIONS = {
    "CostGuardrailFunction": "CostGuardrailFunctionPolicy",
    "JobEventsGauge": "JobEventsGaugePolicy",
}


def test_every_project_function_reserves_concurrency_and_encrypts_its_environment(dev_training, dev_monitoring):
    for template in (dev_training, dev_monitoring):
        for logical_id in resources(template, FUNCTION):
            if "CustomResourceProvider" in logical_id:
                continue
            reserved = Capture()
            one_has(template, FUNCTION, logical_id, {
                "ReservedConcurrentExecutions": reserved,
                "KmsKeyArn": Match.any_value(),
                "DeadLetterConfig": Match.any_value(),
            })
            assert 1 <= reserved.as_number() <= 5, logical_id


def test_monitoring_functions_have_kms_encrypted_dead_letter_queues(dev_monitoring):
    key_id, _ = one(dev_monitoring, "AWS::KMS::Key", "AlertsKey")
    key_arn = {"Fn::GetAtt": [key_id, "Arn"]}
    for function_prefix, policy_prefix in MONITORING_FUNCTIONS.items():
        queue_id, _ = one(dev_monitoring, QUEUE, f"{function_prefix}DeadLetters")
        queue_arn = {"Fn::GetAtt": [queue_id, "Arn"]}
        one_has(dev_monitoring, QUEUE, queue_id, {"KmsMasterKeyId": Match.exact(key_arn)})
        one_has(dev_monitoring, FUNCTION, function_prefix, {
            "DeadLetterConfig": Match.exact({"TargetArn": queue_arn}),
            "KmsKeyArn": Match.exact(key_arn),
        })
        policy_has(dev_monitoring, policy_prefix,
                   {"Sid": "SendDeadLetters", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue_arn})
        policy_has(dev_monitoring, policy_prefix, statement_like(
            "UseKeyViaSqsAndLambda",
            Resource=Match.exact(key_arn),
            Condition={"StringEquals": Match.object_like({"kms:ViaService": Match.any_value()})},
        ))


def test_dead_letter_queues_accept_only_tls(dev_monitoring, dev_training):
    for template in (dev_monitoring, dev_training):
        for queue_id in resources(template, QUEUE):
            template.has_resource_properties("AWS::SQS::QueuePolicy", {
                "Queues": Match.array_with([{"Ref": queue_id}]),
                "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
                    "Effect": "Deny",
                    "Condition": Match.exact({"Bool": {"aws:SecureTransport": "false"}}),
                })])},
            })
