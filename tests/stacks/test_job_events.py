"""JobStateEvents (platform_constructs/job_events.py): event log group, metric filters, notifications,
the running-jobs gauge."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Match

from bertbatch_contract import metrics
from platform_constructs.job_events import GAUGE_HANDLER
from tests.stacks.monitoring_standalone import (
    function_with_handler,
    notification_rule_id,
    topic_ref,
)
from tests.stacks.monitoring_standalone import resolve as resolve_str


def test_job_state_events_of_the_project_queues_go_to_a_log_group(dev_mon):
    (log_group_id,) = [
        k
        for k, r in dev_mon.of_type("AWS::Logs::LogGroup").items()
        if r["Properties"].get("LogGroupName") == "/aws/events/bert-batch/dev/batch-job-states"
    ]
    dev_mon.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.batch"],
                "detail-type": ["Batch Job State Change"],
                "detail": {"jobQueue": dev_mon.queue_arns()},
            },
            "Targets": [
                Match.object_like({"Arn": {"Fn::Join": ["", Match.array_with([":log-group:", {"Ref": log_group_id}])]}})
            ],
        },
    )


def test_eventbridge_may_write_the_job_state_log_group(dev_mon):
    (policy,) = dev_mon.of_type("AWS::Logs::ResourcePolicy").values()
    document = json.loads(resolve_str(policy["Properties"]["PolicyDocument"]))
    (statement,) = document["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert sorted(statement["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    (log_group_id,) = [
        k
        for k, r in dev_mon.of_type("AWS::Logs::LogGroup").items()
        if r["Properties"].get("LogGroupName") == "/aws/events/bert-batch/dev/batch-job-states"
    ]
    assert statement["Resource"] == "${" + log_group_id + ".Arn}"


def test_only_the_job_state_rule_may_write_the_log_group(dev_mon):
    (policy,) = dev_mon.of_type("AWS::Logs::ResourcePolicy").values()
    (statement,) = json.loads(resolve_str(policy["Properties"]["PolicyDocument"]))["Statement"]
    (rule,) = [
        r["Properties"]
        for r in dev_mon.of_type("AWS::Events::Rule").values()
        if r["Properties"].get("EventPattern", {}).get("detail", {}).keys() == {"jobQueue"}
    ]
    # The rule waits for the policy, so the policy names the rule's ARN, not a reference to it.
    rule_arn = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/" + rule["Name"]
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "${AWS::AccountId}"},
        "ArnEquals": {"aws:SourceArn": rule_arn},
    }
    assert rule["Name"] == "bert-batch-dev-batch-job-states-to-logs"


def test_job_state_log_group_is_encrypted_with_retention(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::Logs::LogGroup",
        {
            "LogGroupName": "/aws/events/bert-batch/dev/batch-job-states",
            "KmsKeyId": Match.any_value(),
            "RetentionInDays": 30,
        },
    )


@pytest.mark.parametrize("state", metrics.JOB_STATES)
def test_a_metric_filter_counts_each_job_state_per_queue(dev_mon, state):
    dev_mon.template.has_resource_properties(
        "AWS::Logs::MetricFilter",
        {
            "FilterPattern": f'{{ $.detail.status = "{state}" }}',
            "MetricTransformations": [
                {
                    "MetricNamespace": metrics.JOBS_NAMESPACE,
                    "MetricName": metrics.job_state_metric(state).name,
                    "MetricValue": "1",
                    "Unit": "Count",
                    "Dimensions": [{"Key": metrics.DIMENSION_JOB_QUEUE, "Value": "$.detail.jobQueue"}],
                }
            ],
        },
    )


def test_spot_interruptions_filter_matches_host_ec2_status_reasons(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::Logs::MetricFilter",
        {
            "FilterPattern": Match.string_like_regexp(r'\$\.detail\.statusReason = "Host EC2\*"'),
            "MetricTransformations": [
                Match.object_like(
                    {"MetricName": metrics.SPOT_INTERRUPTIONS.name, "MetricNamespace": metrics.JOBS_NAMESPACE}
                )
            ],
        },
    )


def test_notification_rule_matches_succeeded_and_failed_jobs_of_the_project_queues(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.batch"],
                "detail-type": ["Batch Job State Change"],
                "detail": {"jobQueue": dev_mon.queue_arns(), "status": ["SUCCEEDED", "FAILED"]},
            },
            "Targets": [Match.object_like({"Arn": topic_ref(dev_mon)})],
        },
    )
    assert notification_rule_id(dev_mon).startswith("JobEventsNotify")


def test_notification_message_is_a_readable_line(dev_mon):
    (rule,) = [
        r["Properties"]
        for r in dev_mon.of_type("AWS::Events::Rule").values()
        if "status" in r["Properties"].get("EventPattern", {}).get("detail", {})
    ]
    transformer = rule["Targets"][0]["InputTransformer"]
    paths = transformer["InputPathsMap"]
    template = transformer["InputTemplate"]
    assert {paths[k] for k in paths} >= {
        "$.detail.jobName",
        "$.detail.status",
        "$.detail.statusReason",
        "$.detail.jobId",
        "$.region",
    }
    inverse = {v: k for k, v in paths.items()}
    for path in ("$.detail.jobName", "$.detail.status", "$.detail.statusReason"):
        assert f"<{inverse[path]}>" in template
    assert "Run id: <" + inverse["$.detail.jobName"] + ">" in template
    assert re.search(
        r"https://console\.aws\.amazon\.com/batch/home\?region=<region>#jobs/detail/<"
        + inverse["$.detail.jobId"]
        + ">",
        template,
    )


def test_job_gauge_runs_every_five_minutes(dev_mon):
    function_id, props = function_with_handler(dev_mon, GAUGE_HANDLER)
    env = props["Environment"]["Variables"]
    assert (env["METRICS_NAMESPACE"], env["METRIC_NAME"], env["DIMENSION_NAME"], env["DIMENSION_VALUE"]) == (
        metrics.JOBS_NAMESPACE,
        metrics.RUNNING_JOBS.name,
        metrics.DIMENSION_PROFILE,
        "dev",
    )
    dev_mon.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(5 minutes)",
            "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [function_id, "Arn"]}})],
        },
    )


def test_job_gauge_may_publish_only_to_the_jobs_namespace(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "cloudwatch:PutMetricData",
                                "Condition": {"StringEquals": {"cloudwatch:namespace": metrics.JOBS_NAMESPACE}},
                            }
                        )
                    ]
                )
            }
        },
    )
