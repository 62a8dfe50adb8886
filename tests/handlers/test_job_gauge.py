"""The job gauge Lambda: publishes the number of RUNNING jobs on the project's queues."""

from __future__ import annotations

from unittest import mock

from bertbatch_contract import metrics
from platform_constructs.runtime import job_gauge

ENV = {
    "JOB_QUEUES": '["q-spot", "q-od"]',
    "METRICS_NAMESPACE": metrics.JOBS_NAMESPACE,
    "METRIC_NAME": metrics.RUNNING_JOBS.name,
    "DIMENSION_NAME": metrics.DIMENSION_PROFILE,
    "DIMENSION_VALUE": "dev",
}


def _batch(running: dict[str, int]) -> mock.Mock:
    """A Batch client whose list_jobs paginator returns `running[queue]` jobs over two pages."""
    batch = mock.Mock()

    def paginate(jobQueue, jobStatus):  # noqa: N803 - boto3 argument names
        assert jobStatus == "RUNNING"
        n = running[jobQueue]
        first = n // 2
        return [
            {"jobSummaryList": [{"jobId": f"{jobQueue}-{i}"} for i in range(first)]},
            {"jobSummaryList": [{"jobId": f"{jobQueue}-{i}"} for i in range(first, n)]},
        ]

    batch.get_paginator.return_value.paginate.side_effect = paginate
    return batch


def test_publishes_the_total_running_jobs_with_the_profile_dimension():
    cloudwatch = mock.Mock()

    result = job_gauge.handle(ENV, batch=_batch({"q-spot": 3, "q-od": 2}), cloudwatch=cloudwatch)

    assert result["running"] == 5
    cloudwatch.put_metric_data.assert_called_once_with(
        Namespace=metrics.JOBS_NAMESPACE,
        MetricData=[
            {
                "MetricName": metrics.RUNNING_JOBS.name,
                "Dimensions": [{"Name": metrics.DIMENSION_PROFILE, "Value": "dev"}],
                "Value": 5.0,
                "Unit": "Count",
            }
        ],
    )


def test_publishes_zero_when_nothing_runs():
    # A zero keeps the stalled-job alarm's time series continuous.
    cloudwatch = mock.Mock()

    job_gauge.handle(ENV, batch=_batch({"q-spot": 0, "q-od": 0}), cloudwatch=cloudwatch)

    assert cloudwatch.put_metric_data.call_args.kwargs["MetricData"][0]["Value"] == 0.0
