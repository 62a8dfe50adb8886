"""docs/deploy.md against the synthesized dev and prod templates: the vCPU each quota must cover,
the Lambda concurrency the functions reserve, the idle cost table (the computation of
`estimate --idle`) and the log groups `prod` retains."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Capture

from bertbatch.core.preflight_checks import QUOTAS, instance_class
from bertbatch.cost import idle_cost
from bertbatch.cost.training_cost import load_table
from tests.conftest import REPO
from tests.stacks.conftest import Synthesized, every

PAGE = (REPO / "docs" / "deploy.md").read_text()
LAMBDA_UNRESERVED_MINIMUM = 100  # Lambda keeps this much of an account's concurrency unreserved


def values(synth: Synthesized, kind: str, name: str, **resource: Any) -> list[Any]:
    """Property `name` of every `kind` resource of every stack that has it (and matches `resource`,
    e.g. DeletionPolicy="Retain")."""
    found: list[Any] = []
    for stack in synth.platform.stacks:
        value = Capture()
        if synth.template(stack).find_resources(kind, {**resource, "Properties": {name: value}}):
            found += every(value)
    return found


def every_stack_has(synth: Synthesized, kind: str, resource: dict) -> None:
    """Every `kind` resource of every stack matches `resource` (has_resource's pattern)."""
    for stack in synth.platform.stacks:
        template = synth.template(stack)
        if template.find_resources(kind):
            template.all_resources(kind, resource)


def row(first_cell: str, *, prefix: bool = False) -> list[str]:
    """The cells of the table row on this page whose first cell is (or starts with) `first_cell`."""
    for line in PAGE.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.strip().startswith("|") and (cells[0].startswith(first_cell) if prefix else cells[0] == first_cell):
            return cells
    raise AssertionError(f"docs/deploy.md has no table row {first_cell!r}")


def vcpus_per_quota(synth: Synthesized) -> Counter[str]:
    """The compute environments' maxvCpus summed per quota code, as `bertbatch doctor` sums them."""
    needed: Counter[str] = Counter()
    for compute in values(synth, "AWS::Batch::ComputeEnvironment", "ComputeResources"):
        spot = compute["Type"] == "SPOT"
        for cls in {instance_class(t) for t in compute["InstanceTypes"]} - {None}:
            needed[QUOTAS[(str(cls), spot)].code] += compute["MaxvCpus"]
    return needed


def test_the_quota_table_names_every_vcpu_quota_and_what_each_profile_needs(dev, prod):
    for profile, synth in (("dev", dev), ("prod", prod)):
        needed = vcpus_per_quota(synth)
        column = 2 if profile == "dev" else 3
        for quota in QUOTAS.values():
            cells = row(quota.name)
            assert cells[1] == f"`ec2`, `{quota.code}`"
            assert int(cells[column]) == needed[quota.code], (profile, quota.code)


def test_the_lambda_row_asks_for_what_the_functions_reserve_plus_the_unreserved_minimum(dev, prod):
    cells = row("Concurrent executions (Lambda)")
    assert cells[1] == "`lambda`, `L-B99A9384`"
    for synth, cell in ((dev, cells[2]), (prod, cells[3])):
        reserved = sum(values(synth, "AWS::Lambda::Function", "ReservedConcurrentExecutions"))
        assert cell == f"at least {LAMBDA_UNRESERVED_MINIMUM + reserved}"


def idle_items(synth: Synthesized) -> dict[str, idle_cost.IdleItem]:
    templates = idle_cost.read_templates(Path(synth.assembly.directory))
    return {i.kind: i for i in idle_cost.idle_cost(templates, load_table("prices.json"))}


def test_the_idle_cost_table_is_the_computed_one(dev, prod):
    computed = {"dev": idle_items(dev), "prod": idle_items(prod)}
    kinds = dict.fromkeys(k for items in computed.values() for k in items)
    for kind in kinds:
        cells = row(kind)
        for column, profile in ((1, "dev"), (2, "prod")):
            item = computed[profile].get(kind)
            expected = f"{item.count:,} {item.unit}: ${item.monthly:,.2f}" if item else "none"
            assert cells[column] == expected, (kind, profile)
    total = row("**total a month**")
    for column, profile in ((1, "dev"), (2, "prod")):
        assert total[column] == f"**${idle_cost.total(list(computed[profile].values())):,.2f}**"


def test_the_readme_states_the_computed_dev_figure(dev):
    figure = idle_cost.total(list(idle_items(dev).values()))
    readme = (REPO / "README.md").read_text()
    assert f"the platform's fixed idle cost is ${figure:,.2f}/month in dev" in readme


def test_teardown_lists_every_log_group_prod_retains(prod):
    retained = set(values(prod, "AWS::Logs::LogGroup", "LogGroupName", DeletionPolicy="Retain"))
    assert retained
    assert set(re.findall(r"`(/[^`]+)`", row("log groups `", prefix=True)[0])) == retained
    loop = PAGE[PAGE.index("# 3. log groups"):PAGE.index("# 4. KMS keys")]
    assert set(re.findall(r"(/[\w/-]+)", loop)) == retained


@pytest.mark.parametrize("kind", ["AWS::S3::Bucket", "AWS::FSx::FileSystem", "AWS::KMS::Key"])
def test_prod_retains_what_the_teardown_section_removes(prod, dev, kind):
    every_stack_has(prod, kind, {"DeletionPolicy": "Retain"})
    every_stack_has(dev, kind, {"DeletionPolicy": "Delete"})
