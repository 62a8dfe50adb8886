"""Synthesize each configuration once per session; tests read templates from it.

jsii start-up and synthesis cost seconds per app, so every stack test shares these apps: the
dev and prod profiles, one dev variant for the non-default branches, one dev profile with
experiment tracking and the batch-scoring keys set (`dev_tracked`), and the Monitoring stack
built alone three times (tests/stacks/monitoring_standalone.py). Also the template helpers the
construct tests share.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from stacks.config import PlatformConfig, load_config
from stacks.platform import Platform, add_compliance_checks, build_platform
from tests.conftest import REPO

CDK_CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]
PROFILES = ("dev", "prod")
STACKS = ("network", "data", "training", "monitoring")
PREBUILT_IMAGE = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/bert-train:1.4"
EMAILS = ["ml-oncall@example.com", "platform@example.com"]
TEAM_EMAILS = ["nlp-lead@example.com", "nlp-finance@example.com"]


def config_for(profile: str, **overrides: str) -> PlatformConfig:
    return load_config({**CDK_CONTEXT, "profile": profile}, overrides=overrides)


@dataclass
class Synthesized:
    config: PlatformConfig
    app: cdk.App
    platform: Platform
    assembly: cdk.cx_api.CloudAssembly

    def template(self, stack: cdk.Stack) -> Template:
        return Template.from_stack(stack)


def synthesize(config: PlatformConfig, *, nag: bool = True) -> Synthesized:
    """Build and synth the whole app for `config`, exactly as app.py does.

    With nag=True any unacknowledged cdk-nag finding raises here.
    """
    app = cdk.App(context={k: v for k, v in CDK_CONTEXT.items() if k.startswith("@aws-cdk")})
    platform = build_platform(app, config)
    if nag:
        add_compliance_checks(app, config)
    assembly = app.synth()
    return Synthesized(config=config, app=app, platform=platform, assembly=assembly)


# --- the whole platform -------------------------------------------------------------------
@pytest.fixture(scope="session")
def dev() -> Synthesized:
    return synthesize(config_for("dev"))


@pytest.fixture(scope="session")
def prod() -> Synthesized:
    return synthesize(config_for("prod"))


# A Capacity Block by id in the second AZ, and an ODCR group (dev_variant).
CAPACITY_BLOCK_ID = "cr-0123456789abcdef0"
ODCR_GROUP_ARN = "arn:aws:resource-groups:us-east-1:111122223333:group/gpu-odcrs"
RESERVATIONS = [
    {"name": "p5", "kind": "capacity-block", "reservation_id": CAPACITY_BLOCK_ID, "instance_type": "p5.48xlarge",
     "max_vcpus": 192, "subnet_index": 1},
    {"name": "g6-odcr", "kind": "odcr", "resource_group_arn": ODCR_GROUP_ARN, "instance_type": "g6.12xlarge",
     "max_vcpus": 96},
]


@pytest.fixture(scope="session")
def dev_variant() -> Synthesized:
    """One extra synth that every stack's tests share for the non-default branches: FSx on,
    EFA on, a prebuilt ECR image, a NAT gateway, six interface endpoints (with the three the
    default leaves out), two teams, two reservations (RESERVATIONS)."""
    return synthesize(
        config_for(
            "dev",
            **{
                "data.fsx.enabled": "true",
                "training.efa": "true",
                "training.image_uri": PREBUILT_IMAGE,
                "network.nat_gateways": "1",
                "network.interface_endpoints": '["ecr.api", "ecr.dkr", "logs", "ecs-telemetry", "sts", "monitoring"]',
                "teams.weights": '{"nlp": 4, "vision": 1}',
                "teams.default": "vision",
                "teams.compute_reservation_percent": "25",
                "teams.share_decay_seconds": "3600",
                "training.reservations": json.dumps(RESERVATIONS),
            },
        )
    )


SAGEMAKER_MLFLOW_ARN = "arn:aws:sagemaker:eu-west-1:111122223333:mlflow-tracking-server/team-mlflow"


@pytest.fixture(scope="session")
def dev_tracked() -> Synthesized:
    """dev with a SageMaker managed MLflow tracking server, predictions expiring after 90 days and
    a 90-minute prediction timeout."""
    return synthesize(
        config_for(
            "dev",
            **{
                "tracking.mlflow_tracking_uri": SAGEMAKER_MLFLOW_ARN,
                "data.prediction_expiry_days": "90",
                "training.predict_timeout_minutes": "90",
            },
        )
    )


def _stack_template(synth_fixture: str, stack: str) -> Callable[..., Template]:
    """A session fixture: the template of one stack of a session synth."""

    @pytest.fixture(scope="session")
    def template(request: pytest.FixtureRequest) -> Template:
        synth: Synthesized = request.getfixturevalue(synth_fixture)
        return synth.template(getattr(synth.platform, stack))

    return template


# dev_network, dev_data, dev_training, dev_monitoring, prod_..., and variant_network / _data / _training.
for _profile in PROFILES:
    for _stack in STACKS:
        globals()[f"{_profile}_{_stack}"] = _stack_template(_profile, _stack)
variant_network = _stack_template("dev_variant", "network")
variant_data = _stack_template("dev_variant", "data")
variant_training = _stack_template("dev_variant", "training")
tracked_data = _stack_template("dev_tracked", "data")
tracked_training = _stack_template("dev_tracked", "training")


# --- the Monitoring stack alone, with stand-ins for the other stacks ------------------------
@pytest.fixture(scope="session")
def dev_mon() -> Any:
    from tests.stacks.monitoring_standalone import build

    # With FSx, as dev had before FSx became off by default: its alarm and widgets are checked here.
    return build(config_for("dev", **{"data.fsx.enabled": "true"}))


@pytest.fixture(scope="session")
def prod_mon() -> Any:
    from tests.stacks.monitoring_standalone import build

    return build(config_for("prod"))


@pytest.fixture(scope="session")
def custom_mon() -> Any:
    """Emails, no project tag filter, other thresholds, no FSx, no fallback function, two teams
    of which one has a budget."""
    from tests.stacks.monitoring_standalone import build

    return build(
        config_for(
            "dev",
            alert_emails=json.dumps(EMAILS),
            **{
                "budget.filter_on_project_tag": "false",
                "teams.weights": '{"nlp": 4, "vision": 1}',
                "teams.default": "vision",
                "teams.budgets_usd": '{"nlp": 300}',
                "teams.alert_emails": json.dumps({"nlp": TEAM_EMAILS}),
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


# --- template helpers -----------------------------------------------------------------------
def resources(template: Template, rtype: str) -> dict[str, dict]:
    return template.find_resources(rtype)


def one(template: Template, rtype: str, logical_prefix: str) -> tuple[str, dict]:
    found = [(k, v) for k, v in resources(template, rtype).items() if k.startswith(logical_prefix)]
    assert len(found) == 1, f"expected one {rtype} named {logical_prefix}*, found {[k for k, _ in found]}"
    return found[0]


def props(template: Template, rtype: str, logical_prefix: str) -> dict:
    return one(template, rtype, logical_prefix)[1]["Properties"]


def environment(template: Template, logical_prefix: str) -> dict:
    return props(template, "AWS::Batch::ComputeEnvironment", logical_prefix)


def text_of(value: Any) -> str:
    """Literal text of a CloudFormation value; intrinsics other than Join/Base64 become `<ref>`."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(text_of(v) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Fn::Join":
            return arg[0].join(text_of(v) for v in arg[1])
        if fn == "Fn::Base64":
            return text_of(arg)
    return "<ref>"


