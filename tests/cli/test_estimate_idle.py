"""`bertbatch estimate --idle`: the monthly idle cost of synthesized templates in a directory."""

from __future__ import annotations

import json

import pytest

from bertbatch.ui.json_fields import FIELDS

from .helpers import one_line_error


def endpoint(azs: int) -> dict:
    return {"Type": "AWS::EC2::VPCEndpoint",
            "Properties": {"VpcEndpointType": "Interface", "SubnetIds": [{"Ref": f"Subnet{i}"} for i in range(azs)]}}


NETWORK = {
    "Resources": {
        "EcrApi": endpoint(2),
        "Logs": endpoint(2),
        "S3": {"Type": "AWS::EC2::VPCEndpoint", "Properties": {"VpcEndpointType": "Gateway"}},
        "Nat": {"Type": "AWS::EC2::NatGateway", "Properties": {}},
        "Key": {"Type": "AWS::KMS::Key", "Properties": {}},
        "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
    }
}
DATA = {
    "Resources": {
        "Lustre": {"Type": "AWS::FSx::FileSystem",
                   "Properties": {"FileSystemType": "LUSTRE", "StorageCapacity": 1200,
                                  "LustreConfiguration": {"DeploymentType": "SCRATCH_2"}}},
        "Alarm": {"Type": "AWS::CloudWatch::Alarm",
                  "Properties": {"Metrics": [{"Id": "e", "Expression": "a + b"},
                                             {"Id": "a", "MetricStat": {"Period": 300}},
                                             {"Id": "b", "MetricStat": {"Period": 300}}]}},
        "Queue": {"Type": "AWS::Batch::ComputeEnvironment", "Properties": {"ComputeResources": {"MinvCpus": 0}}},
    }
}


@pytest.fixture
def templates(tmp_path):
    for stack, template in (("App-Network", NETWORK), ("App-Data", DATA)):
        (tmp_path / f"{stack}.template.json").write_text(json.dumps(template))
    (tmp_path / "manifest.json").write_text("{}")  # not a template: ignored
    return tmp_path


def test_table_prices_each_kind_and_the_total(bb, templates):
    r = bb("estimate", "--idle", "--templates", templates)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    # 1,200 GiB x $0.14; 4 endpoint-AZs x 730 h x $0.01; 1 NAT x 730 h x $0.045; 1 key; 2 alarm metrics
    assert lines[1].split() == ["FSx", "for", "Lustre", "SCRATCH_2", "1,200", "GiB", "0.14", "168.00"]
    assert "interface endpoint 4 endpoint-AZ 7.30 29.20" in " ".join(r.output.split())
    assert "NAT gateway 1 gateway 32.85 32.85" in " ".join(r.output.split())
    assert "CloudWatch alarm metric 2 metric 0.10 0.20" in " ".join(r.output.split())
    assert lines[6].split() == ["total", "231.25"]
    assert "as of " in r.output


def test_json_record(bb, templates):
    r = bb("estimate", "--idle", "--templates", templates, "-o", "json")
    assert r.exit_code == 0, r.output
    record = json.loads(r.output)
    assert list(record) == list(FIELDS["estimate --idle"])
    assert record["total"] == 231.25 and record["region"] == "us-east-1"
    assert record["items"][0] == {"kind": "FSx for Lustre SCRATCH_2", "unit": "GiB", "count": 1200,
                                  "unit_price": 0.14, "monthly": 168.0}
    assert [i["kind"] for i in record["items"]] == [
        "FSx for Lustre SCRATCH_2", "NAT gateway", "interface endpoint", "KMS key", "CloudWatch alarm metric"]


def test_a_resource_type_neither_priced_nor_free_is_refused(bb, templates):
    (templates / "App-Db.template.json").write_text(
        json.dumps({"Resources": {"Db": {"Type": "AWS::RDS::DBInstance", "Properties": {}}}}))
    one_line_error(bb("estimate", "--idle", "--templates", templates),
                   "App-Db Db: resource type AWS::RDS::DBInstance has no idle price")


def test_a_compute_environment_kept_warm_is_refused(bb, templates):
    warm = {"Resources": {"Warm": {"Type": "AWS::Batch::ComputeEnvironment",
                                   "Properties": {"ComputeResources": {"MinvCpus": 8}}}}}
    (templates / "App-Training.template.json").write_text(json.dumps(warm))
    one_line_error(bb("estimate", "--idle", "--templates", templates), "App-Training Warm: minvCpus > 0")


def test_a_directory_without_templates_is_refused(bb, tmp_path):
    one_line_error(bb("estimate", "--idle", "--templates", tmp_path), "no *.template.json files")
    one_line_error(bb("estimate", "--idle", "--templates", tmp_path / "nope"), "no such directory")


def test_idle_takes_no_run_and_templates_needs_idle(bb, templates):
    one_line_error(bb("estimate", "--idle", "--rows", "10", "--templates", templates), "takes no --rows or --data")
    one_line_error(bb("estimate", "--rows", "10", "--templates", templates, "--offline"),
                   "--templates DIR goes with --idle")


def test_a_price_table_without_an_idle_section_is_refused(bb, templates, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"as_of": "2026-01-01", "instances": {}}))
    one_line_error(bb("estimate", "--idle", "--templates", templates, "--prices", prices), "no \"idle\" section")
