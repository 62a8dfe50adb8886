"""The Monitoring stack inside the whole platform (session fixtures: real Training and Data stacks)."""

from __future__ import annotations

from aws_cdk.assertions import Match

from bertbatch_contract import metrics
from platform_constructs.guardrail import GUARDRAIL_HANDLER
from tests.stacks.monitoring_standalone import dashboard_body


def _platform_dashboard_metrics(template) -> list[list]:
    body = dashboard_body(template)
    return [m for w in body["widgets"] for m in w["properties"].get("metrics", []) if isinstance(m[0], str)]


def test_platform_dashboard_shows_every_contract_metric(dev_monitoring):
    shown = {m[1] for m in _platform_dashboard_metrics(dev_monitoring) if m[0] == metrics.DEFAULT_NAMESPACE}
    assert {m.name for m in metrics.ALL_METRICS} <= shown


def test_platform_job_rules_watch_the_training_queues(dev, dev_monitoring):
    batch_events = {"EventPattern": {"source": ["aws.batch"]}}
    dev_monitoring.resource_properties_count_is("AWS::Events::Rule", batch_events, 2)
    # The GPU queues and the data preparation queue: a failed prepare child alarms too.
    assert len(dev.platform.training.job_queues) == 4
    dev_monitoring.resource_properties_count_is("AWS::Events::Rule", {
        "EventPattern": {"source": ["aws.batch"], "detail": {"jobQueue": [Match.any_value()] * 4}}}, 2)


def test_platform_alarms_cover_failures_spot_stalls_fsx_and_the_fallback_function(dev_monitoring, prod_monitoring):
    for template, profile in ((dev_monitoring, "dev"), (prod_monitoring, "prod")):
        for alarm_name in (
            "JobsFailed",
            "SpotInterruptions",
            "StalledTraining",
            *(("FsxFreeCapacityLow",) if profile == "prod" else ()),  # dev: no FSx by default
            "FallbackErrors",
            "JobGaugeErrors",
        ):
            template.has_resource_properties(
                "AWS::CloudWatch::Alarm", {"AlarmName": f"bert-batch-{profile}-{alarm_name}"})


def test_platform_guardrail_only_in_dev(dev_monitoring, prod_monitoring):
    dev_monitoring.has_resource_properties("AWS::Lambda::Function", {"Handler": GUARDRAIL_HANDLER})
    prod_monitoring.resource_properties_count_is("AWS::Lambda::Function", {"Handler": GUARDRAIL_HANDLER}, 0)
