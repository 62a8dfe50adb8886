"""The cost ledger of a run: every attempt of every job that belonged to it, priced.

    cost of an attempt = (stoppedAt - startedAt) in hours x $/hour of its instance type and
                         purchase option (prices.json) x nodes
    cost of a run      = the sum over its jobs (Spot attempts, the On-Demand fallback, a later
                         resubmission with the same run name, the children of a sweep)

A run's jobs are found by name (jobs are named after their run id, the fallback keeps the name)
and kept when their run-id tag matches. The purchase option is the compute environment's
(`computeResources.type` SPOT or EC2); the environment is the one whose ECS cluster the
attempt's container instance belonged to, else the queue's first. Batch does not record an
attempt's instance type, so the ledger assumes the cheapest type of that environment that holds
the job (GPUs, vCPUs, memory) and says so: the real cost may be higher.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bertbatch_contract import runs, tags

from ..jobs import aws_batch as jobs
from ..jobs import queue_capacity as capacity
from .training_cost import load_table

SPOT, ON_DEMAND = "spot", "on-demand"
DESCRIBE_BATCH = 100  # DescribeJobs takes at most 100 ids
RUNNING_STATES = ("STARTING", "RUNNING")


@dataclass(frozen=True)
class Environment:
    """A compute environment as the ledger needs it."""

    name: str
    cluster: str  # ECS cluster name ("" when unknown)
    pricing: str  # SPOT or ON_DEMAND
    instance_types: tuple[str, ...]


@dataclass(frozen=True)
class Attempt:
    job_id: str
    number: int  # 1-based within its job
    started_ms: int
    stopped_ms: int | None  # None: still running (priced up to now)
    nodes: int
    environment: str | None
    pricing: str | None
    instance_type: str | None
    price_per_hour: float | None
    assumption: str | None  # what was assumed rather than known, or None

    @property
    def seconds(self) -> float:
        end = self.stopped_ms if self.stopped_ms is not None else int(time.time() * 1000)
        return max(0, end - self.started_ms) / 1000

    @property
    def cost(self) -> float | None:
        if self.price_per_hour is None:
            return None
        return self.seconds / 3600 * self.price_per_hour * self.nodes

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "attempt": self.number, "started_ms": self.started_ms,
            "stopped_ms": self.stopped_ms, "seconds": round(self.seconds, 3), "nodes": self.nodes,
            "environment": self.environment, "pricing": self.pricing, "instance_type": self.instance_type,
            "price_per_hour": self.price_per_hour, "cost": None if self.cost is None else round(self.cost, 6),
            "assumption": self.assumption,
        }


@dataclass
class Ledger:
    run_id: str
    attempts: list[Attempt] = field(default_factory=list)
    estimate: float | None = None  # the submit-time estimate (job tag), USD
    prices_as_of: str | None = None
    team: str | None = None  # the team of the run's newest job; None: no job, or none has a team

    @property
    def cost(self) -> float | None:
        """USD over every priced attempt; None when the run has no priced attempt."""
        priced = [a.cost for a in self.attempts if a.cost is not None]
        return sum(priced) if priced else None

    @property
    def unpriced(self) -> int:
        return sum(1 for a in self.attempts if a.cost is None)

    @property
    def seconds(self) -> float:
        return sum(a.seconds for a in self.attempts)


def format_cost(cost: float | None) -> str:
    return "-" if cost is None else f"${cost:,.2f}"


# --- reading the jobs ---------------------------------------------------------------------------
def describe_many(batch: Any, job_ids: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(job_ids), DESCRIBE_BATCH):
        out.extend(batch.describe_jobs(jobs=list(job_ids[i:i + DESCRIBE_BATCH])).get("jobs", []))
    return out


def job_names(run_id: str) -> list[str]:
    """Names a job of `run_id` can have: the run id, and for a sweep child <base>-<i> the sweep's."""
    names = [run_id]
    base, _, index = run_id.rpartition("-")
    if base and index.isdigit():
        names.append(base)
    return names


def jobs_named(batch: Any, queues: Iterable[str], name: str) -> list[dict[str, Any]]:
    """Every job called `name` on `queues`, described (with a filter ListJobs returns all states)."""
    ids: list[str] = []
    paginator = batch.get_paginator("list_jobs")
    for queue in queues:
        for page in paginator.paginate(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [name]}]):
            ids.extend(s["jobId"] for s in page.get("jobSummaryList", []) if s["jobId"] not in ids)
    return describe_many(batch, ids)


