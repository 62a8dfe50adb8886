"""The cdk-nag gate: findings fail synth, and every acknowledgment is documented."""

from __future__ import annotations

import re

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

from platform_constructs.nag import COMPLIANCE_PACK_PREFIXES, acknowledge
from stacks.platform import add_compliance_checks
from tests.conftest import REPO
from tests.stacks.conftest import config_for, synthesize

CODE_DIRS = ("stacks", "platform_constructs")
# acknowledge(construct, "Pack::Rule[finding]", ...) and acknowledge_compliance(construct, "Rule", ...)
_ACK_RULE = re.compile(r'"(?:AwsSolutions|NIST\.800\.53\.R5|HIPAA\.Security)::([A-Za-z0-9.\-]+(?:\[[^\]]+\])?)"')
_COMPLIANCE_RULE = re.compile(r'acknowledge_compliance\(\s*[^,]+,\s*"([A-Za-z0-9]+)"')


def _acknowledged_rules_in_code() -> set[str]:
    """Rule ids as docs/security.md lists them (the part after `Pack::`)."""
    rules = set()
    for folder in CODE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "nag.py":
                continue
            text = path.read_text()
            rules |= set(_ACK_RULE.findall(text))
            for name in _COMPLIANCE_RULE.findall(text):
                rules |= {f"{pack}-{name}" for pack in COMPLIANCE_PACK_PREFIXES}
    return rules


def test_dev_and_prod_pass_their_packs(dev, prod):
    # The session fixtures synthesize with the packs on: reaching here means no finding.
    assert dev.config.compliance_packs == []
    assert "nist-800-53-r5" in prod.config.compliance_packs


def test_an_unacknowledged_finding_fails_synth():
    config = config_for("dev")
    app = cdk.App()
    stack = cdk.Stack(app, "Bad")
    s3.Bucket(stack, "Unencrypted")  # no TLS policy, no access logs: AwsSolutions-S1/S10
    add_compliance_checks(app, config)
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()


def test_hipaa_pack_is_selectable():
    synthesize(config_for("dev", compliance_packs='["hipaa"]'))


def test_every_acknowledgment_is_documented():
    documented = (REPO / "docs" / "security.md").read_text()
    rules = _acknowledged_rules_in_code()
    assert rules, "expected acknowledgments in the code"
    missing = sorted(r for r in rules if f"`{r}`" not in documented)
    assert not missing, f"acknowledged in code but not listed in docs/security.md: {missing}"


@pytest.mark.parametrize(
    "rule, reason",
    [
        ("AwsSolutions-IAM5", "a long enough reason that explains the exception in detail"),
        ("AwsSolutions::AwsSolutions-IAM5", "too short"),
    ],
)
def test_acknowledge_rejects_vague_or_malformed(rule, reason):
    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(ValueError):
        acknowledge(stack, rule, reason)
