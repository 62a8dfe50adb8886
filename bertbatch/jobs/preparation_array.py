"""`bertbatch prepare` on the platform: one array job on the `prepare` queue (Spot CPUs), child i
tokenizing its group of input files (`store.child_files`), then one job that depends on the
whole array and merges the children's partial manifests into `manifest.json` (`--merge`).

Before anything is submitted: the input files are listed (the container's rules: data
extensions, no hidden or `_` names), every flag is checked by the contract's table, the model
resolves to a staged copy, and the time and cost are estimated from the input's size, the
measured preparation rate (`store.PREPARE_MB_PER_SECOND_PER_CORE`), the job definition's vCPUs,
the environment's vCPU cap and the Spot prices of its instance types (`data/prices.json`,
`cpu_instances`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bertbatch_contract import discovery, layout, store, tables

from ..core.errors import BertBatchError
from ..core.session import Session
from ..cost.training_cost import load_table
from . import aws_batch as jobs
from . import preparation_process as local_prepare

DEFAULT_MAX_CHILDREN = 1000  # one per input file up to this; more files share children
# `submit --train` of data files (read whole, tokenized in memory on every rank: about 60 times
# their size) is refused past this size: a 16 GiB GPU instance holds about 200 MB.
MAX_RAW_TRAIN_BYTES = 200 * 10**6
# The first children wait for instances (launch, image pull); later ones start on the same
# instances with the image cached: the container and the tokenizer only.
INSTANCE_START_SECONDS = 240
CHILD_START_SECONDS = 30


@dataclass(frozen=True)
class InputFile:
    uri: str
    size: int


def list_input(s3: Any, uri: str) -> list[InputFile]:
    """The data files at an s3:// URI (one object, or the objects under a prefix), as the
    container lists them; BertBatchError naming the URI when there are none."""
    bucket, key = jobs.parse_s3_uri(uri)
    if tables.data_format(key) is not None:
        jobs.check_s3_object(s3, "--input", uri)
        size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        return [InputFile(uri, int(size))]
    prefix = key if key.endswith("/") else key + "/"
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"].rsplit("/", 1)[-1]
            if not name.startswith((".", "_")) and tables.data_format(name) is not None:
                found.append(InputFile(layout.s3_uri(bucket, item["Key"]), int(item["Size"])))
    if not found:
        raise BertBatchError(f"--input {uri}: no data files (expected names ending in {tables.extensions()})")
    return sorted(found, key=lambda f: f.uri)


def text_bytes(files: list[InputFile]) -> int:
    """The input's size as text (compressed and Parquet files count `COMPRESSED_TEXT_RATIO` times)."""
    total = 0.0
    for f in files:
        kind = tables.data_format(f.uri)
        packed = kind is not None and (kind.compression or kind.fmt == "parquet")
        total += f.size * (store.COMPRESSED_TEXT_RATIO if packed else 1.0)
    return int(total)


