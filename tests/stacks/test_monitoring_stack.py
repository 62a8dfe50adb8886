"""Monitoring stack: alerts topic, budget, guardrail, job events, dashboard, alarms.

Most tests build the stack alone with stand-ins for the other stacks (tests/stacks/
monitoring_standalone.py), with the profile's cdk-nag packs; the last ones check the stack
inside the whole platform (the session fixtures).
"""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Match

from bert_train import metrics
from platform_constructs.functions import HANDLERS_DIR
from platform_constructs.job_events import GAUGE_HANDLER
from platform_constructs.guardrail import GUARDRAIL_HANDLER
from stacks.monitoring_stack import QUEUE_KINDS
from tests.stacks.conftest import config_for
from tests.stacks.monitoring_standalone import (
    ARTIFACTS_BUCKET,
    DATA_BUCKET,
    FALLBACK_FUNCTION,
    FILE_SYSTEM_ID,
    build,
    job_log_group_name,
    resolve as resolve_str,
)

EMAILS = ["ml-oncall@example.com", "platform@example.com"]


@pytest.fixture(scope="module")
def dev_mon():
    return build(config_for("dev"))


@pytest.fixture(scope="module")
def prod_mon():
    return build(config_for("prod"))


@pytest.fixture(scope="module")
def custom_mon():
    """Emails, tag filter, other thresholds, no FSx, no fallback function."""
    return build(
        config_for(
            "dev",
            alert_emails=json.dumps(EMAILS),
            **{
                "budget.filter_on_project_tag": "true",
                "budget.actual_thresholds_percent": "[25, 50, 100, 150]",
                "budget.forecasted_threshold_percent": "90",
                "budget.monthly_limit_usd": "1234",
                "monitoring.failed_jobs_threshold": "2",
                "monitoring.spot_interruptions_threshold": "5",
                "monitoring.stalled_minutes": "45",
                "monitoring.runbook_url": "https://wiki.example.com/bert-batch/runbook",
                "data.fsx.enabled": "false",
            },
        ),
        fallback=False,
    )


def topic_ref(mon) -> dict:
    (logical_id,) = mon.of_type("AWS::SNS::Topic")
    return {"Ref": logical_id}


def alarm(mon, name: str) -> dict:
    (props,) = [
        r["Properties"] for r in mon.of_type("AWS::CloudWatch::Alarm").values()
        if r["Properties"]["AlarmName"] == f"bert-batch-{mon.config.profile}-{name}"
    ]
    return props


def metric_stats(alarm_props: dict) -> dict[str, dict]:
    """id -> MetricStat of a metric-math alarm's inputs."""
    return {m["Id"]: m["MetricStat"] for m in alarm_props["Metrics"] if "MetricStat" in m}


def expression(alarm_props: dict) -> str:
    (expr,) = [m["Expression"] for m in alarm_props["Metrics"] if m.get("ReturnData", True) and "Expression" in m]
    return expr


def dashboard_metrics(mon) -> list[list]:
    """Every metric array of every graph widget ([namespace, name, dim, value, ..., {opts}])."""
    out = []
    for widget in mon.dashboard()["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            if isinstance(entry[0], str):
                out.append(entry)
    return out


def dashboard_text(mon) -> str:
    return "\n".join(w["properties"]["markdown"] for w in mon.dashboard()["widgets"] if w["type"] == "text")


# --- alerts topic ---------------------------------------------------------------------------
def test_topic_is_encrypted_with_the_monitoring_key(dev_mon):
    (key_id,) = dev_mon.of_type("AWS::KMS::Key")
    dev_mon.template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}})


def test_monitoring_key_rotates(dev_mon):
    dev_mon.template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def _key_statement(mon, service: str) -> dict:
    (key,) = mon.of_type("AWS::KMS::Key").values()
    (statement,) = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if s.get("Principal") == {"Service": service}]
    return statement


@pytest.mark.parametrize("service", ["budgets.amazonaws.com", "events.amazonaws.com", "cloudwatch.amazonaws.com"])
def test_key_policy_lets_publishing_services_use_the_key(dev_mon, service):
    statement = _key_statement(dev_mon, service)
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


