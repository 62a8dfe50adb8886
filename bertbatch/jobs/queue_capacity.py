"""What a queue can place: its compute environments' instance types and vCPU caps, against the
instance-type table (`data/instance_types.json`).

A job no instance type of its queue can hold waits in RUNNABLE until the queue's time-limit
action cancels it, so `submit` refuses it first and `estimate` does not recommend it. Only a
certain "no" refuses: an instance type missing from the table (or "optimal") is not checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bertbatch_contract import discovery
from bertbatch_contract.discovery import ComputeCapacity

from ..core.errors import BertBatchError
from ..core.session import Session
from ..cost.training_cost import Option, load_table
from .aws_batch import queue_kind_of

MULTI_NODE = "multi-node"


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: str
    gpus: int
    vcpus: int
    memory_mib: int

    def describe(self) -> str:
        return f"{self.name} ({plural(self.gpus, 'GPU')}, {self.vcpus} vCPUs, {self.memory_mib} MiB)"


@dataclass(frozen=True)
class Need:
    """What one node of a job asks for; None: not known (not checked)."""

    gpus: int
    vcpus: int | None = None
    memory_mib: int | None = None

    def describe(self) -> str:
        parts = [plural(self.gpus, "GPU")]
        if self.vcpus is not None:
            parts.append(f"{self.vcpus} vCPUs")
        if self.memory_mib is not None:
            parts.append(f"{self.memory_mib} MiB")
        return ", ".join(parts)

    def held_by(self, t: InstanceType) -> bool:
        return (t.gpus >= self.gpus and (self.vcpus is None or t.vcpus >= self.vcpus)
                and (self.memory_mib is None or t.memory_mib >= self.memory_mib))


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def instance_table() -> dict[str, InstanceType]:
    table = load_table("instance_types.json")
    return {name: InstanceType(name=name, gpu=str(row["gpu"]), gpus=int(row["gpus"]), vcpus=int(row["vcpus"]),
                               memory_mib=int(row["memory_mib"]))
            for name, row in table["instances"].items()}


def expand(instance_types: Sequence[str], table: dict[str, InstanceType]) -> tuple[list[InstanceType], bool]:
    """(the known types, whether some were not known). A family ("g5") means every size of it
    in the table, as it does to Batch."""
    known: list[InstanceType] = []
    unknown = False
    for name in instance_types:
        if name in table:
            known.append(table[name])
        elif "." not in name and any(t.startswith(name + ".") for t in table):
            known.extend(t for key, t in table.items() if key.startswith(name + "."))
        else:
            unknown = True
    return known, unknown


# --- the config keys a user changes --------------------------------------------------------------
def types_key(queue_kind: str) -> str:
    if discovery.is_reserved_kind(queue_kind):
        return f"training.reservations.{queue_kind.removeprefix(discovery.RESERVED_PREFIX)}.instance_type"
    return "training.multinode_instance_types" if queue_kind == MULTI_NODE else "training.gpu_instance_types"


def vcpus_key(queue_kind: str, environment: ComputeCapacity) -> str:
    if discovery.is_reserved_kind(queue_kind):
        return f"training.reservations.{queue_kind.removeprefix(discovery.RESERVED_PREFIX)}.max_vcpus"
    if queue_kind == MULTI_NODE:
        return "training.multinode_max_vcpus"
    return "training.spot_max_vcpus" if environment.spot else "training.on_demand_max_vcpus"


# --- reading a queue's capacity ------------------------------------------------------------------
def read(session: Session, queue_kind: str, queue: str) -> list[ComputeCapacity] | None:
    """The compute environments behind `queue`: from SSM `capacity/<queue-kind>`, else from
    DescribeComputeEnvironments; None when neither says (unmanaged environments)."""
    key = discovery.capacity_key(queue_kind)
    value = session.deployment.values.get(key)
    if value:
        try:
            return discovery.parse_capacity(value)
        except ValueError as exc:
            raise BertBatchError(
                f"SSM parameter {session.naming.parameter(key)}: {exc}: redeploy the Training stack"
            ) from None
    return described(session.client("batch"), queue)


def described(batch: Any, queue: str) -> list[ComputeCapacity] | None:
    queues = batch.describe_job_queues(jobQueues=[queue]).get("jobQueues", [])
    if not queues:
        return None
    order = sorted(queues[0].get("computeEnvironmentOrder", []), key=lambda o: o.get("order", 0))
    arns = [o["computeEnvironment"] for o in order]
    if not arns:
        return None
    found = {e["computeEnvironmentArn"]: e
             for e in batch.describe_compute_environments(computeEnvironments=arns).get("computeEnvironments", [])}
    environments = []
    for arn in arns:
        resources = (found.get(arn) or {}).get("computeResources")
        if not resources or not resources.get("instanceTypes"):
            return None  # unmanaged or Fargate: nothing to check against
        environments.append(ComputeCapacity(
            name=found[arn]["computeEnvironmentName"], instance_types=tuple(resources["instanceTypes"]),
            max_vcpus=int(resources.get("maxvCpus", 0)), spot=resources.get("type") in ("SPOT", "FARGATE_SPOT"),
        ))
    return environments


# --- placing a job --------------------------------------------------------------------------------
def check(*, queue_kind: str, queue: str, environments: Sequence[ComputeCapacity], need: Need, nodes: int = 1,
          table: dict[str, InstanceType] | None = None) -> None:
    """BertBatchError with one line when no environment of `queue` can ever place the job:
    naming the queue, the request, the largest instance available and the config key to change."""
    table = instance_table() if table is None else table
    refusals: list[str] = []
    largest: InstanceType | None = None
    for env in environments:
        known, unknown = expand(env.instance_types, table)
        if unknown:
            return  # a type we do not know might hold it
        for t in known:
            if largest is None or (t.gpus, t.vcpus, t.memory_mib) > (largest.gpus, largest.vcpus, largest.memory_mib):
                largest = t
        holders = sorted((t for t in known if need.held_by(t)), key=lambda t: (t.vcpus, t.memory_mib))
        within = [t for t in holders if t.vcpus <= env.max_vcpus]
        if holders and not within:
            refusals.append(f"{holders[0].name} holds it but has {holders[0].vcpus} vCPUs, over the "
                            f"{env.max_vcpus}-vCPU cap of {env.name}: raise {vcpus_key(queue_kind, env)}")
            continue
        if not within:
            continue
        smallest = within[0]
        if nodes * smallest.vcpus <= env.max_vcpus:
            return
        refusals.append(
            f"each node takes a {smallest.name} ({smallest.vcpus} vCPUs), {nodes * smallest.vcpus} vCPUs in all, "
            f"over the {env.max_vcpus}-vCPU cap of {env.name} (at most {env.max_vcpus // smallest.vcpus} nodes): "
            f"raise {vcpus_key(queue_kind, env)}"
        )
    what = f"{plural(nodes, 'node')} of {need.describe()}" if nodes > 1 else need.describe()
    if refusals:
        raise BertBatchError(f"queue {queue} cannot place {what}: {refusals[0]}")
    biggest = f"its largest instance type is {largest.describe()}" if largest else "it has no instance types"
    raise BertBatchError(f"queue {queue} cannot place {what}: {biggest}; "
                         f"add an instance type that holds it to {types_key(queue_kind)}")


@dataclass(frozen=True)
class Placement:
    """Whether a queue can run a job on one instance type: None when not known."""

    placeable: bool | None
    change: str | None = None  # the config change that would make it placeable


def placement(*, queue_kind: str, environments: Sequence[ComputeCapacity] | None, instance_type: str,
              nodes: int = 1, table: dict[str, InstanceType]) -> Placement:
    """Can `queue_kind` launch `nodes` x `instance_type` (for `estimate`)?"""
    if environments is None or instance_type not in table:
        return Placement(None)
    t = table[instance_type]
    change: str | None = None
    for env in environments:
        known, unknown = expand(env.instance_types, table)
        if unknown:
            return Placement(None)
        if t not in known:
            continue
        if nodes * t.vcpus <= env.max_vcpus:
            return Placement(True)
        change = change or f"raise {vcpus_key(queue_kind, env)} to {nodes * t.vcpus}"
    return Placement(False, change or f"add {instance_type} to {types_key(queue_kind)}")


def with_placement(session: Session, options: list[Option]) -> list[Option]:
    """Each estimate option marked placeable or not on the queue that would run it (the
    profile's capacity, read once per queue)."""
    table = instance_table()
    environments = {key: read(session, _queue_kind(key), session.get(key)) for key in {o.queue for o in options}}
    out = []
    for o in options:
        p = placement(queue_kind=_queue_kind(o.queue), environments=environments[o.queue],
                      instance_type=o.instance_type, nodes=o.nodes, table=table)
        out.append(dataclasses.replace(o, placeable=p.placeable, change=p.change))
    return out


def _queue_kind(queue_key: str) -> str:
    """spot-first for the discovery key of the spot-first queue."""
    return queue_kind_of(queue_key)