def user_data(template: Template, logical_prefix: str) -> str:
    return text_of(props(template, "AWS::EC2::LaunchTemplate", logical_prefix)["LaunchTemplateData"]["UserData"])


def job_definition(template: Template, logical_prefix: str) -> dict:
    return props(template, "AWS::Batch::JobDefinition", logical_prefix)


def single_container(template: Template) -> dict:
    return job_definition(template, "JobDefinitionsSingle")["ContainerProperties"]


def predict_container(template: Template) -> dict:
    return job_definition(template, "JobDefinitionsPredict")["ContainerProperties"]


def multi_node_container(template: Template) -> dict:
    return job_definition(template, "JobDefinitionsMultiNode")["NodeProperties"]["NodeRangeProperties"][0]["Container"]


def env_of(container: dict) -> dict:
    return {e["Name"]: e["Value"] for e in container["Environment"]}


def statements(template: Template, logical_prefix: str) -> list[dict]:
    return props(template, "AWS::IAM::ManagedPolicy", logical_prefix)["PolicyDocument"]["Statement"]


def statement(template: Template, logical_prefix: str, sid: str) -> dict:
    found = [s for s in statements(template, logical_prefix) if s.get("Sid") == sid]
    assert len(found) == 1, f"no statement {sid} in {logical_prefix}"
    return found[0]


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]