@pytest.mark.parametrize("service", ["budgets.amazonaws.com", "cloudwatch.amazonaws.com"])
def test_key_grants_to_budgets_and_cloudwatch_are_for_this_account_only(dev_mon, service):
    assert _key_statement(dev_mon, service)["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_key_grant_to_eventbridge_has_no_source_condition(dev_mon):
    # EventBridge's KMS requests for an encrypted SNS target carry no aws:Source* keys.
    assert "Condition" not in _key_statement(dev_mon, "events.amazonaws.com")


def test_cloudwatch_logs_may_use_the_key_for_the_monitoring_log_groups(dev_mon):
    (key,) = dev_mon.of_type("AWS::KMS::Key").values()
    prefixes = [
        resolve_str(s["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if "ArnLike" in s.get("Condition", {}) and "kms:EncryptionContext:aws:logs:arn" in s["Condition"]["ArnLike"]
    ]
    assert sorted(p.split(":log-group:")[1] for p in prefixes) == ["/aws/events/bert-batch/dev/*", "/bert-batch/dev/*"]


def test_topic_policy_denies_publishing_without_tls(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "sns:Publish",
                                "Principal": "*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_topic_policy_lets_budgets_of_this_account_publish(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Sid": "AllowBudgetsToPublish",
                            "Effect": "Allow",
                            "Action": "sns:Publish",
                            "Principal": {"Service": "budgets.amazonaws.com"},
                            "Resource": topic_ref(dev_mon),
                            "Condition": {
                                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                                "ArnLike": {
                                    "aws:SourceArn": {
                                        "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":budgets::", {"Ref": "AWS::AccountId"}, ":*"]]
                                    }
                                },
                            },
                        }
                    ]
                )
            }
        },
    )


def test_topic_policy_lets_eventbridge_and_cloudwatch_publish(dev_mon):
    for service in ("events.amazonaws.com", "cloudwatch.amazonaws.com"):
        dev_mon.template.has_resource_properties(
            "AWS::SNS::TopicPolicy",
            {
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [Match.object_like({"Effect": "Allow", "Action": "sns:Publish", "Principal": {"Service": service}})]
                    )
                }
            },
        )


def test_one_email_subscription_per_configured_address(custom_mon):
    for email in EMAILS:
        custom_mon.template.has_resource_properties(
            "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": email, "TopicArn": topic_ref(custom_mon)}
        )
    emails = [r for r in custom_mon.of_type("AWS::SNS::Subscription").values() if r["Properties"]["Protocol"] == "email"]
    assert len(emails) == len(EMAILS)


def test_no_email_subscription_without_addresses(dev_mon):
    assert not [r for r in dev_mon.of_type("AWS::SNS::Subscription").values() if r["Properties"]["Protocol"] == "email"]


# --- budget ---------------------------------------------------------------------------------
def test_monthly_cost_budget_with_the_configured_limit(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::Budgets::Budget",
        {
            "Budget": {
                "BudgetName": "bert-batch-dev",
                "BudgetType": "COST",
                "TimeUnit": "MONTHLY",
                "BudgetLimit": {"Amount": 500, "Unit": "USD"},
            }
        },
    )


