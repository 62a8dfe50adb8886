"""TrainingDashboard (platform_constructs/dashboard.py): links, metrics, storage and cost rows."""

from __future__ import annotations

from bertbatch_contract import metrics
from stacks.monitoring_stack import QUEUE_KINDS
from tests.stacks.monitoring_standalone import (
    ARTIFACTS_BUCKET,
    DATA_BUCKET,
    FILE_SYSTEM_ID,
    dashboard_metrics,
    dashboard_text,
    job_log_group_name,
)


def test_one_dashboard_per_profile(dev_mon, prod_mon):
    dev_mon.template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    dev_mon.template.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardName": "bert-batch-dev-training"})
    prod_mon.template.has_resource_properties(
        "AWS::CloudWatch::Dashboard", {"DashboardName": "bert-batch-prod-training"}
    )


def test_dashboard_shows_every_contract_metric(dev_mon):
    shown = {
        m[1]
        for m in dashboard_metrics(dev_mon)
        if m[0] == metrics.DEFAULT_NAMESPACE and m[2:4] == [metrics.DIMENSION_PROFILE, "dev"]
    }
    expected = {m.name for m in metrics.CONTAINER_METRICS} | {metrics.FALLBACK_RESUBMISSIONS.name}
    assert expected <= shown, f"missing from the dashboard: {sorted(expected - shown)}"


def test_dashboard_uses_only_contract_names_in_the_training_namespace(dev_mon):
    shown = {m[1] for m in dashboard_metrics(dev_mon) if m[0] == metrics.DEFAULT_NAMESPACE}
    assert shown <= set(metrics.BY_NAME)


def test_dashboard_shows_jobs_by_state_for_each_queue(dev_mon):
    shown = {
        (m[1], m[3])
        for m in dashboard_metrics(dev_mon)
        if m[0] == metrics.JOBS_NAMESPACE and m[2] == metrics.DIMENSION_JOB_QUEUE
    }
    for arn in dev_mon.queue_arns():
        for state in metrics.JOB_STATES:
            assert (metrics.job_state_metric(state).name, arn) in shown


def test_dashboard_shows_spot_interruptions_per_queue_and_running_jobs(dev_mon):
    shown = {(m[1], m[3]) for m in dashboard_metrics(dev_mon) if m[0] == metrics.JOBS_NAMESPACE}
    for arn in dev_mon.queue_arns():
        assert (metrics.SPOT_INTERRUPTIONS.name, arn) in shown
    assert (metrics.RUNNING_JOBS.name, "dev") in shown


def test_dashboard_shows_fsx_throughput_and_free_capacity(dev_mon):
    shown = {
        m[1] for m in dashboard_metrics(dev_mon) if m[0] == "AWS/FSx" and m[2:4] == ["FileSystemId", FILE_SYSTEM_ID]
    }
    assert shown == {"DataReadBytes", "DataWriteBytes", "FreeDataStorageCapacity"}


def test_dashboard_has_no_fsx_widget_without_fsx(custom_mon):
    assert not [m for m in dashboard_metrics(custom_mon) if m[0] == "AWS/FSx"]


def test_dashboard_shows_both_bucket_sizes(dev_mon):
    shown = {tuple(m[1:6]) for m in dashboard_metrics(dev_mon) if m[0] == "AWS/S3"}
    assert shown == {
        ("BucketSizeBytes", "BucketName", bucket, "StorageType", "StandardStorage")
        for bucket in (DATA_BUCKET, ARTIFACTS_BUCKET)
    }


def test_dashboard_shows_estimated_charges_against_the_budget(dev_mon):
    (widget,) = [
        w
        for w in dev_mon.dashboard()["widgets"]
        if any(m[0] == "AWS/Billing" for m in w["properties"].get("metrics", []) if isinstance(m[0], str))
    ]
    (entry,) = widget["properties"]["metrics"]
    assert entry[1:4] == ["EstimatedCharges", "Currency", "USD"]
    assert entry[-1]["region"] == "us-east-1"
    (annotation,) = widget["properties"]["annotations"]["horizontal"]
    assert annotation["value"] == 500


def test_dashboard_links_queues_log_group_and_runbook(dev_mon, custom_mon):
    text = dashboard_text(dev_mon)
    for kind, arn in zip(QUEUE_KINDS, dev_mon.queue_arns(), strict=True):
        assert (
            f"[{kind}](https://console.aws.amazon.com/batch/home?region=${{AWS::Region}}#queues/detail/{arn})" in text
        )
    assert job_log_group_name("dev") in text
    assert "docs/runbook.md" in text
    assert "us-east-1" in text  # where the billing metric lives
    assert "[runbook](https://wiki.example.com/bert-batch/runbook)" in dashboard_text(custom_mon)


def test_dashboard_shows_the_state_of_every_alarm(dev_mon):
    (widget,) = [w for w in dev_mon.dashboard()["widgets"] if w["type"] == "alarm"]
    alarm_ids = {"${" + k + ".Arn}" for k in dev_mon.of_type("AWS::CloudWatch::Alarm")}
    assert set(widget["properties"]["alarms"]) == alarm_ids


def test_dashboard_graphs_mfu_of_the_profile_on_a_zero_to_one_axis(dev_mon):
    (widget,) = [w for w in dev_mon.dashboard()["widgets"]
                 if any(m[1:2] == [metrics.MODEL_FLOPS_UTILIZATION.name] for m in w["properties"].get("metrics", []))]
    mfu = [metrics.DEFAULT_NAMESPACE, metrics.MODEL_FLOPS_UTILIZATION.name, metrics.DIMENSION_PROFILE, "dev"]
    shown = [(m[:4], m[4].get("stat", "Average")) for m in widget["properties"]["metrics"]]
    assert shown == [(mfu, "Average"), (mfu, "Maximum")]
    assert widget["properties"]["yAxis"]["left"] == {"min": 0, "max": 1}
    assert widget["properties"]["title"].startswith("Model FLOPs utilization (MFU")
