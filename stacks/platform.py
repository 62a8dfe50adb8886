"""Build every stack of the platform for one configuration.

`app.py` calls this; the tests call it too, so what they check is what `cdk synth` produces.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks

from platform_constructs.checkov import skip_cdk_provider_functions
from stacks.config import PlatformConfig
from stacks.data_stack import DataStack
from stacks.monitoring_stack import MonitoringStack
from stacks.network_stack import NetworkStack
from stacks.training_stack import TrainingStack

COMPLIANCE_PACK_CLASSES = {
    "nist-800-53-r5": NIST80053R5Checks,
    "hipaa": HIPAASecurityChecks,
}


@dataclass
class Platform:
    network: NetworkStack
    data: DataStack
    training: TrainingStack
    monitoring: MonitoringStack

    @property
    def stacks(self) -> list[cdk.Stack]:
        return [self.network, self.data, self.training, self.monitoring]


def stack_environment(config: PlatformConfig) -> cdk.Environment | None:
    """Concrete only where config says so. An env-agnostic stack never asks AWS anything at
    synth; a concrete account+region gets its AZs from config (see `offline_az_context`)."""
    if not (config.account or config.region):
        return None
    return cdk.Environment(account=config.account, region=config.region)


def offline_az_context(config: PlatformConfig) -> dict[str, list[str]]:
    """Context that answers CDK's availability-zone lookup from config, so a stack with a
    concrete account and region still synthesizes without credentials."""
    if config.account and config.region and config.availability_zones:
        return {f"availability-zones:account={config.account}:region={config.region}": config.availability_zones}
    return {}


def build_platform(app: cdk.App, config: PlatformConfig) -> Platform:
    env = stack_environment(config)
    prefix = f"BertBatch-{config.profile}"
    common = dict(env=env, termination_protection=config.termination_protection)

    network = NetworkStack(
        app, f"{prefix}-Network", config=config,
        description=f"{config.project_name} ({config.profile}): VPC, endpoints, flow logs, security groups",
        **common,
    )
    data = DataStack(
        app, f"{prefix}-Data", config=config,
        vpc=network.vpc,
        private_subnets=network.private_subnets,
        fsx_security_group=network.fsx_security_group,
        description=f"{config.project_name} ({config.profile}): KMS key, S3 buckets, FSx for Lustre (stateful)",
        **common,
    )
    training = TrainingStack(
        app, f"{prefix}-Training", config=config,
        vpc=network.vpc,
        compute_subnets=network.compute_subnets,
        private_subnets=network.private_subnets,
        compute_security_group=network.compute_security_group,
        key=data.key,
        data_bucket=data.data_bucket,
        artifacts_bucket=data.artifacts_bucket,
        lustre=data.lustre,
        description=f"{config.project_name} ({config.profile}): Batch GPU compute, queues, job definitions, fallback",
        **common,
    )
    monitoring = MonitoringStack(
        app, f"{prefix}-Monitoring", config=config,
        job_queues=training.job_queues,
        job_log_group=training.job_log_group,
        fallback_function=training.fallback_function,
        lustre=data.lustre,
        data_bucket=data.data_bucket,
        artifacts_bucket=data.artifacts_bucket,
        description=f"{config.project_name} ({config.profile}): budgets, dashboard, alarms, notifications",
        **common,
    )
    for key, value in config.tags.items():
        cdk.Tags.of(app).add(key, value)
    built = Platform(network=network, data=data, training=training, monitoring=monitoring)
    for stack in built.stacks:
        skip_cdk_provider_functions(stack)
    return built


def add_compliance_checks(app: cdk.App, config: PlatformConfig) -> None:
    """AwsSolutions always; NIST 800-53 R5 and HIPAA when the config asks. Findings fail synth."""
    plugins = [AwsSolutionsChecks(app)]
    plugins += [COMPLIANCE_PACK_CLASSES[name](app) for name in config.compliance_packs]
    cdk.Validations.of(app).add_plugins(*plugins)