def test_budget_notifies_50_80_100_actual_and_100_forecasted_to_the_topic(dev_mon):
    subscriber = [{"SubscriptionType": "SNS", "Address": topic_ref(dev_mon)}]
    expected = [("ACTUAL", 50), ("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100)]
    dev_mon.template.has_resource_properties(
        "AWS::Budgets::Budget",
        {
            "NotificationsWithSubscribers": [
                {
                    "Notification": {
                        "NotificationType": kind,
                        "ComparisonOperator": "GREATER_THAN",
                        "Threshold": threshold,
                        "ThresholdType": "PERCENTAGE",
                    },
                    "Subscribers": subscriber,
                }
                for kind, threshold in expected
            ]
        },
    )


def test_budget_thresholds_come_from_config(custom_mon):
    (budget,) = custom_mon.of_type("AWS::Budgets::Budget").values()
    notifications = [
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"])
        for n in budget["Properties"]["NotificationsWithSubscribers"]
    ]
    assert notifications == [("ACTUAL", 25), ("ACTUAL", 50), ("ACTUAL", 100), ("ACTUAL", 150), ("FORECASTED", 90)]
    assert budget["Properties"]["Budget"]["BudgetLimit"] == {"Amount": 1234, "Unit": "USD"}


def test_budget_filters_on_the_project_tag_when_asked(custom_mon):
    custom_mon.template.has_resource_properties(
        "AWS::Budgets::Budget", {"Budget": {"CostFilters": {"TagKeyValue": ["user:Project$bert-batch"]}}}
    )


def test_budget_counts_all_spend_by_default(dev_mon):
    dev_mon.template.has_resource_properties("AWS::Budgets::Budget", {"Budget": {"CostFilters": Match.absent()}})


def test_budget_waits_for_the_topic_policy(dev_mon):
    (policy_id,) = dev_mon.of_type("AWS::SNS::TopicPolicy")
    (budget,) = dev_mon.of_type("AWS::Budgets::Budget").values()
    assert policy_id in budget.get("DependsOn", [])


# --- cost guardrail -------------------------------------------------------------------------
def _function(mon, handler: str) -> tuple[str, dict]:
    found = [(k, r["Properties"]) for k, r in mon.of_type("AWS::Lambda::Function").items() if r["Properties"]["Handler"] == handler]
    assert len(found) == 1, f"expected one function with handler {handler}"
    return found[0]


def test_guardrail_function_knows_the_budget_and_the_queues(dev_mon):
    _, props = _function(dev_mon, GUARDRAIL_HANDLER)
    env = props["Environment"]["Variables"]
    assert env["BUDGET_NAME"] == "bert-batch-dev"
    assert env["BUDGET_LIMIT_USD"] == "500"
    assert env["MIN_PERCENT"] == "100"
    assert json.loads(resolve_str(env["JOB_QUEUES"])) == dev_mon.queue_arns()


def test_guardrail_function_is_python_on_arm64(dev_mon):
    _, props = _function(dev_mon, GUARDRAIL_HANDLER)
    assert props["Runtime"].startswith("python3.")
    assert props["Architectures"] == ["arm64"]


def test_guardrail_is_subscribed_to_the_topic(dev_mon):
    function_id, _ = _function(dev_mon, GUARDRAIL_HANDLER)
    dev_mon.template.has_resource_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "lambda", "TopicArn": topic_ref(dev_mon), "Endpoint": {"Fn::GetAtt": [function_id, "Arn"]}},
    )


def test_guardrail_may_update_only_the_project_queues(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [{"Sid": "DisableProjectJobQueues", "Effect": "Allow", "Action": "batch:UpdateJobQueue", "Resource": sorted(dev_mon.queue_arns())}]
                )
            }
        },
    )


def test_no_guardrail_when_config_turns_it_off(prod_mon):
    assert prod_mon.config.budget.cost_guardrail is False
    handlers = [r["Properties"]["Handler"] for r in prod_mon.of_type("AWS::Lambda::Function").values()]
    assert GUARDRAIL_HANDLER not in handlers


def test_handler_code_is_the_handlers_package():
    assert (HANDLERS_DIR / "guardrail.py").is_file()
    assert (HANDLERS_DIR / "job_gauge.py").is_file()


def test_function_roles_use_no_aws_managed_policy(dev_mon):
    for role in dev_mon.of_type("AWS::IAM::Role").values():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert "Ref" in arn, f"AWS managed policy attached: {arn}"


# --- job-state events -----------------------------------------------------------------------
def test_job_state_events_of_the_project_queues_go_to_a_log_group(dev_mon):
    (log_group_id,) = [
        k for k, r in dev_mon.of_type("AWS::Logs::LogGroup").items()
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
                Match.object_like(
                    {"Arn": {"Fn::Join": ["", Match.array_with([":log-group:", {"Ref": log_group_id}])]}}
                )
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
        k for k, r in dev_mon.of_type("AWS::Logs::LogGroup").items()
        if r["Properties"].get("LogGroupName") == "/aws/events/bert-batch/dev/batch-job-states"
    ]
    assert statement["Resource"] == "${" + log_group_id + ".Arn}"


