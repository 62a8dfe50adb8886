"""build_alarms (platform_constructs/alarms.py): thresholds, metrics, actions, runbook links."""

from __future__ import annotations

from bertbatch_contract import metrics
from tests.conftest import REPO
from tests.stacks.monitoring_standalone import (
    FALLBACK_FUNCTION,
    FILE_SYSTEM_ID,
    alarm,
    expression,
    metric_stats,
    topic_ref,
)


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
    assert (props["Threshold"], props["ComparisonOperator"], props["EvaluationPeriods"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
        1,
    )
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

    runbook = (REPO / "docs" / "runbook.md").read_text()
    for a in dev_mon.of_type("AWS::CloudWatch::Alarm").values():
        name = a["Properties"]["AlarmName"].removeprefix("bert-batch-dev-")
        assert f"## {name}" in runbook
