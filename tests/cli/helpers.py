"""Assertions shared by the CLI tests."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.stub import ANY, Stubber

from bertbatch_contract import discovery, layout

JOB_ID = re.compile(r"Submitted job (\S+)")
LOCAL_ROOT = "local-runs"  # bertbatch local's directory, relative to the current one
FIRST, SECOND = "random-tiny-20261121-190500-3fa2", "tiny-lr5e5"  # two local runs


def one_line_error(result, *fragments: str) -> str:
    """The command failed with exactly one line, `Error: ...`, containing every fragment."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def submitted_id(output: str) -> str:
    m = JOB_ID.search(output)
    assert m, output
    return m.group(1)


def submit(platform, bb, *args: str) -> str:
    """Submit a job on the moto platform (inputs created) and return its id."""
    train = platform.put_dataset("datasets/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    result = bb("submit", "--train", train, *args)
    assert result.exit_code == 0, result.output
    return submitted_id(result.output)


def stage_model(s3, bucket: str, name: str, source: str = "hf://test") -> str:
    """A staged model in the artifacts `bucket`: one file and its manifest (what `models import`
    leaves); returns its s3:// prefix."""
    from bertbatch.models.staging import ModelFile, manifest_of
    from bertbatch_contract import layout

    body = b'{"model_type": "bert"}'
    s3.put_object(Bucket=bucket, Key=layout.model_prefix(name) + "config.json", Body=body)
    files = [ModelFile(path="config.json", local=Path("config.json"), size=len(body), sha256="0" * 64)]
    s3.put_object(Bucket=bucket, Key=layout.model_manifest_key(name),
                           Body=json.dumps(manifest_of(name, source, files)).encode())
    return f"s3://{bucket}/{layout.model_prefix(name)}"


def put_local_run(run_id: str, accuracy: float | None, learning_rate: float, *,
                  finished_at: int = 1_700_000_000) -> Path:
    """A run's output as `bertbatch local` leaves it (metrics.json last; None: still training)."""
    directory = Path(LOCAL_ROOT) / layout.run_prefix(run_id)
    directory.mkdir(parents=True)
    (directory / layout.TRAINING_ARGS_FILE).write_text(json.dumps({
        "learning_rate": learning_rate, "epochs": 1, "train": "data/train.tsv", "eval": "data/dev.tsv",
        "text_column": "sentence"}))
    (directory / layout.LABEL_MAP_FILE).write_text('{"labels": ["negative", "positive"]}')
    if accuracy is not None:
        history = [{"step": 10, "epoch": 1, "eval_accuracy": accuracy, "eval_f1": accuracy - 0.01, "eval_loss": 0.5}]
        metrics = directory / layout.METRICS_FILE
        metrics.write_text(json.dumps({"run_id": run_id, "eval_accuracy": accuracy, "eval_f1": accuracy - 0.01,
                                       "eval_loss": 0.5, "train_loss": 0.6, "global_step": 20,
                                       "train_seconds": 12.5, "history": history}))
        os.utime(metrics, (finished_at, finished_at))
    return directory


def hook_clients(monkeypatch, *events: tuple[str, Callable[..., Any]]):
    """Every client the CLI makes (the one `make_client`) gets botocore event handlers:
    (event name, handler) pairs such as ("after-call.batch.DescribeJobs", inject); the service is
    the event name's second part. Returns the real `make_client` (to put it back)."""
    from bertbatch.core import aws_clients as aws

    real = aws.make_client

    def make_client(service, **kwargs):
        client = real(service, **kwargs)
        for event, handler in events:
            if event.split(".")[1] == service:
                client.meta.events.register(event, handler)
        return client

    monkeypatch.setattr(aws, "make_client", make_client)
    return real


def deny_s3_puts(monkeypatch, where) -> None:
    """Every PutObject the CLI's S3 clients make to a URL path for which `where(path)` holds is
    denied (AccessDenied), as a bucket policy or a narrower role would."""
    import botocore.exceptions

    def deny(params, **_):
        if where(params["url_path"]):
            raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}},
                                                  "PutObject")

    hook_clients(monkeypatch, ("before-call.s3.PutObject", deny))


def refused(client, operation: str, code: str, message: str, expected: dict, **response_meta: str):
    """`client` with a botocore Stubber that answers its next `operation` (asked with `expected`)
    with the AWS error `code`: `message` (HTTP 403) and `response_meta` (RequestId=...). Any
    other call on it fails: the test sees every request the command makes on that client."""
    stubber = Stubber(client)
    stubber.add_client_error(operation, service_error_code=code, service_message=message, http_status_code=403,
                             expected_params=expected, response_meta=response_meta or None)
    stubber.activate()
    return client


def first_list_jobs(platform) -> dict:
    """What `bertbatch list` asks ListJobs first: the spot-first queue, in one of the states."""
    return {"jobQueue": platform.names[discovery.QUEUE_SPOT_FIRST], "jobStatus": ANY}
