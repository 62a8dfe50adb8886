"""What a deployment costs a month with no job running, from its synthesized templates.

    monthly cost of a kind = count in the templates x its list price (the `idle` section of
                             data/prices.json, dated by its own `as_of`)

Counted: interface endpoints x the subnets (AZs) each sits in, NAT gateways, public IPv4
addresses, FSx for Lustre GiB by deployment type and throughput, KMS keys, dashboards, the
metrics alarms read, advanced SSM parameters, secrets. Every other resource type must be one
known to cost nothing idle (FREE_WHEN_IDLE): a type in neither is an error, not a silent $0.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..core.errors import BertBatchError

# Resource types that bill nothing while no job runs, and why.
FREE_WHEN_IDLE: dict[str, str] = {
    "AWS::Batch::ComputeEnvironment": "0 vCPUs when idle (minvCpus 0, checked)",
    "AWS::Batch::JobQueue": "no charge",
    "AWS::Batch::JobDefinition": "no charge",
    "AWS::Batch::SchedulingPolicy": "no charge",
    "AWS::Budgets::Budget": "no charge for budgets without budget actions",
    "AWS::EC2::VPC": "no charge",
    "AWS::EC2::Subnet": "no charge",
    "AWS::EC2::RouteTable": "no charge",
    "AWS::EC2::Route": "no charge",
    "AWS::EC2::SubnetRouteTableAssociation": "no charge",
    "AWS::EC2::InternetGateway": "no charge",
    "AWS::EC2::VPCGatewayAttachment": "no charge",
    "AWS::EC2::SecurityGroup": "no charge",
    "AWS::EC2::SecurityGroupIngress": "no charge",
    "AWS::EC2::SecurityGroupEgress": "no charge",
    "AWS::EC2::LaunchTemplate": "no charge",
    "AWS::EC2::PlacementGroup": "no charge",
    "AWS::EC2::FlowLog": "usage: the log data delivered",
    "AWS::FSx::DataRepositoryAssociation": "no charge (the file system is counted)",
    "AWS::IAM::Role": "no charge",
    "AWS::IAM::Policy": "no charge",
    "AWS::IAM::ManagedPolicy": "no charge",
    "AWS::IAM::InstanceProfile": "no charge",
    "AWS::KMS::Alias": "no charge (the key is counted)",
    "AWS::Lambda::Function": "usage: invocations and duration",
    "AWS::Lambda::Permission": "no charge",
    "AWS::Lambda::EventInvokeConfig": "no charge",
    "AWS::Logs::LogGroup": "usage: ingestion and storage",
    "AWS::Logs::MetricFilter": "usage: metrics published when job events arrive",
    "AWS::Logs::ResourcePolicy": "no charge",
    "AWS::S3::Bucket": "usage: storage and requests",
    "AWS::S3::BucketPolicy": "no charge",
    "AWS::SNS::Topic": "usage: messages",
    "AWS::SNS::TopicPolicy": "no charge",
    "AWS::SNS::Subscription": "usage: deliveries",
    "AWS::SQS::Queue": "usage: requests",
    "AWS::SQS::QueuePolicy": "no charge",
    "AWS::Events::Rule": "usage: events (AWS service events are free)",
    "AWS::CDK::Metadata": "no charge",
    "Custom::S3AutoDeleteObjects": "a Lambda-backed deploy-time action",
    "Custom::VpcRestrictDefaultSG": "a Lambda-backed deploy-time action",
}


@dataclass(frozen=True)
class IdleItem:
    """One kind of idle charge: `count` units at `unit_price` $ a month each."""

    kind: str
    unit: str
    count: int
    unit_price: float

    @property
    def monthly(self) -> float:
        return self.count * self.unit_price

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "monthly": round(self.monthly, 2)}


Counter = Callable[[str, dict[str, Any], Mapping[str, Any]], Iterator[IdleItem]]


def _price(table: Mapping[str, Any], key: str) -> float:
    value = table.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise BertBatchError(f"prices.json idle section: {key} must be a number >= 0")
    return float(value)


def _hourly(table: Mapping[str, Any], key: str) -> float:
    return _price(table, key) * _price(table, "hours_per_month")


def _endpoint(name: str, props: dict[str, Any], table: Mapping[str, Any]) -> Iterator[IdleItem]:
    if props.get("VpcEndpointType") != "Interface":
        return  # gateway endpoints (S3) are free
    subnets = props.get("SubnetIds")
    if not isinstance(subnets, list) or not subnets:
        raise BertBatchError(f"interface endpoint {name}: cannot count its subnets (SubnetIds is not a list)")
    yield IdleItem("interface endpoint", "endpoint-AZ", len(subnets),
                   _hourly(table, "interface_endpoint_per_az_hour"))


def _file_system(name: str, props: dict[str, Any], table: Mapping[str, Any]) -> Iterator[IdleItem]:
    if props.get("FileSystemType") != "LUSTRE":
        raise BertBatchError(f"file system {name}: only FSx for Lustre is priced, not {props.get('FileSystemType')}")
    lustre = props.get("LustreConfiguration", {})
    deployment = str(lustre.get("DeploymentType", "SCRATCH_1"))
    key = deployment if deployment.startswith("SCRATCH") else f"{deployment}/{lustre.get('PerUnitStorageThroughput')}"
    prices = table.get("fsx_lustre_per_gib_month", {})
    if key not in prices:
        raise BertBatchError(f"file system {name}: no FSx for Lustre price for {key} in prices.json's idle section")
    yield IdleItem(f"FSx for Lustre {key}", "GiB", int(props["StorageCapacity"]),
                   _price(prices, key))


def _alarm(name: str, props: dict[str, Any], table: Mapping[str, Any]) -> Iterator[IdleItem]:
    # Alarms bill per metric they read: a metric-math alarm pays for each metric in its math.
    stats = [m["MetricStat"] for m in props.get("Metrics", []) if "MetricStat" in m]
    periods = [int(s.get("Period", 60)) for s in stats] or [int(props.get("Period", 60))]
    high_resolution = min(periods) < 60
    if high_resolution:
        kind, key = "CloudWatch alarm metric (high resolution)", "high_resolution_alarm_metric_per_month"
    else:
        kind, key = "CloudWatch alarm metric", "alarm_metric_per_month"
    yield IdleItem(kind, "metric", len(stats) or 1, _price(table, key))


def _compute_environment(name: str, props: dict[str, Any], table: Mapping[str, Any]) -> Iterator[IdleItem]:
    if int(props.get("ComputeResources", {}).get("MinvCpus", 0)) > 0:
        raise BertBatchError(f"compute environment {name}: minvCpus > 0 keeps instances running; "
                             "their cost is not an idle price")
    yield from ()


def _parameter(name: str, props: dict[str, Any], table: Mapping[str, Any]) -> Iterator[IdleItem]:
    if props.get("Tier") in ("Advanced", "Intelligent-Tiering"):
        yield IdleItem("SSM advanced parameter", "parameter", 1, _price(table, "advanced_parameter_per_month"))


def _each(kind: str, unit: str, key: str, *, hourly: bool = False) -> Counter:
    def count(name: str, props: dict[str, Any], table: Mapping[str, Any]) -> Iterator[IdleItem]:
        yield IdleItem(kind, unit, 1, _hourly(table, key) if hourly else _price(table, key))
    return count


COUNTERS: dict[str, Counter] = {
    "AWS::EC2::VPCEndpoint": _endpoint,
    "AWS::EC2::NatGateway": _each("NAT gateway", "gateway", "nat_gateway_per_hour", hourly=True),
    "AWS::EC2::EIP": _each("public IPv4 address", "address", "public_ipv4_address_per_hour", hourly=True),
    "AWS::FSx::FileSystem": _file_system,
    "AWS::KMS::Key": _each("KMS key", "key", "kms_key_per_month"),
    "AWS::CloudWatch::Dashboard": _each("CloudWatch dashboard", "dashboard", "dashboard_per_month"),
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::SSM::Parameter": _parameter,
    "AWS::SecretsManager::Secret": _each("Secrets Manager secret", "secret", "secret_per_month"),
    "AWS::Batch::ComputeEnvironment": _compute_environment,
}


def idle_table(prices: Mapping[str, Any]) -> Mapping[str, Any]:
    table = prices.get("idle")
    if not isinstance(table, dict):
        raise BertBatchError("prices.json has no \"idle\" section (idle list prices)")
    return table


def read_templates(directory: Path) -> dict[str, dict[str, Any]]:
    """Stack name -> template, from the *.template.json files `make synth` writes."""
    if not directory.is_dir():
        raise BertBatchError(f"--templates {directory}: no such directory (run make synth, or give --templates DIR)")
    templates: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.template.json")):
        try:
            templates[path.name.removesuffix(".template.json")] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BertBatchError(f"--templates {directory}: cannot read {path.name} ({exc})") from None
    if not templates:
        raise BertBatchError(f"--templates {directory}: no *.template.json files (run make synth)")
    return templates


def idle_cost(templates: Mapping[str, dict[str, Any]], prices: Mapping[str, Any]) -> list[IdleItem]:
    """The idle charges of the templates' resources, one item per kind (counts summed), most
    expensive first. A resource type neither priced nor known to be free is an error."""
    table = idle_table(prices)
    by_kind: dict[str, IdleItem] = {}
    for stack, template in templates.items():
        for name, resource in template.get("Resources", {}).items():
            rtype = resource.get("Type", "")
            if rtype not in COUNTERS and rtype not in FREE_WHEN_IDLE:
                raise BertBatchError(f"{stack} {name}: resource type {rtype} has no idle price (prices.json) "
                                     "and is not known to be free when idle")
            for item in COUNTERS.get(rtype, _free)(f"{stack} {name}", resource.get("Properties", {}), table):
                known = by_kind.get(item.kind)
                count = item.count + (known.count if known else 0)
                by_kind[item.kind] = IdleItem(item.kind, item.unit, count, item.unit_price)
    return sorted(by_kind.values(), key=lambda i: (-i.monthly, i.kind))


def _free(name: str, props: dict[str, Any], table: Mapping[str, Any]) -> Iterator[IdleItem]:
    yield from ()


def total(items: list[IdleItem]) -> float:
    return round(sum(i.monthly for i in items), 2)
