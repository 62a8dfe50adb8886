"""Spot -> On-Demand fallback: resubmit a job that could not finish on Spot, once.

Triggered by an EventBridge rule on "Batch Job State Change" events with status FAILED from
the spot-first queue. A job is resubmitted to the on-demand queue when it came from the
spot-first queue, is not itself a fallback, and either

- was cancelled by the queue's job state time limit action for
  CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY (it waited too long for Spot capacity), or
- used up its attempts on Spot interruptions (every attempt ended with `Host EC2 ...` or
  the container's interrupted exit code 75, written after a final checkpoint).

The new job runs the same job definition with the same parameters, environment and run id, so
the container resumes from the run's last checkpoint. It is tagged and given an environment
variable with the old job id; the old job is tagged with the new job id (`bertbatch watch`
follows that tag). Anything else (own failures, timeouts, cancellations by a person, array
parents, multi-node jobs, jobs already resubmitted once) is logged and left alone.

Standard library, boto3 and `bertbatch_contract` (job variables, tags, exit codes, metric
names), which the Lambda asset carries beside this module.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bertbatch_contract import job as job_contract
from bertbatch_contract import metrics, prediction, runs
from bertbatch_contract.tags import TAG_FALLBACK_FROM, TAG_FALLBACK_TO, TAG_RUN_ID, TAG_TEAM
from bertbatch_contract.teams import DEFAULT_TEAM

# --- what AWS Batch writes ----------------------------------------------------------------
CAPACITY_REASON = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
# Job statusReason after the queue's jobStateTimeLimitActions cancelled it:
# "Canceled by JobStateTimeLimit action due to reason: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
TIME_LIMIT_ACTION_PREFIX = "Canceled by JobStateTimeLimit action"
# Attempt/job statusReason when the instance went away (Spot reclaim): "Host EC2 (instance i-...) terminated."
SPOT_RECLAIM_PREFIX = "Host EC2"
# Job statusReason when the last attempt's container exited on its own (here: with 75).
CONTAINER_EXITED_PREFIX = "Essential container in task exited"
MAX_JOB_NAME = 128
JOB_NAME_SUFFIX = "-on-demand"

# --- configuration from the stack (platform_constructs/fallback.py sets these) ----------------
ENV_SOURCE_QUEUE = "SOURCE_QUEUE_ARN"
ENV_TARGET_QUEUE = "TARGET_QUEUE_ARN"
ENV_METRICS_NAMESPACE = "METRICS_NAMESPACE"
ENV_METRIC_NAME = "METRIC_NAME"
ENV_PROFILE = "PROFILE"
DEFAULT_NAMESPACE = metrics.DEFAULT_NAMESPACE
DEFAULT_METRIC_NAME = metrics.FALLBACK_RESUBMISSIONS.name


@dataclass(frozen=True)
class Decision:
    resubmit: bool
    reason: str
    cause: str = ""  # "capacity" | "spot-interruptions" when resubmit


@dataclass
class Settings:
    source_queue: str
    target_queue: str
    namespace: str = DEFAULT_NAMESPACE
    metric_name: str = DEFAULT_METRIC_NAME
    profile: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            source_queue=env[ENV_SOURCE_QUEUE],
            target_queue=env[ENV_TARGET_QUEUE],
            namespace=env.get(ENV_METRICS_NAMESPACE, DEFAULT_NAMESPACE),
            metric_name=env.get(ENV_METRIC_NAME, DEFAULT_METRIC_NAME),
            profile=env.get(ENV_PROFILE, ""),
        )


@dataclass
class Resubmission:
    """The SubmitJob request for the On-Demand job, and the run id it carries."""

    request: dict[str, Any]
    run_id: str


# --- pure decisions -----------------------------------------------------------------------
def environment_of(job: Mapping[str, Any]) -> dict[str, str]:
    container = job.get("container") or {}
    return {e["name"]: e.get("value", "") for e in container.get("environment") or [] if "name" in e}


def _same_queue(a: str, b: str) -> bool:
    """Queue ARNs or names: compare by name (the part after `job-queue/`)."""
    return a.rsplit("/", 1)[-1] == b.rsplit("/", 1)[-1]


def is_interruption(attempt: Mapping[str, Any]) -> bool:
    """Spot reclaim (status reason `Host EC2 ...`) or the container's checkpoint-and-exit 75."""
    if str(attempt.get("statusReason") or "").startswith(SPOT_RECLAIM_PREFIX):
        return True
    exit_code = (attempt.get("container") or {}).get("exitCode")
    return bool(exit_code == job_contract.EXIT_INTERRUPTED)