@dataclass(frozen=True)
class Capacity:
    """What one child gets and how many run at once, and the cheapest Spot price of a vCPU."""

    vcpus_per_child: int
    max_vcpus: int
    spot_usd_per_vcpu_hour: float | None

    @property
    def concurrent(self) -> int:
        return max(self.max_vcpus // self.vcpus_per_child, 1)


def capacity(session: Session) -> Capacity:
    """From the deployment: the job definition's vCPUs, the queue's environment (vCPU cap and
    instance types) and the Spot prices of those types."""
    batch = session.client("batch")
    (definition,) = batch.describe_job_definitions(
        jobDefinitions=[session.get(discovery.JOB_DEFINITION_PREPARE)])["jobDefinitions"]
    requirements = {r["type"]: r["value"] for r in definition["containerProperties"].get("resourceRequirements", [])}
    vcpus = int(requirements.get("VCPU", definition["containerProperties"].get("vcpus", 1)))
    (queue,) = batch.describe_job_queues(jobQueues=[session.get(discovery.QUEUE_PREPARE)])["jobQueues"]
    arns = [e["computeEnvironment"] for e in queue["computeEnvironmentOrder"]]
    environments = batch.describe_compute_environments(computeEnvironments=arns)["computeEnvironments"]
    max_vcpus = sum(int(e["computeResources"]["maxvCpus"]) for e in environments)
    types = {t for e in environments for t in e["computeResources"].get("instanceTypes", [])}
    prices = load_table("prices.json").get("cpu_instances", {})
    per_vcpu = [p["spot"] / p["vcpus"] for t, p in prices.items() if t in types]
    return Capacity(vcpus_per_child=vcpus, max_vcpus=max_vcpus, spot_usd_per_vcpu_hour=min(per_vcpu, default=None))


def estimate_line(files: list[InputFile], children: int, cap: Capacity) -> str:
    size = text_bytes(files)
    work = size / 1e6 / (store.PREPARE_MB_PER_SECOND_PER_CORE * cap.vcpus_per_child)  # seconds of one child
    at_once = min(children, cap.concurrent)
    child_seconds = work + children * CHILD_START_SECONDS + at_once * INSTANCE_START_SECONDS
    wall = work / at_once + INSTANCE_START_SECONDS + math.ceil(children / at_once) * CHILD_START_SECONDS
    cost = ("" if cap.spot_usd_per_vcpu_hour is None else
            f", about ${child_seconds / 3600 * cap.vcpus_per_child * cap.spot_usd_per_vcpu_hour:,.2f} of Spot CPU")
    return (f"Preparing {len(files)} file(s), about {size / 1e6:,.1f} MB of text, in {children} child(ren) of "
            f"{cap.vcpus_per_child} vCPUs, {at_once} at a time: estimated {local_prepare.duration(wall)}{cost} "
            f"(at {store.PREPARE_MB_PER_SECOND_PER_CORE:g} MB/s per vCPU, {INSTANCE_START_SECONDS // 60} min for "
            f"the instances to start)")


def default_store(data_bucket: str, input_uri: str, values: Mapping[str, str]) -> str:
    """s3://<data>/datasets/prepared/<input name>-<key>/: one store per input and settings."""
    return layout.s3_uri(data_bucket, layout.prepared_prefix(local_prepare.store_name(input_uri, values)))


@dataclass(frozen=True)
class Submission:
    """The two SubmitJob requests: the array of children, then the merge (its dependency is the
    array's job id, known once the array is submitted)."""

    children: int
    values: dict[str, str]
    queue: str
    job_definition: str
    name: str
    team: str

    def children_request(self) -> dict[str, Any]:
        request: dict[str, Any] = {
            "jobName": f"{self.name}-prepare", "jobQueue": self.queue, "jobDefinition": self.job_definition,
            "containerOverrides": {"command": store.command(self._typed(), merge=False)
                                   + [store.BY_NAME["num_children"].flag, str(self.children)]},
            "propagateTags": True,
        }
        if self.children > 1:  # Batch sets AWS_BATCH_JOB_ARRAY_INDEX in each child
            request["arrayProperties"] = {"size": self.children}
        return jobs.for_team(request, self.team)

    def merge_request(self, children_job_id: str) -> dict[str, Any]:
        return jobs.for_team({
            "jobName": f"{self.name}-merge", "jobQueue": self.queue, "jobDefinition": self.job_definition,
            "dependsOn": [{"jobId": children_job_id}],  # after every child of the array succeeded
            "containerOverrides": {"command": store.command(self._typed(), merge=True)
                                   + [store.BY_NAME["num_children"].flag, str(self.children)]},
            "propagateTags": True,
        }, self.team)

    def _typed(self) -> dict[str, Any]:
        return dict(store.validate(self.values))


def job_name(input_uri: str) -> str:
    """A Batch job name from the input's last path segment (letters, digits, - and _; 100 at most)."""
    base = input_uri.rstrip("/").rsplit("/", 1)[-1].split(".")[0] or "data"
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in base)
    return clean[:100] or "data"
