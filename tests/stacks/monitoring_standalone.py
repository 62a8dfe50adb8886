"""Build the Monitoring stack on its own, with stand-ins for what the other stacks provide.

The stand-ins are imports (no resources): job queues by ARN, the fallback function and the
job log group by name, buckets by name, FSx by file system id. Synth runs the same cdk-nag
packs as the real app.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_batch as batch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Capture, Match, Template

from bertbatch_contract.naming import Naming
from stacks.config import PlatformConfig
from stacks.monitoring_stack import QUEUE_KINDS, MonitoringStack
from stacks.platform import add_compliance_checks
from tests.stacks.conftest import CDK_CONTEXT

ACCOUNT = "123456789012"
REGION = "us-east-1"
FILE_SYSTEM_ID = "fs-0123456789abcdef0"
FALLBACK_FUNCTION = "bert-batch-fallback"
DATA_BUCKET = "bert-batch-data-standin"
ARTIFACTS_BUCKET = "bert-batch-artifacts-standin"


def queue_arn(kind: str, profile: str) -> str:
    return f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{Naming(profile).resource(kind)}"


def job_log_group_name(profile: str) -> str:
    return f"/bert-batch/{profile}/jobs"


@dataclass
class Standalone:
    config: PlatformConfig
    stack: MonitoringStack
    template: Template

    @property
    def resources(self) -> dict[str, Any]:
        return self.template.to_json()["Resources"]

    def of_type(self, cfn_type: str) -> dict[str, dict]:
        return {k: r for k, r in self.resources.items() if r["Type"] == cfn_type}

    def queue_arns(self) -> list[str]:
        return [queue_arn(kind, self.config.profile) for kind in QUEUE_KINDS]

    def dashboard(self) -> dict:
        """The dashboard body as JSON, tokens replaced by `${Ref}` / `${Logical.Attr}`."""
        return dashboard_body(self.template)


def dashboard_body(template: Template) -> dict:
    """The body of the template's one dashboard (an Fn::Join of JSON text and references) as JSON."""
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    body = Capture()
    template.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardBody": body})
    return json.loads(resolve(body.as_object()))


def resolve(value: Any) -> str:
    """Flatten Fn::Join / Ref / Fn::GetAtt / Fn::GetStackOutput into a string with placeholders."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "Fn::Join" in value:
            sep, parts = value["Fn::Join"]
            return sep.join(resolve(p) for p in parts)
        if "Ref" in value:
            return "${" + value["Ref"] + "}"
        if "Fn::GetAtt" in value:
            return "${" + ".".join(value["Fn::GetAtt"]) + "}"
        if "Fn::GetStackOutput" in value:
            return "${Output:" + resolve(value["Fn::GetStackOutput"]["OutputName"]) + "}"
        if len(value) == 1:  # any other intrinsic (Fn::ImportValue, ...)
            (name,) = value
            return "${" + name + "}"
    return json.dumps(value)


def build(config: PlatformConfig, *, fallback: bool = True, nag: bool = True) -> Standalone:
    app = cdk.App(context={k: v for k, v in CDK_CONTEXT.items() if k.startswith("@aws-cdk")})
    deps = cdk.Stack(app, "StandIns")
    cdk.CfnWaitConditionHandle(deps, "Placeholder")  # a stack needs one resource
    queues = {
        kind: batch.JobQueue.from_job_queue_arn(deps, f"Queue-{kind}", queue_arn(kind, config.profile))
        for kind in QUEUE_KINDS
    }
    fallback_function = (
        lambda_.Function.from_function_attributes(
            deps,
            "Fallback",
            function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FALLBACK_FUNCTION}",
            same_environment=True,
        )
        if fallback
        else None
    )
    lustre = (
        SimpleNamespace(file_system=SimpleNamespace(file_system_id=FILE_SYSTEM_ID)) if config.data.fsx.enabled else None
    )
    stack = MonitoringStack(
        app,
        f"Monitoring-{config.profile}",
        config=config,
        job_queues=queues,
        job_log_group=logs.LogGroup.from_log_group_name(deps, "JobLogs", job_log_group_name(config.profile)),
        fallback_function=fallback_function,
        lustre=lustre,  # only .file_system.file_system_id is read
        data_bucket=s3.Bucket.from_bucket_name(deps, "Data", DATA_BUCKET),
        artifacts_bucket=s3.Bucket.from_bucket_name(deps, "Artifacts", ARTIFACTS_BUCKET),
    )
    if nag:
        add_compliance_checks(app, config)
    app.synth()
    return Standalone(config=config, stack=stack, template=Template.from_stack(stack))


# --- helpers on a standalone stack ------------------------------------------------------------
def topic_ref(mon: Standalone) -> dict:
    """The alerts topic (alarms, job notifications)."""
    (logical_id,) = [k for k in mon.of_type("AWS::SNS::Topic") if k.startswith("AlertsTopic")]
    return {"Ref": logical_id}


def budget_topic_ref(mon: Standalone) -> dict:
    """The budget topic (AWS Budgets notifications only)."""
    (logical_id,) = [k for k in mon.of_type("AWS::SNS::Topic") if k.startswith("AlertsBudgetTopic")]
    return {"Ref": logical_id}


# The rule that sends finished jobs to the alerts topic: its pattern filters on status.
NOTIFICATION_RULE = {"EventPattern": {"detail": {"status": Match.any_value()}}}


def notification_rule_id(mon: Standalone) -> str:
    (logical_id,) = mon.template.find_resources("AWS::Events::Rule", {"Properties": NOTIFICATION_RULE})
    return logical_id


def alarm_has(mon: Standalone, name: str, properties: dict) -> None:
    """The one alarm named `name` (as Naming names it) has `properties`."""
    named = {"AlarmName": Naming(mon.config.profile).resource(name)}
    mon.template.resource_properties_count_is("AWS::CloudWatch::Alarm", named, 1)
    mon.template.has_resource_properties("AWS::CloudWatch::Alarm", {**named, **properties})


def alarm_metrics(mon: Standalone, name: str) -> list[dict]:
    """The Metrics of a metric-math alarm: its inputs and its expression."""
    found = Capture()
    alarm_has(mon, name, {"Metrics": found})
    return found.as_array()


def metric_stats(alarm_metrics: list[dict]) -> dict[str, dict]:
    """id -> MetricStat of a metric-math alarm's inputs."""
    return {m["Id"]: m["MetricStat"] for m in alarm_metrics if "MetricStat" in m}


def expression(alarm_metrics: list[dict]) -> str:
    (expr,) = [m["Expression"] for m in alarm_metrics if m.get("ReturnData", True) and "Expression" in m]
    return expr


def dashboard_metrics(mon: Standalone) -> list[list]:
    """Every metric array of every graph widget ([namespace, name, dim, value, ..., {opts}])."""
    out = []
    for widget in mon.dashboard()["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            if isinstance(entry[0], str):
                out.append(entry)
    return out


def dashboard_text(mon: Standalone) -> str:
    return "\n".join(w["properties"]["markdown"] for w in mon.dashboard()["widgets"] if w["type"] == "text")


def function_with_handler(mon: Standalone, handler: str) -> str:
    """The logical id of the one Lambda function running `handler`."""
    found = mon.template.find_resources("AWS::Lambda::Function", {"Properties": {"Handler": handler}})
    assert len(found) == 1, f"expected one function with handler {handler}, found {sorted(found)}"
    (logical_id,) = found
    return logical_id
