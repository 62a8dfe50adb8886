"""cdk-nag acknowledgments, in one shape.

Every acknowledgment names the rule (as cdk-nag prints it: `Pack::Rule[finding]`), the one
construct it applies to, and a reason specific to that construct. docs/security.md lists
each of them; a test keeps the two in sync.
"""

from __future__ import annotations

import re

import aws_cdk as cdk
from constructs import IConstruct

_RULE = re.compile(r"^(AwsSolutions|NIST\.800\.53\.R5|HIPAA\.Security)::[A-Za-z0-9.]+-[A-Za-z0-9]+(\[.+\])?$")
MIN_REASON_LENGTH = 40


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag rule on one construct (and its children)."""
    if not _RULE.match(rule):
        raise ValueError(f"not a cdk-nag rule id: {rule!r} (expected e.g. 'AwsSolutions::AwsSolutions-IAM5')")
    if len(reason) < MIN_REASON_LENGTH:
        raise ValueError(f"reason for {rule} on {construct.node.path} is too short to be specific")
    cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


COMPLIANCE_PACK_PREFIXES = ("NIST.800.53.R5", "HIPAA.Security")


def acknowledge_compliance(construct: IConstruct, rule_name: str, reason: str) -> None:
    """Acknowledge a rule that NIST 800-53 R5 and HIPAA share (same name in both packs).

    Only the packs a profile enables are checked; acknowledging the other is harmless.
    """
    for pack in COMPLIANCE_PACK_PREFIXES:
        acknowledge(construct, f"{pack}::{pack}-{rule_name}", reason)
