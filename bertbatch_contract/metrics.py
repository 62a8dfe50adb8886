"""The metrics contract: one place for the CloudWatch namespace, metric names and dimensions.

The container emits these as Embedded Metric Format (EMF) lines on stdout; the awslogs driver
ships them and CloudWatch turns them into metrics, so the training loop makes no API call.
The Monitoring stack builds its dashboard and alarms from the same names, and a test keeps the
two in sync. Pure Python: imported by the CDK app and the CLI without torch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Default namespace; the job definition passes the configured one in METRICS_NAMESPACE.
DEFAULT_NAMESPACE = "BertBatch"

# Every metric is published twice: aggregated per profile (dashboards, alarms) and per run
# (drill-down). Dimension values come from the job environment.
DIMENSION_PROFILE = "Profile"
DIMENSION_RUN_ID = "RunId"
DIMENSION_SETS: tuple[tuple[str, ...], ...] = (
    (DIMENSION_PROFILE,),
    (DIMENSION_PROFILE, DIMENSION_RUN_ID),
)


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # a CloudWatch unit name
    description: str


TRAIN_LOSS = Metric("TrainLoss", "None", "Training loss averaged over the last logging window")
EVAL_ACCURACY = Metric("EvalAccuracy", "None", "Accuracy on the eval set, 0..1, each epoch")
EVAL_F1 = Metric("EvalF1", "None", "Macro-F1 on the eval set, 0..1, each epoch")
SAMPLES_PER_SECOND = Metric("SamplesPerSecond", "Count/Second", "Training samples per second, all ranks")
TOKENS_PER_SECOND = Metric("TokensPerSecond", "Count/Second", "Non-padding tokens per second, all ranks")
GPU_UTILIZATION = Metric("GpuUtilization", "Percent", "GPU utilization of rank 0's device")
GPU_MEMORY_USED = Metric("GpuMemoryUsed", "Megabytes", "Peak GPU memory allocated by rank 0")
# 0..1, from real tokens/s and the GPU's dense peak (bertbatch_contract.efficiency); GPUs only.
MODEL_FLOPS_UTILIZATION = Metric("ModelFlopsUtilization", "None",
                                 "Model FLOPs utilization: achieved model FLOPs/s over the GPUs' dense peak, 0..1")
CHECKPOINT_SECONDS = Metric("CheckpointSeconds", "Seconds", "Wall time to save and upload one checkpoint")
RESUMED = Metric("Resumed", "Count", "1 when a run restarts from a checkpoint (after a Spot interruption or retry)")

# Emitted by the fallback Lambda (not the container) when it resubmits a job to On-Demand.
FALLBACK_RESUBMISSIONS = Metric("FallbackResubmissions", "Count", "Jobs resubmitted from Spot to On-Demand")

CONTAINER_METRICS: tuple[Metric, ...] = (
    TRAIN_LOSS,
    EVAL_ACCURACY,
    EVAL_F1,
    SAMPLES_PER_SECOND,
    TOKENS_PER_SECOND,
    GPU_UTILIZATION,
    GPU_MEMORY_USED,
    MODEL_FLOPS_UTILIZATION,
    CHECKPOINT_SECONDS,
    RESUMED,
)
ALL_METRICS: tuple[Metric, ...] = CONTAINER_METRICS + (FALLBACK_RESUBMISSIONS,)
BY_NAME: dict[str, Metric] = {m.name: m for m in ALL_METRICS}

# --- job-state metrics --------------------------------------------------------------------
# Not emitted by the container: the Monitoring stack derives them from AWS Batch job-state
# events (EventBridge -> CloudWatch Logs -> metric filters; Batch publishes no job-count
# metrics) and from a scheduled count of RUNNING jobs. Kept out of ALL_METRICS / BY_NAME so
# `emf_record` cannot emit them.
JOBS_NAMESPACE_SUFFIX = "Jobs"
JOBS_NAMESPACE = f"{DEFAULT_NAMESPACE}/{JOBS_NAMESPACE_SUFFIX}"
# Dimension of the event-derived metrics: the job queue ARN from the event (`detail.jobQueue`).
DIMENSION_JOB_QUEUE = "JobQueue"
# Job states counted per queue (one metric filter each): transitions into the state per period.
JOB_STATES: tuple[str, ...] = ("SUBMITTED", "RUNNABLE", "RUNNING", "SUCCEEDED", "FAILED")


def job_state_metric(state: str) -> Metric:
    """The per-queue count of jobs entering `state`, e.g. JobsFailed for FAILED."""
    if state not in JOB_STATES:
        raise KeyError(f"unknown job state {state!r}")
    return Metric(f"Jobs{state.capitalize()}", "Count", f"Jobs entering {state}, per queue")


JOB_STATE_METRICS: tuple[Metric, ...] = tuple(job_state_metric(s) for s in JOB_STATES)
# Job-state events whose status reason starts with "Host EC2": the instance under the attempt
# was terminated (Spot reclaim). JobQueue dimension.
SPOT_INTERRUPTIONS = Metric(
    "SpotInterruptions", "Count", "Attempts ended because their EC2 host was terminated (Spot reclaim)"
)
# Sampled every few minutes by the Monitoring stack's job gauge; Profile dimension.
RUNNING_JOBS = Metric("RunningJobs", "Count", "Jobs in RUNNING state on the project's queues (sampled)")
JOB_METRICS: tuple[Metric, ...] = JOB_STATE_METRICS + (SPOT_INTERRUPTIONS, RUNNING_JOBS)


def emf_record(
    values: Mapping[str, float],
    *,
    namespace: str,
    dimensions: Mapping[str, str],
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """Build one EMF record for `values` (metric name -> value).

    Unknown metric names raise KeyError: a typo here would silently create a metric that no
    dashboard shows.
    """
    metrics = [{"Name": name, "Unit": BY_NAME[name].unit} for name in values]
    dimension_sets = [[d for d in ds if d in dimensions] for ds in DIMENSION_SETS]
    dimension_sets = [ds for ds in dimension_sets if ds]
    record: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {"Namespace": namespace, "Dimensions": dimension_sets, "Metrics": metrics}
            ],
        },
        **dimensions,
        **{name: float(value) for name, value in values.items()},
    }
    return record


def emf_line(values: Mapping[str, float], *, namespace: str, dimensions: Mapping[str, str]) -> str:
    """One EMF record as a single JSON line, ready to print to stdout."""
    return json.dumps(emf_record(values, namespace=namespace, dimensions=dimensions), separators=(",", ":"))
