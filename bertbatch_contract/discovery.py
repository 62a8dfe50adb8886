"""Discovery contract: where the Training stack publishes the names the CLI needs.

The stack writes one SSM String parameter per key under `/<project>/<profile>/` and the same
values as CloudFormation outputs; the CLI reads the parameters. Nobody copies names by hand.
Parameter names come from `naming.Naming.parameter`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

# key (also the SSM parameter's last path segment) -> description
QUEUE_SPOT_FIRST = "queue/spot-first"
QUEUE_ON_DEMAND = "queue/on-demand"
QUEUE_MULTI_NODE = "queue/multi-node"
JOB_DEFINITION_SINGLE = "job-definition/bert-finetune"
JOB_DEFINITION_MULTI_NODE = "job-definition/bert-finetune-multinode"
JOB_DEFINITION_PREDICT = "job-definition/bert-predict"
QUEUE_PREPARE = "queue/prepare"
JOB_DEFINITION_PREPARE = "job-definition/bert-prepare"
DATA_BUCKET = "bucket/data"
ARTIFACTS_BUCKET = "bucket/artifacts"
LOG_GROUP = "log-group"
FSX_MOUNT_PATH = "fsx/mount-path"  # "none" when FSx is disabled
METRICS_NAMESPACE = "metrics/namespace"
INTERNET_EGRESS = "network/internet-egress"  # "true" | "false": can jobs reach the internet
MLFLOW_TRACKING_URI = "mlflow/tracking-uri"  # "none" when experiment tracking is off
RESERVATIONS = "reservations"  # the reserved-capacity queues, as JSON (`reservations_value`); "{}" when none
TEAMS = "teams"  # the teams sharing the queues and the default one, as JSON (bertbatch_contract.teams)
# The value of an optional key whose feature is off (fsx/mount-path, mlflow/tracking-uri).
NOT_CONFIGURED = "none"
# Per queue kind (spot-first, on-demand, multi-node): its compute environments, as JSON
# (see `capacity_value` / `parse_capacity`).
CAPACITY_PREFIX = "capacity/"
QUEUE_KINDS = ("spot-first", "on-demand", "multi-node")
# A reserved-capacity queue (training.reservations) is the queue kind `reserved/<name>`: its queue
# is published under `queue/reserved/<name>` and its capacity under `capacity/reserved/<name>`.
RESERVED_PREFIX = "reserved/"
RESERVATION_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
RESERVATION_NAME_RULE = "1 to 32 lowercase letters, digits and inner hyphens"
RESERVATION_KINDS = ("odcr", "capacity-block")


def reserved_queue_kind(name: str) -> str:
    """The queue kind of reservation `name`, e.g. `reserved/p5`."""
    if not RESERVATION_NAME.fullmatch(name):
        raise ValueError(f"reservation name {name!r}: {RESERVATION_NAME_RULE}")
    return f"{RESERVED_PREFIX}{name}"


def reserved_queue_key(name: str) -> str:
    """The discovery key of reservation `name`'s job queue, e.g. `queue/reserved/p5`."""
    return f"queue/{reserved_queue_kind(name)}"


def is_reserved_kind(queue_kind: str) -> bool:
    name = queue_kind.removeprefix(RESERVED_PREFIX)
    return queue_kind.startswith(RESERVED_PREFIX) and RESERVATION_NAME.fullmatch(name) is not None


def capacity_key(queue_kind: str) -> str:
    """The discovery key of one queue's capacity, e.g. `capacity/spot-first`, `capacity/reserved/p5`."""
    if queue_kind not in QUEUE_KINDS and not is_reserved_kind(queue_kind):
        raise ValueError(f"unknown queue kind {queue_kind!r} (expected one of {', '.join(QUEUE_KINDS)} "
                         f"or {RESERVED_PREFIX}<name>)")
    return f"{CAPACITY_PREFIX}{queue_kind}"


@dataclass(frozen=True)
class Reservation:
    """A reserved-capacity queue: the On-Demand Capacity Reservation or Capacity Block its
    compute environment launches into. Exactly one of `reservation_id` (cr-...) and
    `resource_group_arn` (a group of reservations; ODCR only) is set."""

    name: str
    kind: str  # odcr | capacity-block
    instance_type: str
    reservation_id: str = ""
    resource_group_arn: str = ""

    @property
    def target(self) -> str:
        return self.reservation_id or self.resource_group_arn


def reservations_value(reservations: Sequence[Reservation]) -> str:
    """The SSM value of the `reservations` key: name -> the reservation, as JSON."""
    items = {r.name: {k: v for k, v in asdict(r).items() if k != "name" and v} for r in reservations}
    return json.dumps(items, separators=(",", ":"), sort_keys=True)


