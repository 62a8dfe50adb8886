"""JobStateEvents (platform_constructs/job_events.py): event log group, metric filters, notifications,
the running-jobs gauge."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Capture, Match

from bertbatch_contract import metrics
from platform_constructs.job_events import GAUGE_HANDLER
from tests.stacks.conftest import value_of
from tests.stacks.monitoring_standalone import (
    NOTIFICATION_RULE,
    function_with_handler,
    notification_rule_id,
    topic_ref,
)
from tests.stacks.monitoring_standalone import resolve as resolve_str

RULE = "AWS::Events::Rule"
# The rule that sends every job state change of the project's queues to the log group.
TO_LOGS_PATTERN = {"EventPattern": {"detail": Match.object_equals({"jobQueue": Match.any_value()})}}


def _job_state_log_group(mon) -> str:
    (logical_id,) = mon.template.find_resources(
        "AWS::Logs::LogGroup", {"Properties": {"LogGroupName": "/aws/events/bert-batch/dev/batch-job-states"}})
    return logical_id


def _log_policy_statement(mon) -> dict:
    """The one statement of the log group's resource policy (JSON text joined with references)."""
    mon.template.resource_count_is("AWS::Logs::ResourcePolicy", 1)
    document = Capture()
    mon.template.has_resource_properties("AWS::Logs::ResourcePolicy", {"PolicyDocument": document})
    (statement,) = json.loads(resolve_str(value_of(document)))["Statement"]
    return statement


def test_job_state_events_of_the_project_queues_go_to_a_log_group(dev_mon):
    log_group_id = _job_state_log_group(dev_mon)
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
    statement = _log_policy_statement(dev_mon)
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert sorted(statement["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert statement["Resource"] == "${" + _job_state_log_group(dev_mon) + ".Arn}"


def test_only_the_job_state_rule_may_write_the_log_group(dev_mon):
    statement = _log_policy_statement(dev_mon)
    dev_mon.template.resource_properties_count_is(RULE, TO_LOGS_PATTERN, 1)
    name = Capture()
    dev_mon.template.has_resource_properties(RULE, {**TO_LOGS_PATTERN, "Name": name})
    # The rule waits for the policy, so the policy names the rule's ARN, not a reference to it.
    rule_arn = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/" + name.as_string()
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "${AWS::AccountId}"},
        "ArnEquals": {"aws:SourceArn": rule_arn},
    }
    assert name.as_string() == "bert-batch-dev-batch-job-states-to-logs"


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
    notification_rule_id(dev_mon)  # exactly one
    paths, template = Capture(), Capture()
    dev_mon.template.has_resource_properties(RULE, {
        **NOTIFICATION_RULE,
        "Targets": [Match.object_like({"InputTransformer": {"InputPathsMap": paths, "InputTemplate": template}})],
    })
    paths, template = paths.as_object(), template.as_string()
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
    function_id = function_with_handler(dev_mon, GAUGE_HANDLER)
    dev_mon.template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": GAUGE_HANDLER,
        "Environment": {"Variables": Match.object_like({
            "METRICS_NAMESPACE": metrics.JOBS_NAMESPACE,
            "METRIC_NAME": metrics.RUNNING_JOBS.name,
            "DIMENSION_NAME": metrics.DIMENSION_PROFILE,
            "DIMENSION_VALUE": "dev",
        })},
    })
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
