"""Job gauge: publish how many jobs are RUNNING on the project's queues, every few minutes.

AWS Batch publishes no job-count metrics and its job-state events only mark transitions, so
"is anything running right now?" needs a sample. The Monitoring stack's stalled-job alarm
combines this gauge with the container's training metrics: jobs RUNNING but no training
metric for `stalled_minutes` means a stalled job.

Environment (set by platform_constructs/job_events.py, values from the metrics contract):
  JOB_QUEUES         JSON list of queue names or ARNs
  METRICS_NAMESPACE  namespace of the gauge
  METRIC_NAME        metric name (RunningJobs)
  DIMENSION_NAME     dimension name (Profile)
  DIMENSION_VALUE    the profile

Standard library and boto3 only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

ENV_JOB_QUEUES = "JOB_QUEUES"
ENV_METRICS_NAMESPACE = "METRICS_NAMESPACE"
ENV_METRIC_NAME = "METRIC_NAME"
ENV_DIMENSION_NAME = "DIMENSION_NAME"
ENV_DIMENSION_VALUE = "DIMENSION_VALUE"


def count_running(batch: Any, queues: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    paginator = batch.get_paginator("list_jobs")
    for queue in queues:
        n = 0
        for page in paginator.paginate(jobQueue=queue, jobStatus="RUNNING"):
            n += len(page.get("jobSummaryList", []))
        counts[queue] = n
    return counts


def handle(env: Mapping[str, str], *, batch: Any, cloudwatch: Any) -> dict:
    queues = json.loads(env[ENV_JOB_QUEUES])
    counts = count_running(batch, queues)
    total = sum(counts.values())
    cloudwatch.put_metric_data(
        Namespace=env[ENV_METRICS_NAMESPACE],
        MetricData=[
            {
                "MetricName": env[ENV_METRIC_NAME],
                "Dimensions": [{"Name": env[ENV_DIMENSION_NAME], "Value": env[ENV_DIMENSION_VALUE]}],
                "Value": float(total),
                "Unit": "Count",
            }
        ],
    )
    result = {"running": total, "by_queue": counts}
    print(json.dumps({"event": "job-gauge", **result}, sort_keys=True))
    return result


def make_client(service: str) -> Any:
    # Imported here, not at the top: the stack imports this module at synth for its variable
    # names, and synth does not install boto3 (the Lambda runtime provides it).
    import boto3

    return boto3.client(service)


def handler(event: Mapping[str, Any], context: Any = None) -> dict:
    return handle(os.environ, batch=make_client("batch"), cloudwatch=make_client("cloudwatch"))