def parse_reservations(text: str) -> dict[str, Reservation]:
    """Read a `reservations` value back; ValueError with one line when malformed."""
    try:
        items: Mapping[str, Mapping[str, str]] = json.loads(text)
        found = {str(name): Reservation(name=str(name), kind=str(i["kind"]), instance_type=str(i["instance_type"]),
                                        reservation_id=str(i.get("reservation_id", "")),
                                        resource_group_arn=str(i.get("resource_group_arn", "")))
                 for name, i in items.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed reservations value {text[:80]!r}: {exc}") from None
    bad = [r.name for r in found.values() if not RESERVATION_NAME.fullmatch(r.name) or not r.target]
    if bad:
        raise ValueError(f"malformed reservations value {text[:80]!r}: reservation {bad[0]!r} has a bad name "
                         "or no target")
    return found


@dataclass(frozen=True)
class ComputeCapacity:
    """One compute environment behind a queue, in the queue's order: what it can launch."""

    name: str
    instance_types: tuple[str, ...]
    max_vcpus: int
    spot: bool


def capacity_value(environments: Sequence[ComputeCapacity]) -> str:
    """The SSM value of a `capacity/<queue-kind>` key: `{"compute_environments": [...]}`."""
    items = [{**asdict(e), "instance_types": list(e.instance_types)} for e in environments]
    return json.dumps({"compute_environments": items}, separators=(",", ":"), sort_keys=True)


def parse_capacity(text: str) -> list[ComputeCapacity]:
    """Read a `capacity/<queue-kind>` value back; ValueError with one line when malformed."""
    try:
        items = json.loads(text)["compute_environments"]
        return [
            ComputeCapacity(
                name=str(i["name"]),
                instance_types=tuple(str(t) for t in i["instance_types"]),
                max_vcpus=int(i["max_vcpus"]),
                spot=bool(i["spot"]),
            )
            for i in items
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"malformed capacity value {text[:80]!r}: {exc}") from None


KEYS: dict[str, str] = {
    QUEUE_SPOT_FIRST: "Job queue: Spot first, On-Demand when Spot is full",
    QUEUE_ON_DEMAND: "Job queue: On-Demand only",
    QUEUE_MULTI_NODE: "Job queue: multi-node parallel jobs (On-Demand, placement group)",
    JOB_DEFINITION_SINGLE: "Job definition ARN: single node, 1..N GPUs",
    JOB_DEFINITION_MULTI_NODE: "Job definition ARN: multi-node parallel (torchrun)",
    JOB_DEFINITION_PREDICT: "Job definition ARN: batch scoring, one GPU (python -m bert_train predict)",
    QUEUE_PREPARE: "Job queue: data preparation on Spot CPU instances",
    JOB_DEFINITION_PREPARE: "Job definition ARN: data preparation array job (python -m bert_train prepare)",
    DATA_BUCKET: "Data bucket name (inputs under datasets/)",
    ARTIFACTS_BUCKET: "Artifacts bucket name (checkpoints/, runs/, models/, predictions/)",
    LOG_GROUP: "CloudWatch Logs group of the training jobs",
    FSX_MOUNT_PATH: "Where FSx for Lustre is mounted in jobs ('none' when disabled)",
    METRICS_NAMESPACE: "CloudWatch namespace of the training metrics",
    INTERNET_EGRESS: "Whether the job subnets reach the internet ('true' / 'false'): hub models need staging if not",
    MLFLOW_TRACKING_URI: "MLflow tracking URI the training jobs log to ('none' when tracking is off)",
    RESERVATIONS: "Reserved-capacity queues: name -> reservation id or group, kind, instance type (JSON)",
    TEAMS: "Teams sharing the queues (fair-share identifiers), their weights and the default team (JSON)",
    **{
        capacity_key(kind): f"Compute environments of queue {kind}: instance types, max vCPUs (JSON)"
        for kind in QUEUE_KINDS
    },
}


def reserved_keys(name: str) -> dict[str, str]:
    """The discovery keys of reservation `name`'s queue, with their descriptions."""
    kind = reserved_queue_kind(name)
    return {
        reserved_queue_key(name): f"Job queue: reserved capacity {name} (On-Demand, one reservation)",
        capacity_key(kind): f"Compute environment of queue {kind}: instance type, max vCPUs (JSON)",
    }


def is_key(key: str) -> bool:
    """A fixed key, or one of a reserved queue's keys."""
    for prefix in ("queue/", CAPACITY_PREFIX):
        if key.startswith(prefix + RESERVED_PREFIX):
            return is_reserved_kind(key.removeprefix(prefix))
    return key in KEYS