def array_children(batch: Any, parent: dict[str, Any], parent_tags: dict[str, str],
                   indexes: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Children <parent>:<i> described, with the sweep's tags and their index (a child's own
    tags and arrayProperties.index may be missing)."""
    size = int((parent.get("arrayProperties") or {}).get("size") or 0)
    wanted = list(range(size) if indexes is None else indexes)
    found = describe_many(batch, [f"{parent['jobId']}:{i}" for i in wanted])
    out = []
    for child in found:
        index = int(str(child["jobId"]).rsplit(":", 1)[1])
        properties = {"index": index, **(child.get("arrayProperties") or {})}
        out.append({**child, "tags": {**parent_tags, **(child.get("tags") or {})}, "arrayProperties": properties})
    return out


def run_jobs(batch: Any, queues: Iterable[str], run_id: str) -> list[dict[str, Any]]:
    """The jobs (array children rather than their parent) whose run id is `run_id` or, for a sweep
    id, one of its children: oldest first."""
    queues = list(queues)
    found: dict[str, dict[str, Any]] = {}
    for name in job_names(run_id):
        for job in jobs_named(batch, queues, name):
            job_tags = jobs.tags_of(batch, job)
            tag = job_tags.get(tags.TAG_RUN_ID)
            if (job.get("arrayProperties") or {}).get("size"):
                if tag == run_id:  # the sweep itself: every child
                    found.update((c["jobId"], c) for c in array_children(batch, job, job_tags))
                elif tag is not None and name != run_id:  # one child of the sweep
                    index = int(run_id.rpartition("-")[2])
                    if runs.array_run_id(tag, index) == run_id:
                        found.update((c["jobId"], c) for c in array_children(batch, job, job_tags, [index]))
            elif tag == run_id:
                found[job["jobId"]] = job
    return sorted(found.values(), key=lambda j: j.get("createdAt", 0))


# --- compute environments -----------------------------------------------------------------------
class Environments:
    """The compute environments behind each queue, read once per queue."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch
        self._by_queue: dict[str, list[Environment]] = {}

    def of_queue(self, queue: str) -> list[Environment]:
        if queue not in self._by_queue:
            self._by_queue[queue] = self._read(queue)
        return self._by_queue[queue]

    def _read(self, queue: str) -> list[Environment]:
        found = self.batch.describe_job_queues(jobQueues=[queue]).get("jobQueues", [])
        if not found:
            return []
        order = sorted(found[0].get("computeEnvironmentOrder", []), key=lambda o: o.get("order", 0))
        arns = [o["computeEnvironment"] for o in order]
        if not arns:
            return []
        described = {e["computeEnvironmentArn"]: e for e in self.batch.describe_compute_environments(
            computeEnvironments=arns).get("computeEnvironments", [])}
        out = []
        for arn in arns:
            env = described.get(arn)
            if env is None:
                continue
            resources = env.get("computeResources") or {}
            out.append(Environment(
                name=str(env.get("computeEnvironmentName") or arn.rsplit("/", 1)[-1]),
                cluster=str(env.get("ecsClusterArn") or "").rsplit("/", 1)[-1],
                pricing=SPOT if resources.get("type") in ("SPOT", "FARGATE_SPOT") else ON_DEMAND,
                instance_types=tuple(resources.get("instanceTypes") or ()),
            ))
        return out


def cluster_of(container: dict[str, Any]) -> str | None:
    """The ECS cluster of a container instance ARN (arn:...:container-instance/<cluster>/<id>)."""
    arn = str(container.get("containerInstanceArn") or "")
    parts = arn.split(":", 5)[-1].split("/") if arn else []
    return parts[1] if len(parts) == 3 else None


# --- pricing ------------------------------------------------------------------------------------
class Pricer:
    def __init__(self, prices: dict[str, Any] | None = None, table: dict[str, capacity.InstanceType] | None = None):
        self.prices = prices if prices is not None else load_table("prices.json")
        self.table = table if table is not None else capacity.instance_table()

    def price(self, instance_type: str, pricing: str) -> float | None:
        row = self.prices.get("instances", {}).get(instance_type) or {}
        value = row.get("spot" if pricing == SPOT else "on_demand")
        return None if value is None else float(value)

    def cheapest_holder(self, env: Environment, need: capacity.Need) -> str | None:
        known, _ = capacity.expand(env.instance_types, self.table)
        priced = [(p, t.name) for t in known if need.held_by(t) and (p := self.price(t.name, env.pricing)) is not None]
        return min(priced)[1] if priced else None


def need_of(job: dict[str, Any]) -> capacity.Need:
    container = job.get("container") or {}
    resources = jobs.resource_requirements({"containerProperties": job.get("container"),
                                            "nodeProperties": job.get("nodeProperties")})
    for key, legacy in (("VCPU", "vcpus"), ("MEMORY", "memory")):  # the older fields, where they are used
        if key not in resources and container.get(legacy):
            resources[key] = int(container[legacy])
    return capacity.Need(gpus=resources.get("GPU", 1), vcpus=resources.get("VCPU"),
                         memory_mib=resources.get("MEMORY"))


