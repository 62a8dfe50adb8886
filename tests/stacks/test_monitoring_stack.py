"""The Monitoring stack inside the whole platform (session fixtures: real Training and Data stacks)."""

from __future__ import annotations

import json

from bertbatch_contract import metrics
from platform_constructs.guardrail import GUARDRAIL_HANDLER
from tests.stacks.monitoring_standalone import resolve as resolve_str


def _platform_dashboard_metrics(template) -> list[list]:
    (dashboard,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.loads(resolve_str(dashboard["Properties"]["DashboardBody"]))
    return [m for w in body["widgets"] for m in w["properties"].get("metrics", []) if isinstance(m[0], str)]


def test_platform_dashboard_shows_every_contract_metric(dev_monitoring):
    shown = {m[1] for m in _platform_dashboard_metrics(dev_monitoring) if m[0] == metrics.DEFAULT_NAMESPACE}
    assert {m.name for m in metrics.ALL_METRICS} <= shown


def test_platform_job_rules_watch_the_training_queues(dev, dev_monitoring):
    rules = dev_monitoring.find_resources(
        "AWS::Events::Rule", {"Properties": {"EventPattern": {"source": ["aws.batch"]}}}
    )
    assert len(rules) == 2
    for rule in rules.values():
        queues = rule["Properties"]["EventPattern"]["detail"]["jobQueue"]
        # The GPU queues and the data preparation queue: a failed prepare child alarms too.
        assert len(queues) == len(dev.platform.training.job_queues) == 4


def test_platform_alarms_cover_failures_spot_stalls_fsx_and_the_fallback_function(dev_monitoring, prod_monitoring):
    for template, profile in ((dev_monitoring, "dev"), (prod_monitoring, "prod")):
        names = {a["Properties"]["AlarmName"] for a in template.find_resources("AWS::CloudWatch::Alarm").values()}
        for alarm_name in (
            "JobsFailed",
            "SpotInterruptions",
            "StalledTraining",
            *(("FsxFreeCapacityLow",) if profile == "prod" else ()),  # dev: no FSx by default
            "FallbackErrors",
            "JobGaugeErrors",
        ):
            assert f"bert-batch-{profile}-{alarm_name}" in names


def test_platform_guardrail_only_in_dev(dev_monitoring, prod_monitoring):
    def handlers(template):
        return {r["Properties"]["Handler"] for r in template.find_resources("AWS::Lambda::Function").values()}

    assert GUARDRAIL_HANDLER in handlers(dev_monitoring)
    assert GUARDRAIL_HANDLER not in handlers(prod_monitoring)
