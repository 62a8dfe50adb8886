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
from aws_cdk.assertions import Capture, Match, Matcher, Template

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
    EFA on over p4d.24xlarge (four network cards), a prebuilt ECR image, a NAT gateway, six
    interface endpoints (with the three the default leaves out), two teams, two reservations
    (RESERVATIONS)."""
    return synthesize(
        config_for(
            "dev",
            **{
                "data.fsx.enabled": "true",
                "training.efa": "true",
                "training.multinode_instance_types": '["p4d.24xlarge"]',
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
# Assertions go through aws_cdk.assertions (has_resource_properties with Match and Capture): a
# failure then shows the closest resource and where it differs. tests/test_test_style.py keeps
# raw "Properties" lookups out of the stack tests.
JOB_DEFINITION = "AWS::Batch::JobDefinition"
COMPUTE_ENVIRONMENT = "AWS::Batch::ComputeEnvironment"
LAUNCH_TEMPLATE = "AWS::EC2::LaunchTemplate"
MANAGED_POLICY = "AWS::IAM::ManagedPolicy"
# The job definitions' logical id prefixes.
SINGLE, MULTI_NODE, PREDICT = "JobDefinitionsSingle", "JobDefinitionsMultiNode", "JobDefinitionsPredict"


def resources(template: Template, rtype: str) -> dict[str, dict]:
    return template.find_resources(rtype)


def one(template: Template, rtype: str, logical_prefix: str) -> tuple[str, dict]:
    found = [(k, v) for k, v in resources(template, rtype).items() if k.startswith(logical_prefix)]
    assert len(found) == 1, f"expected one {rtype} named {logical_prefix}*, found {[k for k, _ in found]}"
    return found[0]


def one_has(template: Template, rtype: str, logical_prefix: str, properties: dict) -> None:
    """The one `rtype` named `logical_prefix`* has `properties` (a has_resource_properties pattern).

    Match cannot pick a resource by logical id, so the pattern runs on a template of that resource
    alone: a resource of the same type elsewhere in the stack cannot satisfy it instead.
    """
    logical_id, resource = one(template, rtype, logical_prefix)
    Template.from_json({"Resources": {logical_id: resource}}).has_resource_properties(rtype, properties)


def captured(template: Template, rtype: str, logical_prefix: str, where: Callable[[Capture], dict]) -> Capture:
    """The Capture at `where(capture)` in the one `rtype` named `logical_prefix`*, for checks that
    compute on the value (text_of, sets, parsing)."""
    value = Capture()
    one_has(template, rtype, logical_prefix, where(value))
    return value


def value_of(capture: Capture) -> Any:
    """What `capture` holds, whatever its JSON type (a value may be a string or an Fn::Join)."""
    for read in (Capture.as_string, Capture.as_object, Capture.as_array, Capture.as_number, Capture.as_boolean):
        try:
            return read(capture)
        except RuntimeError:  # jsii's form of "captured a value of another type"
            continue
    raise AssertionError("the capture holds no value")


def every(capture: Capture, read: Callable[[Capture], Any] = value_of) -> list:
    """Every value `capture` took, in match order, each read with `read` (Capture.as_number, ...)."""
    values = [read(capture)]
    while capture.next():
        values.append(read(capture))
    return values


def compute_resources_has(template: Template, logical_prefix: str, properties: dict) -> None:
    one_has(template, COMPUTE_ENVIRONMENT, logical_prefix, {"ComputeResources": properties})


def in_container(job_definition: str, properties: Any) -> dict:
    """A job definition pattern that puts `properties` on its container (a multi-node definition's
    one node range)."""
    if job_definition == MULTI_NODE:
        return {"NodeProperties": {"NodeRangeProperties": [{"Container": properties}]}}
    return {"ContainerProperties": properties}


def container_has(template: Template, job_definition: str, properties: dict) -> None:
    one_has(template, JOB_DEFINITION, job_definition, in_container(job_definition, properties))


def env_var(name: str, value: Any = None) -> Matcher:
    """An Environment pattern: the variable is set (to `value` when given)."""
    return Match.array_with([{"Name": name, "Value": Match.any_value() if value is None else value}])


def no_env_var(name: str) -> Matcher:
    return Match.not_(Match.array_with([Match.object_like({"Name": name})]))


def job_definition_value(template: Template, job_definition: str, name: str) -> Any:
    """Property `name` of a job definition, for checks that compute on it."""
    return value_of(captured(template, JOB_DEFINITION, job_definition, lambda value: {name: value}))


def container_value(template: Template, job_definition: str, name: str) -> Any:
    """Property `name` of a job definition's container, for checks that compute on it."""
    return value_of(captured(template, JOB_DEFINITION, job_definition,
                             lambda value: in_container(job_definition, {name: value})))


def environment_of(template: Template, job_definition: str) -> dict:
    """The container environment of a job definition as a dict."""
    return env_of(container_value(template, job_definition, "Environment"))


def policy_has(template: Template, policy_prefix: str, *statements: Any) -> None:
    """The managed policy named `policy_prefix`* has `statements` (patterns, in this order)."""
    one_has(template, MANAGED_POLICY, policy_prefix,
            {"PolicyDocument": {"Statement": Match.array_with(list(statements))}})


def statement_like(sid: str, **fields: Any) -> Matcher:
    return Match.object_like({"Sid": sid, **fields})


def statement_part(template: Template, policy_prefix: str, sid: str, part: str, **fields: Any) -> Any:
    """Field `part` of statement `sid` of a managed policy (that also has `fields`), for checks that
    compute on it (text_of, sorting)."""
    value = Capture()
    policy_has(template, policy_prefix, statement_like(sid, **{part: value}, **fields))
    return value_of(value)


def statements(template: Template, policy_prefix: str) -> list[dict]:
    """Every statement of a managed policy, for checks that compute over all of them."""
    return captured(template, MANAGED_POLICY, policy_prefix,
                    lambda found: {"PolicyDocument": {"Statement": found}}).as_array()


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
    return text_of(captured(template, LAUNCH_TEMPLATE, logical_prefix,
                            lambda data: {"LaunchTemplateData": {"UserData": data}}).as_object())


def env_of(environment: list[dict]) -> dict:
    return {e["Name"]: e["Value"] for e in environment}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]
