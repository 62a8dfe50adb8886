"""The configuration model: profiles, overrides, and one-line errors for bad values."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stacks.config import ConfigError, load_config
from tests.conftest import REPO
from tests.stacks.conftest import CDK_CONTEXT, config_for


def test_dev_profile_defaults():
    config = config_for("dev")
    assert config.profile == "dev"
    assert config.removal_policy == "destroy"
    assert config.data.fsx.deployment_type == "SCRATCH_2"
    assert config.data.fsx.storage_capacity_gib == 1200
    assert config.budget.actual_thresholds_percent == [50.0, 80.0, 100.0]
    assert config.budget.cost_guardrail is True
    assert config.tags == {"Project": "bert-batch", "Profile": "dev", "CostCenter": "ml-platform"}


def test_prod_profile_retains_and_uses_persistent_fsx():
    config = config_for("prod")
    assert config.retain and config.termination_protection
    assert config.data.fsx.deployment_type == "PERSISTENT_2"
    assert config.budget.cost_guardrail is False
    assert config.availability_zones == ["us-east-1a", "us-east-1b", "us-east-1c"]


def test_profile_defaults_to_dev():
    context = {k: v for k, v in CDK_CONTEXT.items() if k != "profile"}
    assert load_config(context).profile == "dev"


def test_context_overrides_are_parsed_as_json_values():
    config = load_config({**CDK_CONTEXT, "budget.monthly_limit_usd": "123.5", "data.fsx.enabled": "false"})
    assert config.budget.monthly_limit_usd == 123.5
    assert config.data.fsx.enabled is False


def test_string_override_that_looks_like_a_number_stays_a_string():
    config = load_config(
        {
            **CDK_CONTEXT,
            "account": "123456789012",
            "region": "eu-west-1",
            "network.availability_zones": '["eu-west-1a", "eu-west-1b"]',
        }
    )
    assert config.account == "123456789012"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"budget.monthly_limit_usd": "-5"},
            "config error: budget.monthly_limit_usd = -5: input should be greater than 0",
        ),
        (
            {"log_retention_days": "8"},
            "config error: log_retention_days = 8: must be one of the CloudWatch Logs retention periods",
        ),
        (
            {"budget.actual_thresholds_percent": "[80, 50]"},
            "config error: budget.actual_thresholds_percent = [80, 50]: must be sorted ascending with no duplicates",
        ),
        (
            {"budget.actual_thresholds_percent": "[50, 50]"},
            "config error: budget.actual_thresholds_percent = [50, 50]: must be sorted ascending",
        ),
        (
            {"budget.actual_thresholds_percent": "[50, 1200]"},
            "config error: budget.actual_thresholds_percent = [50, 1200]: 1200 is outside 0 < t <= 1000",
        ),
        (
            {"budget.forecasted_threshold_percent": "0"},
            "config error: budget.forecasted_threshold_percent = 0: input should be greater than 0",
        ),
        (
            {"training.gpu_instance_types": '["g5 xlarge"]'},
            "config error: training.gpu_instance_types = [\"g5 xlarge\"]: 'g5 xlarge' is not an EC2 instance type",
        ),
        (  # a trailing newline is not part of a valid name (fullmatch, not match with $)
            {"training.gpu_instance_types": '["g5.xlarge\\n"]'},
            "config error: training.gpu_instance_types = [\"g5.xlarge\\n\"]: "
            "'g5.xlarge\\n' is not an EC2 instance type",
        ),
        (
            {"training.gpu_instance_types": "[]"},
            "config error: training.gpu_instance_types = []: list should have at least 1 item",
        ),
        (  # the nodes of one job must be alike
            {"training.multinode_instance_types": '["g5.12xlarge", "p4d.24xlarge"]'},
            "config error: training.multinode_instance_types = [\"g5.12xlarge\", \"p4d.24xlarge\"]: "
            "mixes instance families g5, p4d: the nodes of one job must be alike, use one family",
        ),
        (
            {"training.efa": "true", "training.multinode_instance_types": '["g5.2xlarge"]'},
            "config error: training.multinode_instance_types = [\"g5.2xlarge\"]: g5.2xlarge has no EFA "
            "(training.efa is true)",
        ),
        (  # one launch template for the environment: one interface count
            {"training.efa": "true", "training.multinode_instance_types": '["g6e.24xlarge", "g6e.48xlarge"]'},
            "config error: training.multinode_instance_types = [\"g6e.24xlarge\", \"g6e.48xlarge\"]: "
            "g6e.24xlarge has 2 EFA interfaces and g6e.48xlarge 4: with training.efa, use types with the same count",
        ),
        (
            {"training.retry_attempts": "11"},
            "config error: training.retry_attempts = 11: input should be less than or equal to 10",
        ),
        (
            {"training.vcpus_per_job": "100"},
            "config error: training.vcpus_per_job = 100: must fit in spot_max_vcpus and on_demand_max_vcpus",
        ),
        (
            {"training.multinode_vcpus_per_node": "64"},
            "config error: training.multinode_vcpus_per_node = 64: times multinode_nodes (2) must fit in "
            "multinode_max_vcpus (96)",
        ),
        (
            {"training.multinode_gpus_per_node": "9"},
            "config error: training.multinode_gpus_per_node = 9: input should be less than or equal to 8",
        ),
        (
            {"training.multinode_subnet_index": "2"},
            "config error: training.multinode_subnet_index = 2: must be < the number of AZs (2)",
        ),
        (
            {"network.interface_endpoint_az_count": "3"},
            "config error: network.interface_endpoint_az_count = 3: must be <= the number of AZs (2)",
        ),
        (
            {"network.az_count": "3"},
            "config error: network.az_count = 3: more than 2 AZs needs network.availability_zones",
        ),
        (
            {"network.availability_zones": '["us-east-1a", "nowhere"]'},
            'config error: network.availability_zones = ["us-east-1a", "nowhere"]: '
            "'nowhere' is not an availability zone name",
        ),
        (
            {"region": "eu-west-1", "network.availability_zones": '["us-east-1a"]'},
            'config error: network.availability_zones = ["us-east-1a"]: must all be in region eu-west-1',
        ),
        ({"network.vpc_cidr": "10.0.0.0/8"}, "config error: network.vpc_cidr = 10.0.0.0/8: prefix must be /16 to /24"),
        (
            {"network.interface_endpoints": '["ecr.api", "s4"]'},
            'config error: network.interface_endpoints = ["ecr.api", "s4"]: \'s4\' is not one of',
        ),
        (
            {
                "network.existing_vpc": (
                    '{"vpc_id": "vpc-0123456789abcdef0", "availability_zones": ["us-east-1a"], '
                    '"private_subnet_ids": ["subnet-01234567", "subnet-89abcdef"]}'
                )
            },
            "config error: network.existing_vpc = ",
        ),
        (
            {"data.fsx.storage_capacity_gib": "1000"},
            "config error: data.fsx.storage_capacity_gib = 1000: must be 1200 or a multiple of 2400 (GiB)",
        ),
        (
            {"data.fsx.deployment_type": "SCRATCH_1"},
            "config error: data.fsx.deployment_type = SCRATCH_1: input should be 'SCRATCH_2' or 'PERSISTENT_2'",
        ),
        (
            {"data.checkpoint_expiry_days": "0"},
            "config error: data.checkpoint_expiry_days = 0: input should be greater than or equal to 1",
        ),
        (
            {"alert_emails": '["ops@example.com", "not-an-email"]'},
            'config error: alert_emails = ["ops@example.com", "not-an-email"]: '
            "'not-an-email' is not an email address",
        ),
        (
            {"compliance_packs": '["pci"]'},
            "config error: compliance_packs = [\"pci\"]: 'pci' is not one of nist-800-53-r5, hipaa",
        ),
        ({"account": "12345"}, "config error: account = 12345: string should match pattern"),
        ({"removal_policy": "keep"}, "config error: removal_policy = keep: input should be 'destroy' or 'retain'"),
        (
            {"budget.cost_guardrail": "maybe"},
            "config error: budget.cost_guardrail = maybe: input should be a valid boolean",
        ),
        (
            {"monitoring.runbook_url": "http://wiki/runbook"},
            "config error: monitoring.runbook_url = http://wiki/runbook: string should match pattern",
        ),
        (
            {"monitoring.stalled_minutes": "2"},
            "config error: monitoring.stalled_minutes = 2: input should be greater than or equal to 5",
        ),
        ({"network.nat_gatways": "1"}, "config error: network.nat_gatways: unknown key"),
        ({"project_name": "Bert_Batch"}, "config error: project_name = Bert_Batch: string should match pattern"),
    ],
)
def test_invalid_values_fail_with_one_line_naming_key_and_value(overrides, message):
    with pytest.raises(ConfigError) as exc_info:
        load_config({**CDK_CONTEXT, **overrides})
    text = str(exc_info.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(
        ConfigError, match=r"^config error: profile = qa: no such profile in cdk.json \(known: dev, prod\)$"
    ):
        load_config({**CDK_CONTEXT, "profile": "qa"})


def test_runbook_url_may_be_an_https_link():
    config = config_for("dev", **{"monitoring.runbook_url": "https://wiki.example.com/bert-batch/runbook"})
    assert config.monitoring.runbook_url == "https://wiki.example.com/bert-batch/runbook"
    assert config_for("dev").monitoring.runbook_url == ""


def test_override_into_a_scalar_is_rejected():
    with pytest.raises(ConfigError, match="budget.monthly_limit_usd.x: monthly_limit_usd is not a section"):
        load_config({**CDK_CONTEXT, "budget.monthly_limit_usd.x": "1"})


def test_app_prints_one_line_and_exits_nonzero_before_building_anything(tmp_path):
    """app.py as the CDK CLI runs it: context arrives in CDK_CONTEXT_JSON."""
    context = {**CDK_CONTEXT, "budget.monthly_limit_usd": "-5"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(CDK_CONTEXT_JSON=json.dumps(context), CDK_OUTDIR=str(tmp_path / "out"))
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == "config error: budget.monthly_limit_usd = -5: input should be greater than 0"
    assert not list((tmp_path / "out").glob("*.template.json"))


# Inputs that used to pass silently or reach jsii and crash with a long traceback.
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"alert_email": '["ops@example.com"]'}, "config error: alert_email: unknown key"),
        ({"removal_polcy": "retain"}, "config error: removal_polcy: unknown key"),
        (
            {"budget.monthly_limit_usd": "Infinity"},
            "config error: budget.monthly_limit_usd = Infinity: input should be a finite number",
        ),
        (
            {"budget.monthly_limit_usd": "1e999"},
            "config error: budget.monthly_limit_usd = Infinity: input should be a finite number",
        ),
        (
            {"budget.monthly_limit_usd": "1e12"},
            "config error: budget.monthly_limit_usd = 1000000000000.0: input should be less than or equal to 100000000",
        ),
        (
            {"training.spot_max_vcpus": "10000000"},
            "config error: training.spot_max_vcpus = 10000000: input should be less than or equal to 100000",
        ),
        (
            {"training.timeout_minutes": "9999999"},
            "config error: training.timeout_minutes = 9999999: input should be less than or equal to 20160",
        ),
        (
            {"training.capacity_wait_minutes": "2000"},
            "config error: training.capacity_wait_minutes = 2000: input should be less than or equal to 1440",
        ),
        (
            {"training.spot_max_vcpus": "true"},
            "config error: training.spot_max_vcpus = true: must be a number, not true or false",
        ),
        (
            {"budget.actual_thresholds_percent": "[50, true]"},
            "config error: budget.actual_thresholds_percent = [50, true]: must be a number, not true or false",
        ),
        (
            {"alert_emails": '["ops@example..com"]'},
            "config error: alert_emails = [\"ops@example..com\"]: 'ops@example..com' is not an email address",
        ),
        (
            {"alert_emails": '["ops.@example.com"]'},
            "config error: alert_emails = [\"ops.@example.com\"]: 'ops.@example.com' is not an email address",
        ),
        (
            {"network.vpc_cidr": "10.42.0.0/33"},
            "config error: network.vpc_cidr = 10.42.0.0/33: is not an IPv4 network in CIDR notation",
        ),
        (
            {"network.vpc_cidr": "999.42.0.0/16"},
            "config error: network.vpc_cidr = 999.42.0.0/16: is not an IPv4 network in CIDR notation",
        ),
        (
            {"network.vpc_cidr": "10.42.0.1/16"},
            "config error: network.vpc_cidr = 10.42.0.1/16: is not an IPv4 network in CIDR notation",
        ),
        (
            {
                "network.existing_vpc": (
                    '{"vpc_id": "vpc-0123456789abcdef0", "availability_zones": ["us-east-1a"], '
                    '"private_subnet_ids": ["subnet-01234567"], "vpc_cidr": "10.0.0.0/33"}'
                )
            },
            "config error: network.existing_vpc.vpc_cidr = 10.0.0.0/33: is not an IPv4 network in CIDR notation",
        ),
        (
            {"extra_tags": '{"aws:team": "ml"}'},
            'config error: extra_tags = {"aws:team": "ml"}: tag key \'aws:team\': the aws: prefix is reserved',
        ),
        ({"extra_tags": '{"Team": "' + "x" * 257 + '"}'}, "config error: extra_tags = "),
        (
            {"extra_tags": '{"Team": "ml<script>"}'},
            'config error: extra_tags = {"Team": "ml<script>"}: tag \'Team\': value must be',
        ),
        ({"cost_center": "a;b"}, "config error: cost_center = a;b: is a tag value"),
    ],
)
def test_inputs_that_once_slipped_through_fail_with_one_line(overrides, message):
    with pytest.raises(ConfigError) as exc_info:
        load_config({**CDK_CONTEXT, **overrides})
    text = str(exc_info.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_cdk_own_context_keys_are_not_taken_for_typos():
    config = load_config(
        {
            **CDK_CONTEXT,
            "aws:cdk:enable-path-metadata": True,
            "@aws-cdk/core:newStyleStackSynthesis": True,
            "availability-zones:account=123456789012:region=us-east-1": ["us-east-1a"],
        }
    )
    assert config.profile == "dev"


def test_valid_tags_and_emails_still_pass():
    config = config_for(
        "dev",
        extra_tags='{"Team": "ml-platform", "owner:email": "ops+ml@example.co.uk"}',
        alert_emails='["ops+ml@example.co.uk", "a.b@sub.example.com"]',
    )
    assert config.tags["Team"] == "ml-platform"
    assert config.alert_emails == ["ops+ml@example.co.uk", "a.b@sub.example.com"]
