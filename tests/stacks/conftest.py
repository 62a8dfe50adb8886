"""Synthesize each profile once per session; tests read templates from it.

jsii start-up and synthesis cost seconds per app, so every stack test shares these apps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from tests.conftest import REPO
from stacks.config import PlatformConfig, load_config
from stacks.platform import Platform, add_compliance_checks, build_platform

CDK_CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]


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


@pytest.fixture(scope="session")
def dev() -> Synthesized:
    return synthesize(config_for("dev"))


@pytest.fixture(scope="session")
def prod() -> Synthesized:
    return synthesize(config_for("prod"))


@pytest.fixture(scope="session")
def dev_variant() -> Synthesized:
    """One extra synth that every stack's tests share for the non-default branches: FSx off,
    EFA on, a prebuilt ECR image, a NAT gateway, three interface endpoints."""
    return synthesize(config_for("dev", **{
        "data.fsx.enabled": "false",
        "training.efa": "true",
        "training.image_uri": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/bert-train:1.4",
        "network.nat_gateways": "1",
        "network.interface_endpoints": '["ecr.api", "ecr.dkr", "logs"]',
    }))


@pytest.fixture(scope="session")
def dev_network(dev: Synthesized) -> Template:
    return dev.template(dev.platform.network)


@pytest.fixture(scope="session")
def dev_data(dev: Synthesized) -> Template:
    return dev.template(dev.platform.data)


@pytest.fixture(scope="session")
def prod_data(prod: Synthesized) -> Template:
    return prod.template(prod.platform.data)


@pytest.fixture(scope="session")
def prod_network(prod: Synthesized) -> Template:
    return prod.template(prod.platform.network)


@pytest.fixture(scope="session")
def dev_training(dev: Synthesized) -> Template:
    return dev.template(dev.platform.training)


@pytest.fixture(scope="session")
def prod_training(prod: Synthesized) -> Template:
    return prod.template(prod.platform.training)


@pytest.fixture(scope="session")
def dev_monitoring(dev: Synthesized) -> Template:
    return dev.template(dev.platform.monitoring)


@pytest.fixture(scope="session")
def prod_monitoring(prod: Synthesized) -> Template:
    return prod.template(prod.platform.monitoring)
