"""SpotFallback (platform_constructs/fallback.py): the rule, the function, its policy, logs and DLQ."""

from __future__ import annotations

from aws_cdk.assertions import Match

from bertbatch_contract import metrics
from bertbatch_contract.tags import TAG_FALLBACK_FROM, TAG_FALLBACK_TO, TAG_RUN_ID
from tests.stacks.conftest import (
    one,
    props,
    statement,
    text_of,
)


def test_fallback_function_is_python_on_arm64(dev_training):
    dev_training.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": Match.string_like_regexp(r"^python3\.1[2-9]$"),
            "Architectures": ["arm64"],
            "Handler": "fallback.handler",
        },
    )


def test_fallback_function_knows_both_queues_and_the_metric(dev_training):
    spot, _ = one(dev_training, "AWS::Batch::JobQueue", "ComputeSpotFirstQueue")
    on_demand, _ = one(dev_training, "AWS::Batch::JobQueue", "ComputeOnDemandQueue")
    variables = props(dev_training, "AWS::Lambda::Function", "FallbackFunction")["Environment"]["Variables"]
    assert variables == {
        "SOURCE_QUEUE_ARN": {"Fn::GetAtt": [spot, "JobQueueArn"]},
        "TARGET_QUEUE_ARN": {"Fn::GetAtt": [on_demand, "JobQueueArn"]},
        "METRICS_NAMESPACE": metrics.DEFAULT_NAMESPACE,
        "METRIC_NAME": metrics.FALLBACK_RESUBMISSIONS.name,
        "PROFILE": "dev",
    }


def test_fallback_rule_matches_failed_jobs_of_the_spot_first_queue(dev_training):
    spot, _ = one(dev_training, "AWS::Batch::JobQueue", "ComputeSpotFirstQueue")
    function, _ = one(dev_training, "AWS::Lambda::Function", "FallbackFunction")
    rule = props(dev_training, "AWS::Events::Rule", "FallbackFailedSpotJobs")
    assert rule["EventPattern"] == {
        "source": ["aws.batch"],
        "detail-type": ["Batch Job State Change"],
        "detail": {"status": ["FAILED"], "jobQueue": [{"Fn::GetAtt": [spot, "JobQueueArn"]}]},
    }
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": [function, "Arn"]}]


def test_fallback_may_submit_only_to_the_on_demand_queue_and_the_single_node_and_predict_definitions(dev_training):
    on_demand, _ = one(dev_training, "AWS::Batch::JobQueue", "ComputeOnDemandQueue")
    s = statement(dev_training, "FallbackPolicy", "SubmitToOnDemand")
    assert s["Action"] == "batch:SubmitJob"
    assert s["Resource"][0] == {"Fn::GetAtt": [on_demand, "JobQueueArn"]}
    assert text_of(s["Resource"][1]).endswith(":job-definition/bert-batch-dev-bert-finetune:*")
    assert text_of(s["Resource"][2]).endswith(":job-definition/bert-batch-dev-bert-predict:*")
    assert len(s["Resource"]) == 3


def test_fallback_tags_only_its_own_resubmissions_at_submit(dev_training):
    # Batch has no condition for "a job of this queue" on TagResource: the request's tags are
    # what can be checked. A resubmission always carries the fallback-from and run-id tags.
    tag = statement(dev_training, "FallbackPolicy", "TagResubmittedJobs")
    assert tag["Action"] == "batch:TagResource" and text_of(tag["Resource"]).endswith(":job/*")
    assert tag["Condition"] == {
        "Null": {f"aws:RequestTag/{TAG_FALLBACK_FROM}": "false", f"aws:RequestTag/{TAG_RUN_ID}": "false"}
    }


def test_fallback_may_only_mark_a_replaced_job_with_the_fallback_to_tag(dev_training):
    tag = statement(dev_training, "FallbackPolicy", "MarkReplacedJobs")
    assert tag["Action"] == "batch:TagResource" and text_of(tag["Resource"]).endswith(":job/*")
    assert tag["Condition"] == {
        "ForAllValues:StringEquals": {"aws:TagKeys": [TAG_FALLBACK_TO]},
        "Null": {"aws:TagKeys": "false"},
    }


def test_fallback_describes_jobs(dev_training):
    describe = statement(dev_training, "FallbackPolicy", "DescribeJobs")
    assert describe["Action"] == "batch:DescribeJobs" and describe["Resource"] == "*"


def test_fallback_logs_to_its_own_encrypted_log_group(dev_training):
    log_group_id, log_group = one(dev_training, "AWS::Logs::LogGroup", "FallbackLogs")
    assert "KmsKeyId" in log_group["Properties"] and log_group["Properties"]["RetentionInDays"] == 30
    function = props(dev_training, "AWS::Lambda::Function", "FallbackFunction")
    assert function["LoggingConfig"] == {"LogGroup": {"Ref": log_group_id}}
    s = statement(dev_training, "FallbackPolicy", "WriteOwnLogs")
    assert s["Resource"] == {"Fn::GetAtt": [log_group_id, "Arn"]}


def test_fallback_failures_land_in_an_encrypted_dead_letter_queue(dev_training):
    queue_id, q = one(dev_training, "AWS::SQS::Queue", "FallbackDeadLetters")
    # The project key from the Data stack (an import), not SQS-managed encryption.
    assert "KmsMasterKeyId" in q["Properties"] and "SqsManagedSseEnabled" not in q["Properties"]
    function = props(dev_training, "AWS::Lambda::Function", "FallbackFunction")
    assert function["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    assert function["KmsKeyArn"] == q["Properties"]["KmsMasterKeyId"]
    assert function["ReservedConcurrentExecutions"] == 5
    send = statement(dev_training, "FallbackPolicy", "SendDeadLetters")
    assert send["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}
