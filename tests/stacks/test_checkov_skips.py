"""checkov skips: each names a check, carries a specific reason, and is listed in docs/security.md."""

from __future__ import annotations

import re

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

from platform_constructs.checkov import METADATA_KEY, MIN_REASON_LENGTH, skip, skips_of
from tests.conftest import REPO

SYNTHS = ("dev", "prod", "dev_variant")
_STACK_KIND = re.compile(r"^BertBatch-[a-z0-9-]+?-(Network|Data|Training|Monitoring)$")


def _construct_paths(stack: cdk.Stack) -> dict[str, str]:
    """Logical id -> construct path inside the stack, as docs/security.md names it."""
    paths = {}
    for construct in stack.node.find_all():
        if isinstance(construct, cdk.CfnResource):
            path = construct.node.path.split("/", 1)[1].removesuffix("/Resource")
            paths[stack.resolve(construct.logical_id)] = path
    return paths


def _template_skips(synth) -> list[tuple[str, str, str, str]]:
    """(stack kind, construct path, check id, comment) for every skip in the synthesized templates."""
    found = []
    for stack in synth.platform.stacks:
        kind = _STACK_KIND.match(stack.stack_name).group(1)
        template = synth.assembly.get_stack_by_name(stack.stack_name).template
        paths = _construct_paths(stack)
        for logical_id, resource in template["Resources"].items():
            for entry in skips_of(resource):
                found.append((kind, paths[logical_id], entry.get("id", ""), entry.get("comment", "")))
    return found


def _documented_skips() -> list[tuple[set[str], set[tuple[str, str]], str]]:
    """Per table row of docs/security.md's checkov section: its check ids, its (stack kind,
    construct path) pairs (`Kind: `a`, `b`` names a and b in Kind) and the row itself."""
    text = (REPO / "docs" / "security.md").read_text()
    section = text.split("## checkov skips", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `CKV"):
            continue
        cells = line.split("|")
        checks = set(re.findall(r"`(CKV2?_AWS_\d+)`", cells[1]))
        targets = set()
        for kind, paths in re.findall(r"(Network|Data|Training|Monitoring): ((?:`[^`]+`(?:, )?)+)", cells[2]):
            targets |= {(kind, path) for path in re.findall(r"`([^`]+)`", paths)}
        rows.append((checks, targets, line))
    return rows


@pytest.mark.parametrize("synth_name", SYNTHS)
def test_every_skip_in_a_template_is_documented_with_a_reason(synth_name, request):
    skips = _template_skips(request.getfixturevalue(synth_name))
    assert skips, "expected checkov skips in the templates"
    rows = _documented_skips()
    for kind, path, check_id, comment in skips:
        assert len(comment) >= MIN_REASON_LENGTH, f"{kind}: {path}: skip {check_id!r} has no specific comment"
        assert any(check_id in checks and (kind, path) in targets for checks, targets, _ in rows), (
            f"checkov skip {check_id} on {kind}: {path} is not listed in docs/security.md"
        )


def test_every_documented_skip_exists_in_some_template(dev, prod, dev_variant):
    in_templates = {
        (kind, path, check) for synth in (dev, prod, dev_variant) for kind, path, check, _ in _template_skips(synth)
    }
    rows = _documented_skips()
    assert rows, "expected a checkov table in docs/security.md"
    for checks, targets, row in rows:
        for check in checks:
            for kind, path in targets:
                assert (kind, path, check) in in_templates, f"docs/security.md lists a skip no template has: {row}"


def test_project_functions_skip_only_the_vpc_check(dev):
    """Reserved concurrency, dead-letter queues and KMS on environments are fixed, not skipped."""
    skipped = {(path, check) for _kind, path, check, _ in _template_skips(dev)}
    for path in ("Fallback/Function", "CostGuardrail/Function", "JobEvents/Gauge"):
        assert {c for p, c in skipped if p == path} == {"CKV_AWS_117"}, path


def test_skip_merges_and_rejects_vague_or_malformed():
    stack = cdk.Stack(cdk.App(), "S")
    bucket = s3.Bucket(stack, "B")
    skip(bucket, "CKV_AWS_18", "a long enough reason that explains the exception in detail")
    skip(bucket, "CKV_AWS_21", "another long enough reason that explains the exception in detail")
    metadata = bucket.node.default_child.get_metadata(METADATA_KEY)
    assert [s["id"] for s in metadata["skip"]] == ["CKV_AWS_18", "CKV_AWS_21"]
    with pytest.raises(ValueError, match="not a checkov check id"):
        skip(bucket, "AwsSolutions-S1", "a long enough reason that explains the exception in detail")
    with pytest.raises(ValueError, match="too short"):
        skip(bucket, "CKV_AWS_18", "because")
