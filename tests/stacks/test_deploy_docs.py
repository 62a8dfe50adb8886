"""docs/deploy.md against the synthesized dev and prod templates: the vCPU each quota must cover,
the Lambda concurrency the functions reserve, the idle items (interface endpoints per AZ, the
file system, KMS keys) and the log groups `prod` retains."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from bertbatch.doctor import QUOTAS, instance_class
from tests.conftest import REPO
from tests.stacks.conftest import Synthesized

PAGE = (REPO / "docs" / "deploy.md").read_text()
LAMBDA_UNRESERVED_MINIMUM = 100  # Lambda keeps this much of an account's concurrency unreserved
ENDPOINT_MONTH_PER_AZ = 7.30  # design notes: an interface endpoint, per AZ, per month
FSX_SCRATCH_2_GB_MONTH = 0.14  # design notes


def resources(synth: Synthesized, kind: str) -> list[dict[str, Any]]:
    found = []
    for stack in synth.platform.stacks:
        for resource in synth.template(stack).to_json()["Resources"].values():
            if resource["Type"] == kind:
                found.append(resource)
    return found


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
    for ce in resources(synth, "AWS::Batch::ComputeEnvironment"):
        compute = ce["Properties"]["ComputeResources"]
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
        reserved = sum(f["Properties"].get("ReservedConcurrentExecutions", 0)
                       for f in resources(synth, "AWS::Lambda::Function"))
        assert cell == f"at least {LAMBDA_UNRESERVED_MINIMUM + reserved}"


def test_idle_cost_items_match_the_templates(dev, prod):
    endpoints = row("interface VPC endpoints", prefix=True)
    fsx = row("FSx for Lustre", prefix=True)
    keys = row("KMS customer-managed keys", prefix=True)
    for synth, column in ((dev, 1), (prod, 2)):
        interface = [e for e in resources(synth, "AWS::EC2::VPCEndpoint")
                     if e["Properties"]["VpcEndpointType"] == "Interface"]
        azs = {len(e["Properties"]["SubnetIds"]) for e in interface}
        assert len(azs) == 1
        (az_count,) = azs
        cost = len(interface) * az_count * ENDPOINT_MONTH_PER_AZ
        assert endpoints[column] == f"{len(interface)} x {az_count} AZs: **${cost:,.2f}**"

        (file_system,) = resources(synth, "AWS::FSx::FileSystem")
        lustre = file_system["Properties"]["LustreConfiguration"]
        capacity = file_system["Properties"]["StorageCapacity"]
        assert fsx[column].startswith(f"{lustre['DeploymentType']}, {capacity:,} GiB")
        if lustre["DeploymentType"] == "SCRATCH_2":
            assert fsx[column].endswith(f"**${capacity * FSX_SCRATCH_2_GB_MONTH:,.2f}**")
        else:
            assert f"at {lustre['PerUnitStorageThroughput']} MB/s/TiB" in fsx[column]

        key_count = len(resources(synth, "AWS::KMS::Key"))
        assert keys[column] == f"{key_count}: ${key_count}"


def test_teardown_lists_every_log_group_prod_retains(prod):
    retained = {g["Properties"]["LogGroupName"] for g in resources(prod, "AWS::Logs::LogGroup")
                if g.get("DeletionPolicy") == "Retain"}
    assert retained
    assert set(re.findall(r"`(/[^`]+)`", row("log groups `", prefix=True)[0])) == retained
    loop = PAGE[PAGE.index("# 3. log groups"):PAGE.index("# 4. KMS keys")]
    assert set(re.findall(r"(/[\w/-]+)", loop)) == retained


@pytest.mark.parametrize("kind", ["AWS::S3::Bucket", "AWS::FSx::FileSystem", "AWS::KMS::Key"])
def test_prod_retains_what_the_teardown_section_removes(prod, dev, kind):
    assert all(r.get("DeletionPolicy") == "Retain" for r in resources(prod, kind))
    assert all(r.get("DeletionPolicy") == "Delete" for r in resources(dev, kind))
