"""build_alarms (platform_constructs/alarms.py): thresholds, metrics, actions, runbook links."""

from __future__ import annotations

import re

from aws_cdk.assertions import Capture, Match

from bertbatch_contract import metrics
from tests.conftest import REPO
from tests.stacks.conftest import every
from tests.stacks.monitoring_standalone import (
    FALLBACK_FUNCTION,
    FILE_SYSTEM_ID,
    alarm_has,
    alarm_metrics,
    expression,
    metric_stats,
    topic_ref,
)

ALARM = "AWS::CloudWatch::Alarm"


def test_every_alarm_notifies_the_topic(dev_mon):
    assert dev_mon.template.find_resources(ALARM)
    dev_mon.template.all_resources_properties(ALARM, {"AlarmActions": Match.exact([topic_ref(dev_mon)])})


def test_failed_jobs_alarm_fires_on_any_failure_in_five_minutes(dev_mon):
    inputs = alarm_metrics(dev_mon, "JobsFailed")
    stats = metric_stats(inputs)
    assert {s["Metric"]["MetricName"] for s in stats.values()} == {metrics.job_state_metric("FAILED").name}
    assert sorted(s["Metric"]["Dimensions"][0]["Value"] for s in stats.values()) == sorted(dev_mon.queue_arns())
    assert {(s["Period"], s["Stat"]) for s in stats.values()} == {(300, "Sum")}
    assert expression(inputs) == " + ".join(f"FILL({i}, 0)" for i in stats)
    alarm_has(dev_mon, "JobsFailed", {
        "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "EvaluationPeriods": 1,
        "TreatMissingData": "notBreaching",
    })


def test_spot_interruptions_alarm_counts_an_hour(dev_mon):
    stats = metric_stats(alarm_metrics(dev_mon, "SpotInterruptions"))
    assert {s["Metric"]["MetricName"] for s in stats.values()} == {metrics.SPOT_INTERRUPTIONS.name}
    assert {(s["Period"], s["Stat"]) for s in stats.values()} == {(3600, "Sum")}
    alarm_has(dev_mon, "SpotInterruptions", {"Threshold": 3, "ComparisonOperator": "GreaterThanOrEqualToThreshold"})


def test_stalled_training_alarm_needs_running_jobs_and_no_samples(dev_mon):
    profile = [{"Name": metrics.DIMENSION_PROFILE, "Value": "dev"}]
    running = {"Namespace": metrics.JOBS_NAMESPACE, "MetricName": metrics.RUNNING_JOBS.name, "Dimensions": profile}
    samples = {"Namespace": metrics.DEFAULT_NAMESPACE, "MetricName": metrics.SAMPLES_PER_SECOND.name,
               "Dimensions": profile}
    alarm_has(dev_mon, "StalledTraining", {
        "Metrics": Match.array_with([
            Match.object_like({"Id": "running", "MetricStat": Match.object_like({"Metric": Match.exact(running)})}),
            Match.object_like({"Id": "samples", "MetricStat": Match.object_like({"Metric": Match.exact(samples)})}),
        ]),
        # 30 minutes of 5-minute periods, all of them stalled.
        "EvaluationPeriods": 6,
        "DatapointsToAlarm": 6,
        "Threshold": 1,
        "TreatMissingData": "notBreaching",
    })
    assert expression(alarm_metrics(dev_mon, "StalledTraining")) == (
        "IF(FILL(running, 0) > 0 AND FILL(samples, 0) == 0, 1, 0)")


def test_fsx_free_capacity_alarm_below_ten_percent(dev_mon):
    inputs = alarm_metrics(dev_mon, "FsxFreeCapacityLow")
    (stat,) = metric_stats(inputs).values()
    assert stat["Metric"] == {
        "Namespace": "AWS/FSx",
        "MetricName": "FreeDataStorageCapacity",
        "Dimensions": [{"Name": "FileSystemId", "Value": FILE_SYSTEM_ID}],
    }
    assert expression(inputs) == f"100 * free / {1200 * 1024**3}"
    alarm_has(dev_mon, "FsxFreeCapacityLow", {"Threshold": 10, "ComparisonOperator": "LessThanThreshold"})


def test_fallback_errors_alarm_watches_the_fallback_function(dev_mon):
    alarm_has(dev_mon, "FallbackErrors", {
        "Namespace": "AWS/Lambda",
        "MetricName": "Errors",
        "Statistic": "Sum",
        "Dimensions": Match.exact([{"Name": "FunctionName", "Value": FALLBACK_FUNCTION}]),
        "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    })


def test_alarm_thresholds_come_from_config(custom_mon):
    alarm_has(custom_mon, "JobsFailed", {"Threshold": 2})
    alarm_has(custom_mon, "SpotInterruptions", {"Threshold": 5})
    alarm_has(custom_mon, "StalledTraining", {"EvaluationPeriods": 9, "DatapointsToAlarm": 9})


def test_alarms_that_have_nothing_to_watch_are_not_created(custom_mon, prod_mon):
    custom_mon.template.resource_properties_count_is(ALARM, {"AlarmName": "bert-batch-dev-FallbackErrors"}, 0)
    custom_mon.template.resource_properties_count_is(ALARM, {"AlarmName": "bert-batch-dev-FsxFreeCapacityLow"}, 0)
    prod_mon.template.resource_properties_count_is(ALARM, {"AlarmName": "bert-batch-prod-GuardrailErrors"}, 0)


def test_alarm_descriptions_point_to_their_runbook_section(dev_mon, custom_mon):
    def ends_with(text: str):
        return Match.string_like_regexp(re.escape(text) + "$")

    alarm_has(dev_mon, "JobsFailed", {"AlarmDescription": ends_with("See docs/runbook.md#jobsfailed")})
    alarm_has(custom_mon, "StalledTraining", {
        "AlarmDescription": ends_with("See https://wiki.example.com/bert-batch/runbook#stalledtraining")})


def test_alarm_names_are_documented_in_the_runbook(dev_mon):
    runbook = (REPO / "docs" / "runbook.md").read_text()
    names = Capture()
    dev_mon.template.all_resources_properties(ALARM, {"AlarmName": names})
    for name in every(names, Capture.as_string):
        assert f"## {name.removeprefix('bert-batch-dev-')}" in runbook
