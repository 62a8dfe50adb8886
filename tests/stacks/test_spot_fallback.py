"""SpotFallback (platform_constructs/fallback.py): the rule, the function, its policy, logs and DLQ."""

from __future__ import annotations

from aws_cdk.assertions import Capture, Match

from bertbatch_contract import metrics
from bertbatch_contract.tags import TAG_FALLBACK_FROM, TAG_FALLBACK_TO, TAG_RUN_ID
from tests.stacks.conftest import (
    one,
    one_has,
    policy_has,
    statement_like,
    statement_part,
    text_of,
    value_of,
)

FUNCTION = "AWS::Lambda::Function"


def _fallback_has(template, properties: dict) -> None:
    one_has(template, FUNCTION, "FallbackFunction", properties)


def _statement_resource(template, sid: str, **fields) -> str:
    """The text of the Resource of statement `sid` of the fallback's policy (which has `fields`)."""
    return text_of(statement_part(template, "FallbackPolicy", sid, "Resource", **fields))


def test_fallback_function_is_python_on_arm64(dev_training):
    dev_training.has_resource_properties(
        FUNCTION,
        {
            "Runtime": Match.string_like_regexp(r"^python3\.1[2-9]$"),
            "Architectures": ["arm64"],
            "Handler": "fallback.handler",
        },
    )


def test_fallback_function_knows_both_queues_and_the_metric(dev_training):
    spot, _ = one(dev_training, "AWS::Batch::JobQueue", "ComputeSpotFirstQueue")
    on_demand, _ = one(dev_training, "AWS::Batch::JobQueue", "ComputeOnDemandQueue")
    _fallback_has(dev_training, {"Environment": {"Variables": Match.exact({
        "SOURCE_QUEUE_ARN": {"Fn::GetAtt": [spot, "JobQueueArn"]},
        "TARGET_QUEUE_ARN": {"Fn::GetAtt": [on_demand, "JobQueueArn"]},
        "METRICS_NAMESPACE": metrics.DEFAULT_NAMESPACE,
        "METRIC_NAME": metrics.FALLBACK_RESUBMISSIONS.name,
        "PROFILE": "dev",
    })}})


def test_fallback_rule_matches_failed_jobs_of_the_spot_first_queue(dev_training):
    spot, _ = one(dev_training, "AWS::Batch::JobQueue", "ComputeSpotFirstQueue")
    function, _ = one(dev_training, FUNCTION, "FallbackFunction")
    one_has(dev_training, "AWS::Events::Rule", "FallbackFailedSpotJobs", {
        "EventPattern": Match.exact({
            "source": ["aws.batch"],
            "detail-type": ["Batch Job State Change"],
            "detail": {"status": ["FAILED"], "jobQueue": [{"Fn::GetAtt": [spot, "JobQueueArn"]}]},
        }),
        "Targets": [Match.object_like({"Arn": Match.exact({"Fn::GetAtt": [function, "Arn"]})})],
    })


def test_fallback_may_submit_only_to_the_on_demand_queue_and_the_single_node_and_predict_definitions(dev_training):
    on_demand, _ = one(dev_training, "AWS::Batch::JobQueue", "ComputeOnDemandQueue")
    finetune, predict = Capture(), Capture()
    policy_has(dev_training, "FallbackPolicy", statement_like(
        "SubmitToOnDemand",
        Action="batch:SubmitJob",
        Resource=[Match.exact({"Fn::GetAtt": [on_demand, "JobQueueArn"]}), finetune, predict],
    ))
    assert text_of(value_of(finetune)).endswith(":job-definition/bert-batch-dev-bert-finetune:*")
    assert text_of(value_of(predict)).endswith(":job-definition/bert-batch-dev-bert-predict:*")


def test_fallback_tags_only_its_own_resubmissions_at_submit(dev_training):
    # Batch has no condition for "a job of this queue" on TagResource: the request's tags are
    # what can be checked. A resubmission always carries the fallback-from and run-id tags.
    resource = _statement_resource(
        dev_training, "TagResubmittedJobs", Action="batch:TagResource", Condition=Match.exact({
            "Null": {f"aws:RequestTag/{TAG_FALLBACK_FROM}": "false", f"aws:RequestTag/{TAG_RUN_ID}": "false"}}))
    assert resource.endswith(":job/*")


def test_fallback_may_only_mark_a_replaced_job_with_the_fallback_to_tag(dev_training):
    resource = _statement_resource(
        dev_training, "MarkReplacedJobs", Action="batch:TagResource", Condition=Match.exact({
            "ForAllValues:StringEquals": {"aws:TagKeys": [TAG_FALLBACK_TO]},
            "Null": {"aws:TagKeys": "false"},
        }))
    assert resource.endswith(":job/*")


def test_fallback_describes_jobs(dev_training):
    policy_has(dev_training, "FallbackPolicy",
               statement_like("DescribeJobs", Action="batch:DescribeJobs", Resource="*"))


def test_fallback_logs_to_its_own_encrypted_log_group(dev_training):
    log_group_id, _ = one(dev_training, "AWS::Logs::LogGroup", "FallbackLogs")
    one_has(dev_training, "AWS::Logs::LogGroup", "FallbackLogs", {"KmsKeyId": Match.any_value(), "RetentionInDays": 30})
    _fallback_has(dev_training, {"LoggingConfig": Match.exact({"LogGroup": {"Ref": log_group_id}})})
    policy_has(dev_training, "FallbackPolicy", statement_like(
        "WriteOwnLogs", Resource=Match.exact({"Fn::GetAtt": [log_group_id, "Arn"]})))


def test_fallback_failures_land_in_an_encrypted_dead_letter_queue(dev_training):
    queue_id, _ = one(dev_training, "AWS::SQS::Queue", "FallbackDeadLetters")
    # The project key from the Data stack (an import), not SQS-managed encryption.
    key = Capture()
    one_has(dev_training, "AWS::SQS::Queue", "FallbackDeadLetters",
            {"KmsMasterKeyId": key, "SqsManagedSseEnabled": Match.absent()})
    _fallback_has(dev_training, {
        "DeadLetterConfig": Match.exact({"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}),
        "KmsKeyArn": Match.exact(value_of(key)),
        "ReservedConcurrentExecutions": 5,
    })
    policy_has(dev_training, "FallbackPolicy", statement_like(
        "SendDeadLetters", Resource=Match.exact({"Fn::GetAtt": [queue_id, "Arn"]})))