def test_job_state_log_group_is_encrypted_with_retention(dev_mon):
    dev_mon.template.has_resource_properties(
        "AWS::Logs::LogGroup",
        {"LogGroupName": "/aws/events/bert-batch/dev/batch-job-states", "KmsKeyId": Match.any_value(), "RetentionInDays": 30},
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
            "MetricTransformations": [Match.object_like({"MetricName": metrics.SPOT_INTERRUPTIONS.name, "MetricNamespace": metrics.JOBS_NAMESPACE})],
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


def test_notification_message_is_a_readable_line(dev_mon):
    (rule,) = [
        r["Properties"] for r in dev_mon.of_type("AWS::Events::Rule").values()
        if "status" in r["Properties"].get("EventPattern", {}).get("detail", {})
    ]
    transformer = rule["Targets"][0]["InputTransformer"]
    paths = transformer["InputPathsMap"]
    template = transformer["InputTemplate"]
    assert {paths[k] for k in paths} >= {"$.detail.jobName", "$.detail.status", "$.detail.statusReason", "$.detail.jobId", "$.region"}
    inverse = {v: k for k, v in paths.items()}
    for path in ("$.detail.jobName", "$.detail.status", "$.detail.statusReason"):
        assert f"<{inverse[path]}>" in template
    assert "Run id: <" + inverse["$.detail.jobName"] + ">" in template
    assert re.search(r"https://console\.aws\.amazon\.com/batch/home\?region=<region>#jobs/detail/<" + inverse["$.detail.jobId"] + ">", template)


def test_job_gauge_runs_every_five_minutes(dev_mon):
    function_id, props = _function(dev_mon, GAUGE_HANDLER)
    env = props["Environment"]["Variables"]
    assert (env["METRICS_NAMESPACE"], env["METRIC_NAME"], env["DIMENSION_NAME"], env["DIMENSION_VALUE"]) == (
        metrics.JOBS_NAMESPACE,
        metrics.RUNNING_JOBS.name,
        metrics.DIMENSION_PROFILE,
        "dev",
    )
    dev_mon.template.has_resource_properties(
        "AWS::Events::Rule",
        {"ScheduleExpression": "rate(5 minutes)", "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [function_id, "Arn"]}})]},
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


# --- dashboard ------------------------------------------------------------------------------
def test_one_dashboard_per_profile(dev_mon, prod_mon):
    dev_mon.template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    dev_mon.template.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardName": "bert-batch-dev-training"})
    prod_mon.template.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardName": "bert-batch-prod-training"})


def test_dashboard_shows_every_contract_metric(dev_mon):
    shown = {
        m[1] for m in dashboard_metrics(dev_mon)
        if m[0] == metrics.DEFAULT_NAMESPACE and m[2:4] == [metrics.DIMENSION_PROFILE, "dev"]
    }
    expected = {m.name for m in metrics.CONTAINER_METRICS} | {metrics.FALLBACK_RESUBMISSIONS.name}
    assert expected <= shown, f"missing from the dashboard: {sorted(expected - shown)}"


def test_dashboard_uses_only_contract_names_in_the_training_namespace(dev_mon):
    shown = {m[1] for m in dashboard_metrics(dev_mon) if m[0] == metrics.DEFAULT_NAMESPACE}
    assert shown <= set(metrics.BY_NAME)


def test_dashboard_shows_jobs_by_state_for_each_queue(dev_mon):
    shown = {(m[1], m[3]) for m in dashboard_metrics(dev_mon) if m[0] == metrics.JOBS_NAMESPACE and m[2] == metrics.DIMENSION_JOB_QUEUE}
    for arn in dev_mon.queue_arns():
        for state in metrics.JOB_STATES:
            assert (metrics.job_state_metric(state).name, arn) in shown


def test_dashboard_shows_spot_interruptions_per_queue_and_running_jobs(dev_mon):
    shown = {(m[1], m[3]) for m in dashboard_metrics(dev_mon) if m[0] == metrics.JOBS_NAMESPACE}
    for arn in dev_mon.queue_arns():
        assert (metrics.SPOT_INTERRUPTIONS.name, arn) in shown
    assert (metrics.RUNNING_JOBS.name, "dev") in shown


def test_dashboard_shows_fsx_throughput_and_free_capacity(dev_mon):
    shown = {m[1] for m in dashboard_metrics(dev_mon) if m[0] == "AWS/FSx" and m[2:4] == ["FileSystemId", FILE_SYSTEM_ID]}
    assert shown == {"DataReadBytes", "DataWriteBytes", "FreeDataStorageCapacity"}


def test_dashboard_has_no_fsx_widget_without_fsx(custom_mon):
    assert not [m for m in dashboard_metrics(custom_mon) if m[0] == "AWS/FSx"]


def test_dashboard_shows_both_bucket_sizes(dev_mon):
    shown = {tuple(m[1:6]) for m in dashboard_metrics(dev_mon) if m[0] == "AWS/S3"}
    assert shown == {
        ("BucketSizeBytes", "BucketName", bucket, "StorageType", "StandardStorage") for bucket in (DATA_BUCKET, ARTIFACTS_BUCKET)
    }


def test_dashboard_shows_estimated_charges_against_the_budget(dev_mon):
    (widget,) = [
        w for w in dev_mon.dashboard()["widgets"]
        if any(m[0] == "AWS/Billing" for m in w["properties"].get("metrics", []) if isinstance(m[0], str))
    ]
    (entry,) = widget["properties"]["metrics"]
    assert entry[1:4] == ["EstimatedCharges", "Currency", "USD"]
    assert entry[-1]["region"] == "us-east-1"
    (annotation,) = widget["properties"]["annotations"]["horizontal"]
    assert annotation["value"] == 500


def test_dashboard_links_queues_log_group_and_runbook(dev_mon, custom_mon):
    text = dashboard_text(dev_mon)
    for kind, arn in zip(QUEUE_KINDS, dev_mon.queue_arns()):
        assert f"[{kind}](https://console.aws.amazon.com/batch/home?region=${{AWS::Region}}#queues/detail/{arn})" in text
    assert job_log_group_name("dev") in text
    assert "docs/runbook.md" in text
    assert "us-east-1" in text  # where the billing metric lives
    assert "[runbook](https://wiki.example.com/bert-batch/runbook)" in dashboard_text(custom_mon)


def test_dashboard_shows_the_state_of_every_alarm(dev_mon):
    (widget,) = [w for w in dev_mon.dashboard()["widgets"] if w["type"] == "alarm"]
    alarm_ids = {"${" + k + ".Arn}" for k in dev_mon.of_type("AWS::CloudWatch::Alarm")}
    assert set(widget["properties"]["alarms"]) == alarm_ids


# --- alarms ---------------------------------------------------------------------------------
def test_every_alarm_notifies_the_topic(dev_mon):
    alarms = dev_mon.of_type("AWS::CloudWatch::Alarm").values()
    assert alarms
    for a in alarms:
        assert a["Properties"]["AlarmActions"] == [topic_ref(dev_mon)]


def test_failed_jobs_alarm_fires_on_any_failure_in_five_minutes(dev_mon):
    props = alarm(dev_mon, "JobsFailed")
    stats = metric_stats(props)
    assert {s["Metric"]["MetricName"] for s in stats.values()} == {metrics.job_state_metric("FAILED").name}
    assert sorted(s["Metric"]["Dimensions"][0]["Value"] for s in stats.values()) == sorted(dev_mon.queue_arns())
    assert {(s["Period"], s["Stat"]) for s in stats.values()} == {(300, "Sum")}
    assert expression(props) == " + ".join(f"FILL({i}, 0)" for i in stats)
    assert (props["Threshold"], props["ComparisonOperator"], props["EvaluationPeriods"]) == (1, "GreaterThanOrEqualToThreshold", 1)
    assert props["TreatMissingData"] == "notBreaching"


def test_spot_interruptions_alarm_counts_an_hour(dev_mon):
    props = alarm(dev_mon, "SpotInterruptions")
    stats = metric_stats(props)
    assert {s["Metric"]["MetricName"] for s in stats.values()} == {metrics.SPOT_INTERRUPTIONS.name}
    assert {(s["Period"], s["Stat"]) for s in stats.values()} == {(3600, "Sum")}
    assert (props["Threshold"], props["ComparisonOperator"]) == (3, "GreaterThanOrEqualToThreshold")


def test_stalled_training_alarm_needs_running_jobs_and_no_samples(dev_mon):
    props = alarm(dev_mon, "StalledTraining")
    stats = metric_stats(props)
    assert stats["running"]["Metric"] == {
        "Namespace": metrics.JOBS_NAMESPACE,
        "MetricName": metrics.RUNNING_JOBS.name,
        "Dimensions": [{"Name": metrics.DIMENSION_PROFILE, "Value": "dev"}],
    }
    assert stats["samples"]["Metric"] == {
        "Namespace": metrics.DEFAULT_NAMESPACE,
        "MetricName": metrics.SAMPLES_PER_SECOND.name,
        "Dimensions": [{"Name": metrics.DIMENSION_PROFILE, "Value": "dev"}],
    }
    assert expression(props) == "IF(FILL(running, 0) > 0 AND FILL(samples, 0) == 0, 1, 0)"
    # 30 minutes of 5-minute periods, all of them stalled.
    assert (props["EvaluationPeriods"], props["DatapointsToAlarm"], props["Threshold"]) == (6, 6, 1)
    assert props["TreatMissingData"] == "notBreaching"


def test_fsx_free_capacity_alarm_below_ten_percent(dev_mon):
    props = alarm(dev_mon, "FsxFreeCapacityLow")
    (stat,) = metric_stats(props).values()
    assert stat["Metric"] == {
        "Namespace": "AWS/FSx",
        "MetricName": "FreeDataStorageCapacity",
        "Dimensions": [{"Name": "FileSystemId", "Value": FILE_SYSTEM_ID}],
    }
    assert expression(props) == f"100 * free / {1200 * 1024**3}"
    assert (props["Threshold"], props["ComparisonOperator"]) == (10, "LessThanThreshold")


def test_fallback_errors_alarm_watches_the_fallback_function(dev_mon):
    props = alarm(dev_mon, "FallbackErrors")
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert props["Dimensions"] == [{"Name": "FunctionName", "Value": FALLBACK_FUNCTION}]
    assert (props["Threshold"], props["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")


def test_alarm_thresholds_come_from_config(custom_mon):
    assert alarm(custom_mon, "JobsFailed")["Threshold"] == 2
    assert alarm(custom_mon, "SpotInterruptions")["Threshold"] == 5
    stalled = alarm(custom_mon, "StalledTraining")
    assert (stalled["EvaluationPeriods"], stalled["DatapointsToAlarm"]) == (9, 9)


def test_alarms_that_have_nothing_to_watch_are_not_created(custom_mon, prod_mon):
    names = {a["Properties"]["AlarmName"] for a in custom_mon.of_type("AWS::CloudWatch::Alarm").values()}
    assert "bert-batch-dev-FallbackErrors" not in names
    assert "bert-batch-dev-FsxFreeCapacityLow" not in names
    prod_names = {a["Properties"]["AlarmName"] for a in prod_mon.of_type("AWS::CloudWatch::Alarm").values()}
    assert "bert-batch-prod-GuardrailErrors" not in prod_names


def test_alarm_descriptions_point_to_their_runbook_section(dev_mon, custom_mon):
    assert alarm(dev_mon, "JobsFailed")["AlarmDescription"].endswith("See docs/runbook.md#jobsfailed")
    assert alarm(custom_mon, "StalledTraining")["AlarmDescription"].endswith(
        "See https://wiki.example.com/bert-batch/runbook#stalledtraining"
    )


def test_alarm_names_are_documented_in_the_runbook(dev_mon):
    from tests.conftest import REPO

    runbook = (REPO / "docs" / "runbook.md").read_text()
    for a in dev_mon.of_type("AWS::CloudWatch::Alarm").values():
        name = a["Properties"]["AlarmName"].removeprefix("bert-batch-dev-")
        assert f"## {name}" in runbook


# --- inside the whole platform (session fixtures: real Training and Data stacks) -------------
def _platform_dashboard_metrics(template) -> list[list]:
    (dashboard,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.loads(resolve_str(dashboard["Properties"]["DashboardBody"]))
    return [m for w in body["widgets"] for m in w["properties"].get("metrics", []) if isinstance(m[0], str)]


def test_platform_dashboard_shows_every_contract_metric(dev_monitoring):
    shown = {m[1] for m in _platform_dashboard_metrics(dev_monitoring) if m[0] == metrics.DEFAULT_NAMESPACE}
    assert {m.name for m in metrics.ALL_METRICS} <= shown


def test_platform_job_rules_watch_the_training_queues(dev, dev_monitoring):
    rules = dev_monitoring.find_resources("AWS::Events::Rule", {"Properties": {"EventPattern": {"source": ["aws.batch"]}}})
    assert len(rules) == 2
    for rule in rules.values():
        queues = rule["Properties"]["EventPattern"]["detail"]["jobQueue"]
        assert len(queues) == len(dev.platform.training.job_queues) == 3


def test_platform_alarms_cover_failures_spot_stalls_fsx_and_the_fallback_function(dev_monitoring, prod_monitoring):
    for template, profile in ((dev_monitoring, "dev"), (prod_monitoring, "prod")):
        names = {a["Properties"]["AlarmName"] for a in template.find_resources("AWS::CloudWatch::Alarm").values()}
        for alarm_name in ("JobsFailed", "SpotInterruptions", "StalledTraining", "FsxFreeCapacityLow", "FallbackErrors", "JobGaugeErrors"):
            assert f"bert-batch-{profile}-{alarm_name}" in names


def test_platform_guardrail_only_in_dev(dev_monitoring, prod_monitoring):
    def handlers(template):
        return {r["Properties"]["Handler"] for r in template.find_resources("AWS::Lambda::Function").values()}

    assert GUARDRAIL_HANDLER in handlers(dev_monitoring)
    assert GUARDRAIL_HANDLER not in handlers(prod_monitoring)