def is_capacity_cancel(job: Mapping[str, Any]) -> bool:
    reason = str(job.get("statusReason") or "")
    return reason.startswith(TIME_LIMIT_ACTION_PREFIX) and CAPACITY_REASON in reason


def decide(job: Mapping[str, Any], settings: Settings) -> Decision:
    """Whether `job` (the event's detail: a DescribeJobs-shaped job) goes to On-Demand."""
    if job.get("status") != "FAILED":
        return Decision(False, f"status is {job.get('status')}, not FAILED")
    if not _same_queue(str(job.get("jobQueue", "")), settings.source_queue):
        return Decision(False, "not from the spot-first queue")
    tags = job.get("tags") or {}
    env = environment_of(job)
    if tags.get(TAG_FALLBACK_FROM) or env.get(job_contract.ENV_FALLBACK_FROM_JOB):
        return Decision(False, "already a fallback job: resubmitted at most once")
    if tags.get(TAG_FALLBACK_TO):
        return Decision(False, f"already resubmitted as {tags[TAG_FALLBACK_TO]}")
    if job.get("nodeProperties"):
        return Decision(False, "multi-node jobs do not run on Spot")
    array = job.get("arrayProperties") or {}
    if "size" in array and "index" not in array:
        return Decision(False, "array parent: its children fall back one by one")
    if is_capacity_cancel(job):
        return Decision(True, "cancelled after waiting for Spot capacity", cause="capacity")
    attempts = job.get("attempts") or []
    if not attempts:
        return Decision(False, f"no attempt ran and not a capacity cancel: {job.get('statusReason')!r}")
    if not all(is_interruption(a) for a in attempts):
        return Decision(False, "failed for its own reasons (an attempt ended other than by a Spot interruption)")
    reason = str(job.get("statusReason") or "")
    if not (reason.startswith(SPOT_RECLAIM_PREFIX) or reason.startswith(CONTAINER_EXITED_PREFIX)):
        # e.g. "Job attempt duration exceeded timeout" or a person's cancel/terminate reason
        return Decision(False, f"ended by {reason!r}, not by Spot interruptions")
    return Decision(True, f"all {len(attempts)} attempts were Spot interruptions", cause="spot-interruptions")


def _is_prediction(job: Mapping[str, Any]) -> bool:
    """A `bert-predict` job: its command starts with the predict subcommand."""
    command = (job.get("container") or {}).get("command") or []
    return bool(command) and command[0] == prediction.SUBCOMMAND


def build_resubmission(job: Mapping[str, Any], settings: Settings) -> Resubmission:
    """The SubmitJob request: same definition, parameters, environment, run id; On-Demand queue."""
    old_id = str(job["jobId"])
    env = {k: v for k, v in environment_of(job).items() if not k.startswith(job_contract.RESERVED_ENV_PREFIX)}
    parameters = {str(k): str(v) for k, v in (job.get("parameters") or {}).items()}
    # The container's run id: RUN_ID, else the Batch job id (so a job without one resumes too).
    run_id = env.get(job_contract.ENV_RUN_ID) or old_id
    array = job.get("arrayProperties") or {}
    if "index" in array:
        # One child of a sweep becomes a single job: its grid row becomes its parameters and
        # its run id is the child's (<RUN_ID>-<index>).
        index = int(array["index"])
        grid = env.pop(job_contract.ENV_GRID, "")
        if grid:
            rows = json.loads(grid)
            if 0 <= index < len(rows):
                parameters.update({str(k): str(v) for k, v in rows[index].items()})
        base = env.get(job_contract.ENV_RUN_ID) or old_id.split(":", 1)[0]
        run_id = runs.array_run_id(base, index)
        # A prediction shard scored shard $AWS_BATCH_JOB_ARRAY_INDEX; as a single job it is told.
        if _is_prediction(job):
            env.setdefault(job_contract.ENV_PREDICT_SHARD_INDEX, str(index))
    env[job_contract.ENV_RUN_ID] = run_id
    env[job_contract.ENV_FALLBACK_FROM_JOB] = old_id

    container = job.get("container") or {}
    overrides: dict[str, Any] = {
        "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
    }
    # Training: no command override: the job definition's command is `--flag Ref::name` pairs, so
    # the parameters above (an array child's grid row merged in) give the same flags. Prediction:
    # the CLI overrides the whole command for options without a parameter (--id-column...), so
    # the job's command is carried over as it ran.
    if _is_prediction(job):
        overrides["command"] = [str(arg) for arg in container.get("command") or []]
    requirements = [
        {"type": r["type"], "value": str(r["value"])}
        for r in container.get("resourceRequirements") or []
        if r.get("type") in ("GPU", "VCPU", "MEMORY")
    ]
    if requirements:
        overrides["resourceRequirements"] = requirements

    tags = {k: v for k, v in (job.get("tags") or {}).items() if not k.startswith("aws:")}
    tags[TAG_RUN_ID] = run_id
    tags[TAG_FALLBACK_FROM] = old_id

    name = str(job.get("jobName") or "job")
    name = name[: MAX_JOB_NAME - len(JOB_NAME_SUFFIX)] + JOB_NAME_SUFFIX
    request: dict[str, Any] = {
        "jobName": name,
        "jobQueue": settings.target_queue,
        "jobDefinition": job["jobDefinition"],
        "parameters": parameters,
        "containerOverrides": overrides,
        "tags": tags,
        "propagateTags": bool(job.get("propagateTags", True)),
        # Every queue schedules by fair share: the On-Demand job runs in the same team's share.
        "shareIdentifier": str(job.get("shareIdentifier") or tags.get(TAG_TEAM) or DEFAULT_TEAM),
    }
    timeout = (job.get("timeout") or {}).get("attemptDurationSeconds")
    if timeout:
        request["timeout"] = {"attemptDurationSeconds": int(timeout)}
    return Resubmission(request=request, run_id=run_id)