def timeline(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's attempts with a start: the finished ones, and the one in progress (Batch lists an
    attempt only once it ends; a job without attempts but with times counts as one)."""
    attempts = [a for a in job.get("attempts") or [] if a.get("startedAt")]
    started = job.get("startedAt")
    if started and job.get("status") in RUNNING_STATES and all(a["startedAt"] != started for a in attempts):
        attempts.append({"startedAt": started, "container": job.get("container") or {}})
    if not attempts and started:
        attempts.append({"startedAt": started, "stoppedAt": job.get("stoppedAt"), "container": job.get("container")})
    return attempts


def price_job(job: dict[str, Any], environments: Environments, pricer: Pricer) -> list[Attempt]:
    queue_envs = environments.of_queue(str(job.get("jobQueue") or ""))
    need = need_of(job)
    nodes = int((job.get("nodeProperties") or {}).get("numNodes") or 1)
    out = []
    for number, attempt in enumerate(timeline(job), start=1):
        assumed: list[str] = []
        cluster = cluster_of(attempt.get("container") or {})
        env = next((e for e in queue_envs if cluster and e.cluster == cluster), None)
        if env is None and queue_envs:
            env = queue_envs[0]
            assumed.append(f"ran in {env.name}, the queue's first environment (no container instance recorded)")
        itype = pricer.cheapest_holder(env, need) if env is not None else None
        if itype is not None and env is not None:
            assumed.append(f"{itype}: the cheapest type of {env.name} that holds {need.describe()}")
        out.append(Attempt(
            job_id=str(job["jobId"]), number=number, started_ms=int(attempt["startedAt"]),
            stopped_ms=int(attempt["stoppedAt"]) if attempt.get("stoppedAt") else None, nodes=nodes,
            environment=env.name if env else None, pricing=env.pricing if env else None, instance_type=itype,
            price_per_hour=pricer.price(itype, env.pricing) if itype and env else None,
            assumption="; ".join(assumed) or None,
        ))
    return out


def estimate_of(run_jobs_: Iterable[dict[str, Any]]) -> float | None:
    """The submit-time estimate: the newest job's tag (a resubmission records its own)."""
    for job in sorted(run_jobs_, key=lambda j: j.get("createdAt", 0), reverse=True):
        value = (job.get("tags") or {}).get(tags.TAG_COST_ESTIMATE)
        try:
            return float(value) if value else None
        except ValueError:
            return None
    return None


def team_of_run(run_jobs_: Sequence[dict[str, Any]]) -> str | None:
    """The newest job's team (a resubmission may run for another team than the first try)."""
    return next((team for job in reversed(run_jobs_) if (team := jobs.team_of(job)) is not None), None)


def ledger(batch: Any, queues: Iterable[str], run_id: str, *, pricer: Pricer | None = None,
           environments: Environments | None = None) -> Ledger:
    """The ledger of `run_id` from the jobs on `queues`."""
    pricer = pricer or Pricer()
    environments = environments or Environments(batch)
    found = run_jobs(batch, queues, run_id)
    attempts = [a for job in found for a in price_job(job, environments, pricer)]
    # A sweep's estimate covers every child: it is not the estimate of one child's run.
    child_of_sweep = any("index" in (j.get("arrayProperties") or {})
                         and (j.get("tags") or {}).get(tags.TAG_RUN_ID) != run_id for j in found)
    estimate = None if child_of_sweep else estimate_of(found)
    return Ledger(run_id=run_id, attempts=attempts, estimate=estimate,
                  prices_as_of=str(pricer.prices.get("as_of") or "") or None, team=team_of_run(found))


def sweep_ledgers(batch: Any, queues: Iterable[str], sweep_id: str, *, pricer: Pricer | None = None,
                  environments: Environments | None = None) -> dict[str, Ledger]:
    """Child run id -> its ledger, for every child of the sweep `sweep_id` found on `queues`."""
    pricer = pricer or Pricer()
    environments = environments or Environments(batch)
    out: dict[str, Ledger] = {}
    as_of = str(pricer.prices.get("as_of") or "") or None
    for job in run_jobs(batch, queues, sweep_id):
        child = jobs.run_id_of(job)
        if child is None or child == sweep_id:
            continue
        entry = out.setdefault(child, Ledger(run_id=child, prices_as_of=as_of))
        entry.attempts.extend(price_job(job, environments, pricer))
        entry.team = jobs.team_of(job) or entry.team
    return out
