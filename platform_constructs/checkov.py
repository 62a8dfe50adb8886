"""checkov skips, in one shape (the scanner `make scan` runs over cdk.out/).

A skip is CloudFormation resource metadata `{"checkov": {"skip": [{"id": ..., "comment": ...}]}}`
on the one resource it applies to, with a reason specific to that resource. docs/security.md
lists each of them; a test keeps the two in sync.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import aws_cdk as cdk
from constructs import IConstruct

METADATA_KEY = "checkov"
_CHECK_ID = re.compile(r"^CKV2?_AWS_\d+$")
MIN_REASON_LENGTH = 40

# CDK's own custom-resource provider functions (one per stack that needs it), by construct id,
# and why each may stay as CDK writes it: it only runs during a deployment.
_PROVIDER_REASON = (
    "CDK's custom-resource provider {what}: CloudFormation invokes it synchronously during "
    "deployments only, so it needs no reserved concurrency and no dead-letter queue, and it "
    "calls only AWS APIs, so it runs outside the VPC (which has no NAT)."
)
CDK_PROVIDERS: Mapping[str, str] = {
    "Custom::VpcRestrictDefaultSGCustomResourceProvider": "that removes the default security group's rules",
    "Custom::S3AutoDeleteObjectsCustomResourceProvider": "that empties the buckets when a dev stack is destroyed",
}
PROVIDER_CHECKS = ("CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117")


def _cfn_resource(construct: IConstruct) -> cdk.CfnResource:
    if isinstance(construct, cdk.CfnResource):
        return construct
    child = construct.node.default_child
    if not isinstance(child, cdk.CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to put a checkov skip on")
    return child


def skip(construct: IConstruct, check_id: str, reason: str) -> None:
    """Skip one checkov check on the resource of `construct` (an L1, or the L2 above it)."""
    if not _CHECK_ID.match(check_id):
        raise ValueError(f"not a checkov check id: {check_id!r} (expected e.g. 'CKV_AWS_117')")
    if len(reason) < MIN_REASON_LENGTH:
        raise ValueError(f"reason for {check_id} on {construct.node.path} is too short to be specific")
    resource = _cfn_resource(construct)
    current = resource.get_metadata(METADATA_KEY) or {}
    skips = [s for s in current.get("skip", []) if s["id"] != check_id]
    resource.add_metadata(METADATA_KEY, {"skip": [*skips, {"id": check_id, "comment": reason}]})


def skip_cdk_provider_functions(stack: cdk.Stack) -> None:
    """The Lambda checks on the CDK custom-resource providers of `stack` (reached through the
    construct tree: CDK creates them as stack-level singletons with a `Handler` child)."""
    for provider_id, what in CDK_PROVIDERS.items():
        provider = stack.node.try_find_child(provider_id)
        if provider is None:
            continue
        handler = provider.node.find_child("Handler")
        for check_id in PROVIDER_CHECKS:
            skip(handler, check_id, _PROVIDER_REASON.format(what=what))


def skips_of(resource: Mapping) -> list[dict]:
    """The checkov skips in one template resource (its `Metadata.checkov.skip`)."""
    return list(((resource.get("Metadata") or {}).get(METADATA_KEY) or {}).get("skip", []))
