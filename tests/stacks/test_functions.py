"""The project's Lambda functions: reserved concurrency, dead-letter queues, KMS on environments."""

from __future__ import annotations

from tests.stacks.conftest import one, props, resources, statement

MONITORING_FUNCTIONS = {
    "CostGuardrailFunction": "CostGuardrailFunctionPolicy",
    "JobEventsGauge": "JobEventsGaugePolicy",
}


def test_every_project_function_reserves_concurrency_and_encrypts_its_environment(dev_training, dev_monitoring):
    for template in (dev_training, dev_monitoring):
        for logical_id, function in resources(template, "AWS::Lambda::Function").items():
            if "CustomResourceProvider" in logical_id:
                continue
            p = function["Properties"]
            assert 1 <= p["ReservedConcurrentExecutions"] <= 5, logical_id
            assert "KmsKeyArn" in p and "DeadLetterConfig" in p, logical_id


def test_monitoring_functions_have_kms_encrypted_dead_letter_queues(dev_monitoring):
    key_id, _ = one(dev_monitoring, "AWS::KMS::Key", "AlertsKey")
    for function_prefix, policy_prefix in MONITORING_FUNCTIONS.items():
        queue_id, queue = one(dev_monitoring, "AWS::SQS::Queue", f"{function_prefix}DeadLetters")
        assert queue["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
        function = props(dev_monitoring, "AWS::Lambda::Function", function_prefix)
        assert function["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
        assert function["KmsKeyArn"] == {"Fn::GetAtt": [key_id, "Arn"]}
        send = statement(dev_monitoring, policy_prefix, "SendDeadLetters")
        assert send == {"Sid": "SendDeadLetters", "Effect": "Allow", "Action": "sqs:SendMessage",
                        "Resource": {"Fn::GetAtt": [queue_id, "Arn"]}}
        use_key = statement(dev_monitoring, policy_prefix, "UseKeyViaSqsAndLambda")
        assert use_key["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}
        assert "kms:ViaService" in use_key["Condition"]["StringEquals"]


def test_dead_letter_queues_accept_only_tls(dev_monitoring, dev_training):
    for template in (dev_monitoring, dev_training):
        for queue_id in resources(template, "AWS::SQS::Queue"):
            policies = [p for p in resources(template, "AWS::SQS::QueuePolicy").values()
                        if {"Ref": queue_id} in p["Properties"]["Queues"]]
            denies = [
                s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
            ]
            assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies), queue_id
