"""AWS Batch side of the CLI: build and submit jobs, describe, list, cancel, follow fallbacks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from bertbatch_contract import discovery, layout, runs, tags, teams
from bertbatch_contract import job as job_env

from ..core.aws_clients import NOT_FOUND_CODES, error_code
from ..core.errors import BertBatchError

ACTIVE_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
TERMINAL_STATES = ("SUCCEEDED", "FAILED")
ALL_STATES = ACTIVE_STATES + TERMINAL_STATES
BEFORE_START = ("SUBMITTED", "PENDING", "RUNNABLE")  # cancel_job; later states need terminate_job

QUEUE_KEYS = {
    "spot-first": discovery.QUEUE_SPOT_FIRST,
    "on-demand": discovery.QUEUE_ON_DEMAND,
    "multi-node": discovery.QUEUE_MULTI_NODE,
    "prepare": discovery.QUEUE_PREPARE,  # data preparation (Spot CPUs)
}


# --- S3 inputs ----------------------------------------------------------------------------------
def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(uri)
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def resolve_input(flag: str, value: str, data_bucket: str, fsx_mount_path: str | None = None) -> str:
    """s3://... as given; a bare key like sst2/train.tsv means s3://<data-bucket>/datasets/sst2/train.tsv;
    a path under the FSx mount (/fsx/...) as given when the profile has FSx."""
    if value.startswith("s3://"):
        bucket, key = parse_s3_uri(value)
        if not bucket or not key:
            raise BertBatchError(f"{flag} {value}: expected s3://bucket/key")
        return value
    if value.startswith("/") and is_fsx_path(value, fsx_mount_path or "/fsx"):
        if fsx_mount_path is None:
            datasets = layout.s3_uri(data_bucket, layout.DATASETS_PREFIX)
            raise BertBatchError(f"{flag} {value}: this profile has no FSx file system (fsx/mount-path is none): "
                                 f"use an s3:// URI or a key under {datasets}")
        return value
    if "://" in value or value.startswith("/"):
        where = f", a path under {fsx_mount_path}/" if fsx_mount_path else ""
        raise BertBatchError(
            f"{flag} {value}: use an s3:// URI{where} or a key under "
            f"{layout.s3_uri(data_bucket, layout.DATASETS_PREFIX)}"
        )
    return layout.s3_uri(data_bucket, layout.DATASETS_PREFIX + value.removeprefix("./"))


def is_fsx_path(path: str, mount_path: str) -> bool:
    mount = mount_path.rstrip("/")
    return path.startswith(mount + "/") and ".." not in path.split("/") and len(path) > len(mount) + 1


def fsx_s3_counterpart(path: str, mount_path: str, data_bucket: str) -> str | None:
    """The data-bucket object an FSx path mirrors (<mount>/datasets/... <-> s3://<data>/datasets/...),
    or None for a path outside the linked datasets/ directory."""
    rel = path[len(mount_path.rstrip("/")) + 1:]
    if not rel.startswith(layout.DATASETS_PREFIX) or rel == layout.DATASETS_PREFIX:
        return None
    return layout.s3_uri(data_bucket, rel)


def check_s3_object(s3: Any, flag: str, uri: str) -> None:
    """Fail with one line unless the object (or, for a URI ending in '/', the prefix) exists."""
    bucket, key = parse_s3_uri(uri)
    try:
        if key.endswith("/"):
            resp = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
            if resp.get("KeyCount", 0) == 0:
                raise BertBatchError(f"{flag} {uri}: no objects under this prefix")
            return
        s3.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        raise_s3_error(exc, flag, uri)
        raise


def raise_s3_error(exc: botocore.exceptions.ClientError, flag: str, uri: str) -> None:
    """One line for the S3 errors a user can fix (missing object or bucket, no access); returns
    for any other error, which the caller re-raises."""
    code = error_code(exc)
    if code in NOT_FOUND_CODES:
        raise BertBatchError(f"{flag} {uri}: no such object") from None
    if code == "NoSuchBucket":
        raise BertBatchError(f"{flag} {uri}: no such bucket") from None
    if code in ("403", "AccessDenied", "Forbidden"):
        raise BertBatchError(f"{flag} {uri}: access denied") from None


# --- submit -----------------------------------------------------------------------------------
def for_team(request: dict[str, Any], team: str) -> dict[str, Any]:
    """`request` scheduled under `team`'s fair share and tagged with it (every queue has a
    fair-share policy, so a SubmitJob without a share identifier is refused)."""
    return {**request, "shareIdentifier": team, "tags": {**request.get("tags", {}), tags.TAG_TEAM: team}}


@dataclass
class SubmitPlan:
    run_id: str
    queue: str
    job_definition: str
    parameters: dict[str, str]  # Ref:: name -> value
    environment: dict[str, str] = field(default_factory=dict)
    gpus: int | None = None
    nodes: int = 1
    array_size: int | None = None
    timeout_seconds: int | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    team: str = teams.DEFAULT_TEAM

    def request(self) -> dict[str, Any]:
        """Keyword arguments of batch.submit_job."""
        env = [{"name": job_env.ENV_RUN_ID, "value": self.run_id}]
        env += [{"name": k, "value": v} for k, v in sorted(self.environment.items())]
        overrides: dict[str, Any] = {"environment": env}
        if self.gpus is not None:
            overrides["resourceRequirements"] = [{"type": "GPU", "value": str(self.gpus)}]
        req: dict[str, Any] = {
            "jobName": self.run_id,
            "jobQueue": self.queue,
            "jobDefinition": self.job_definition,
            "parameters": dict(self.parameters),
            "tags": {**self.extra_tags, tags.TAG_RUN_ID: self.run_id},
            "propagateTags": True,
        }
        if self.nodes > 1:
            req["nodeOverrides"] = {
                "numNodes": self.nodes,
                "nodePropertyOverrides": [{"targetNodes": "0:", "containerOverrides": overrides}],
            }
        else:
            req["containerOverrides"] = overrides
        if self.array_size:
            req["arrayProperties"] = {"size": self.array_size}
        if self.timeout_seconds:
            req["timeout"] = {"attemptDurationSeconds": self.timeout_seconds}
        return for_team(req, self.team)


def queue_kind_of(queue_key: str) -> str:
    """The queue kind of a queue's discovery key: spot-first for `queue/spot-first`,
    reserved/p5 for `queue/reserved/p5`."""
    if queue_key.startswith("queue/" + discovery.RESERVED_PREFIX):
        return queue_key.removeprefix("queue/")
    return next(kind for kind, key in QUEUE_KEYS.items() if key == queue_key)


def choose_queue(nodes: int, on_demand: bool, reservation: str | None = None) -> tuple[str, str]:
    """(queue key, job definition key) for the requested shape; on a reservation's queue when
    one is named (its environment holds any shape its instance type does)."""
    if reservation is not None:
        definition = discovery.JOB_DEFINITION_MULTI_NODE if nodes > 1 else discovery.JOB_DEFINITION_SINGLE
        return discovery.reserved_queue_key(reservation), definition
    if nodes > 1:
        return discovery.QUEUE_MULTI_NODE, discovery.JOB_DEFINITION_MULTI_NODE
    if on_demand:
        return discovery.QUEUE_ON_DEMAND, discovery.JOB_DEFINITION_SINGLE
    return discovery.QUEUE_SPOT_FIRST, discovery.JOB_DEFINITION_SINGLE


def describe_job_definition(batch: Any, job_definition: str) -> dict[str, Any]:
    """The newest active revision of a job definition (ARN or name[:revision])."""
    if job_definition.startswith("arn:"):
        resp = batch.describe_job_definitions(jobDefinitions=[job_definition])
    else:
        resp = batch.describe_job_definitions(jobDefinitionName=job_definition.split(":")[0], status="ACTIVE")
    defs = sorted(resp.get("jobDefinitions", []), key=lambda d: d.get("revision", 0))
    if not defs:
        raise BertBatchError(f"job definition {job_definition} not found: redeploy the Training stack")
    return dict(defs[-1])


def job_definition_parameters(batch: Any, job_definition: str) -> dict[str, str]:
    """Default Ref:: parameters of a job definition (ARN or name[:revision])."""
    return dict(describe_job_definition(batch, job_definition).get("parameters") or {})


def resource_requirements(definition: dict[str, Any]) -> dict[str, int]:
    """GPU, VCPU and MEMORY (MiB) per node of a job definition, those it states."""
    container = definition.get("containerProperties")
    if container is None:
        ranges = (definition.get("nodeProperties") or {}).get("nodeRangeProperties") or [{}]
        container = ranges[0].get("container") or {}
    out: dict[str, int] = {}
    for item in container.get("resourceRequirements") or []:
        try:
            out[str(item["type"])] = int(float(item["value"]))
        except (KeyError, ValueError):
            continue
    return out


def console_url(region: str, job_id: str) -> str:
    return f"https://{region}.console.aws.amazon.com/batch/home?region={region}#jobs/detail/{job_id}"


# --- describe / follow ------------------------------------------------------------------------
def describe(batch: Any, job_id: str) -> dict[str, Any]:
    try:
        jobs: list[dict[str, Any]] = batch.describe_jobs(jobs=[job_id]).get("jobs", [])
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) in ("ClientException", "InvalidParameterValueException"):
            jobs = []
        else:
            raise
    if not jobs:
        raise BertBatchError(f"no such job: {job_id} (in {batch.meta.region_name})")
    return jobs[0]


def tags_of(batch: Any, job: dict[str, Any]) -> dict[str, str]:
    found = job.get("tags")
    if found is None:
        found = batch.list_tags_for_resource(resourceArn=job["jobArn"]).get("tags", {})
    return dict(found or {})


def fresh_tags(batch: Any, job: dict[str, Any]) -> dict[str, str]:
    """Tags read now (the fallback handler adds TAG_FALLBACK_TO after the job failed)."""
    return dict(batch.list_tags_for_resource(resourceArn=job["jobArn"]).get("tags", {}) or {})


def fallback_target(batch: Any, job: dict[str, Any]) -> str | None:
    return fresh_tags(batch, job).get(tags.TAG_FALLBACK_TO) or None


def latest_in_chain(batch: Any, job: dict[str, Any], *, limit: int = 10) -> dict[str, Any]:
    """Follow TAG_FALLBACK_TO from `job` to the job that replaced it (if any)."""
    for _ in range(limit):
        target = fallback_target(batch, job) if job.get("status") == "FAILED" else None
        if not target:
            return job
        job = describe(batch, target)
    return job


def environment_of(job: dict[str, Any]) -> dict[str, str]:
    container = job.get("container") or {}
    env = container.get("environment") or []
    if not env:
        for rng in (job.get("nodeProperties") or {}).get("nodeRangeProperties", []):
            env = (rng.get("container") or {}).get("environment") or []
            if env:
                break
    return {e["name"]: e["value"] for e in env}


def run_id_of(job: dict[str, Any]) -> str | None:
    run_id: str | None = (job.get("tags") or {}).get(tags.TAG_RUN_ID) or environment_of(job).get(job_env.ENV_RUN_ID)
    if run_id and "arrayProperties" in job and "index" in job["arrayProperties"]:
        return runs.array_run_id(run_id, job["arrayProperties"]["index"])
    return run_id


def team_of(job: dict[str, Any], job_tags: dict[str, str] | None = None) -> str | None:
    """The team a job ran for: its bert-batch:team tag, else its fair-share identifier; None for a
    job from before fair share (the CLI shows "-": which team it was is not recorded)."""
    found = (job_tags if job_tags is not None else job.get("tags") or {}).get(tags.TAG_TEAM)
    return found or job.get("shareIdentifier") or None


def queue_name(job: dict[str, Any]) -> str:
    return str(job.get("jobQueue") or "").rsplit("/", 1)[-1]


def log_streams(batch: Any, job: dict[str, Any]) -> list[str]:
    """Log streams of a job in attempt order (retries after Spot interruptions have their own)."""
    streams: list[str] = []
    for attempt in job.get("attempts") or []:
        name = (attempt.get("container") or {}).get("logStreamName")
        if name and name not in streams:
            streams.append(name)
    name = (job.get("container") or {}).get("logStreamName")
    if name and name not in streams:
        streams.append(name)
    if not streams and job.get("nodeProperties") and "#" not in job["jobId"]:
        main = job["nodeProperties"].get("mainNode", 0)
        try:
            node = describe(batch, f"{job['jobId']}#{main}")
        except BertBatchError:
            return []
        return log_streams(batch, node)
    return streams


# --- list / cancel ----------------------------------------------------------------------------
def list_jobs(batch: Any, queues: list[str], states: list[str]) -> list[dict[str, Any]]:
    """Job summaries of `queues` in `states`, newest first."""
    out: dict[str, dict[str, Any]] = {}
    paginator = batch.get_paginator("list_jobs")
    for queue in queues:
        for state in states:
            for page in paginator.paginate(jobQueue=queue, jobStatus=state):
                for summary in page.get("jobSummaryList", []):
                    summary = dict(summary)
                    summary["_queue"] = queue
                    out[summary["jobId"]] = summary
    return sorted(out.values(), key=lambda s: s.get("createdAt", 0), reverse=True)


def cancel(batch: Any, job: dict[str, Any], reason: str) -> str:
    """Cancel a job that has not started, terminate one that has. Returns what was done."""
    state = job["status"]
    if state in TERMINAL_STATES:
        return "nothing"
    # An array parent stays PENDING while its children run: TerminateJob stops running children
    # and cancels the ones not started yet.
    is_array_parent = bool((job.get("arrayProperties") or {}).get("size"))
    if state in BEFORE_START and not is_array_parent:
        batch.cancel_job(jobId=job["jobId"], reason=reason)
        return "cancelled"
    batch.terminate_job(jobId=job["jobId"], reason=reason)
    return "terminated"


def dumps(job: dict[str, Any]) -> str:
    return json.dumps(job, indent=2, default=str, sort_keys=True)
