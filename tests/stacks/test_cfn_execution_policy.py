"""deploy/cfn-execution-policy.json: the managed policy `make bootstrap` gives the CloudFormation
execution role instead of AdministratorAccess. It must allow every service whose resources the
stacks declare, in every profile, so that the policy and the templates cannot drift apart."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO

POLICY = REPO / "deploy" / "cfn-execution-policy.json"
# CloudFormation resource type namespaces whose IAM service prefix is not the lower-cased name.
PREFIX_OF = {"Custom": "lambda"}  # custom resources: CloudFormation invokes their Lambda function
NEEDS_NO_PERMISSION = {"AWS::CDK::Metadata"}  # CloudFormation keeps it itself


def iam_prefix(resource_type: str) -> str:
    namespace, service, *_ = resource_type.split("::")
    return PREFIX_OF.get(namespace) or service.lower()


def allowed_actions() -> set[str]:
    document = json.loads(POLICY.read_text())
    actions: set[str] = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow" and "NotAction" not in statement
        listed = statement["Action"]
        actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


def resource_types(synth) -> set[str]:
    types: set[str] = set()
    for stack in synth.assembly.stacks:
        types |= {r["Type"] for r in stack.template["Resources"].values()}
    return types - NEEDS_NO_PERMISSION


def test_the_policy_is_a_managed_policy_document_without_a_bare_wildcard():
    document = json.loads(POLICY.read_text())
    assert document["Version"] == "2012-10-17"
    actions = allowed_actions()
    assert actions and "*" not in actions
    assert all(action.endswith(":*") and action.count(":") == 1 for action in actions), actions


@pytest.mark.parametrize("profile", ["dev", "prod"])
def test_every_resource_type_of_every_template_is_covered(profile, request):
    synth = request.getfixturevalue(profile)
    missing = sorted(t for t in resource_types(synth) if f"{iam_prefix(t)}:*" not in allowed_actions())
    assert not missing, f"deploy/cfn-execution-policy.json does not allow the services of {missing}"


def test_the_policy_allows_no_service_the_templates_do_not_use(dev, prod):
    used = {f"{iam_prefix(t)}:*" for synth in (dev, prod) for t in resource_types(synth)}
    assert allowed_actions() == used
