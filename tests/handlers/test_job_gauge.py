"""The job gauge Lambda: publishes the number of RUNNING jobs on the project's queues.

Real boto3 clients with botocore's Stubber: every request the handler makes is checked against
the expected parameters (and the service model), and nothing leaves the process."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from bertbatch_contract import metrics
from platform_constructs.runtime import job_gauge

REGION = "us-east-1"
ENV = {
    "JOB_QUEUES": '["q-spot", "q-od"]',
    "METRICS_NAMESPACE": metrics.JOBS_NAMESPACE,
    "METRIC_NAME": metrics.RUNNING_JOBS.name,
    "DIMENSION_NAME": metrics.DIMENSION_PROFILE,
    "DIMENSION_VALUE": "dev",
}


@pytest.fixture
def stubbed(monkeypatch, tmp_path) -> Iterator[tuple[Stubber, Stubber]]:
    """(Batch, CloudWatch) Stubbers on real clients; every queued answer must be asked for."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    batch = Stubber(boto3.client("batch", region_name=REGION))
    cloudwatch = Stubber(boto3.client("cloudwatch", region_name=REGION))
    with batch, cloudwatch:
        yield batch, cloudwatch
        batch.assert_no_pending_responses()
        cloudwatch.assert_no_pending_responses()


def expect_running(batch: Stubber, queue: str, count: int) -> None:
    """ListJobs answers `count` RUNNING jobs of `queue` over two pages."""
    summaries = [{"jobId": f"{queue}-{i}", "jobName": f"job-{i}"} for i in range(count)]
    asked = {"jobQueue": queue, "jobStatus": "RUNNING"}
    batch.add_response("list_jobs", {"jobSummaryList": summaries[: count // 2], "nextToken": "page-2"}, asked)
    batch.add_response("list_jobs", {"jobSummaryList": summaries[count // 2:]}, {**asked, "nextToken": "page-2"})


def expect_published(cloudwatch: Stubber, running: float) -> None:
    cloudwatch.add_response("put_metric_data", {}, {
        "Namespace": metrics.JOBS_NAMESPACE,
        "MetricData": [
            {
                "MetricName": metrics.RUNNING_JOBS.name,
                "Dimensions": [{"Name": metrics.DIMENSION_PROFILE, "Value": "dev"}],
                "Value": running,
                "Unit": "Count",
            }
        ],
    })


def test_publishes_the_total_running_jobs_with_the_profile_dimension(stubbed):
    batch, cloudwatch = stubbed
    expect_running(batch, "q-spot", 3)
    expect_running(batch, "q-od", 2)
    expect_published(cloudwatch, 5.0)

    result = job_gauge.handle(ENV, batch=batch.client, cloudwatch=cloudwatch.client)

    assert result == {"running": 5, "by_queue": {"q-spot": 3, "q-od": 2}}


def test_publishes_zero_when_nothing_runs(stubbed):
    # A zero keeps the stalled-job alarm's time series continuous.
    batch, cloudwatch = stubbed
    expect_running(batch, "q-spot", 0)
    expect_running(batch, "q-od", 0)
    expect_published(cloudwatch, 0.0)

    assert job_gauge.handle(ENV, batch=batch.client, cloudwatch=cloudwatch.client)["running"] == 0