# --- log lines ----------------------------------------------------------------------------
def emf_line(settings: Settings, value: float = 1.0, *, timestamp_ms: int | None = None) -> str:
    """One Embedded Metric Format record for the resubmission count (bertbatch_contract.metrics)."""
    dimensions = {metrics.DIMENSION_PROFILE: settings.profile} if settings.profile else {}
    record = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": settings.namespace,
                    "Dimensions": [list(dimensions)] if dimensions else [[]],
                    "Metrics": [{"Name": settings.metric_name, "Unit": "Count"}],
                }
            ],
        },
        **dimensions,
        settings.metric_name: float(value),
    }
    return json.dumps(record, separators=(",", ":"))


def _log(**fields: Any) -> None:
    print(json.dumps(fields, separators=(",", ":"), default=str))


# --- the handler --------------------------------------------------------------------------
def make_client(service: str = "batch"):
    import boto3

    return boto3.client(service)


def handle(event: Mapping[str, Any], settings: Settings, batch: Any, emit: Callable[[str], None] = print) -> dict:
    job = dict(event.get("detail") or {})
    job_id = job.get("jobId")
    if job_id:
        # EventBridge delivers at least once: the job's current tags (not the event's copy)
        # say whether an earlier delivery already resubmitted it.
        current = batch.describe_jobs(jobs=[job_id]).get("jobs") or []
        if current and current[0].get("tags") is not None:
            job["tags"] = current[0]["tags"]
    decision = decide(job, settings)
    if not decision.resubmit:
        _log(action="skip", jobId=job_id, jobName=job.get("jobName"), reason=decision.reason)
        return {"action": "skip", "jobId": job_id, "reason": decision.reason}

    resubmission = build_resubmission(job, settings)
    response = batch.submit_job(**resubmission.request)
    new_id = response["jobId"]
    try:
        batch.tag_resource(resourceArn=job.get("jobArn") or _job_arn(job, settings), tags={TAG_FALLBACK_TO: new_id})
    except Exception as exc:  # the new job runs anyway; only `watch`'s link is missing
        _log(action="tag-failed", jobId=job_id, newJobId=new_id, error=str(exc))
    _log(
        action="resubmit",
        jobId=job_id,
        newJobId=new_id,
        runId=resubmission.run_id,
        cause=decision.cause,
        reason=decision.reason,
        queue=settings.target_queue,
    )
    emit(emf_line(settings))
    return {
        "action": "resubmit",
        "jobId": job_id,
        "newJobId": new_id,
        "runId": resubmission.run_id,
        "cause": decision.cause,
    }


def _job_arn(job: Mapping[str, Any], settings: Settings) -> str:
    """arn:<partition>:batch:<region>:<account>:job/<id>, from the queue ARN's prefix."""
    prefix = str(job.get("jobQueue") or settings.source_queue).split(":job-queue/", 1)[0]
    return f"{prefix}:job/{job['jobId']}"


def handler(event: Mapping[str, Any], context: Any = None) -> dict:
    return handle(event, Settings.from_env(), make_client("batch"))
