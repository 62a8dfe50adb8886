"""status, list, cancel and logs against a moto platform."""

from __future__ import annotations

import json

import pytest

from bertbatch_contract import discovery, tags
from bertbatch_contract.metrics import EVAL_ACCURACY, TRAIN_LOSS, emf_line

from .helpers import one_line_error, submit

# The platform's jobs cannot reach the internet: the default model must be staged to submit.
pytestmark = pytest.mark.usefixtures("default_model_staged")


def test_status_shows_run_queue_and_console(platform, bb):
    job_id = submit(platform, bb, "--run-name", "stat-run")
    r = bb("status", job_id)
    assert r.exit_code == 0, r.output
    fields = dict(line.split(":", 1) for line in r.output.splitlines())
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    assert fields["job"] == job_id
    assert fields["run id"] == "stat-run"
    assert fields["status"].startswith("SUCCEEDED")
    assert fields["queue"] == platform.names[discovery.QUEUE_SPOT_FIRST]
    assert fields["console"].endswith(f"#jobs/detail/{job_id}")


def test_status_shows_fallback_links(platform, bb):
    old = submit(platform, bb, "--run-name", "fb")
    new = submit(platform, bb, "--run-name", "fb", "--on-demand")
    platform.batch.tag_resource(resourceArn=platform.job(old)["jobArn"], tags={tags.TAG_FALLBACK_TO: new})
    r = bb("status", old)
    assert r.exit_code == 0, r.output
    assert "fallback to:" in r.output and new in r.output


def test_status_json(platform, bb):
    job_id = submit(platform, bb)
    r = bb("status", job_id, "-o", "json")
    assert r.exit_code == 0, r.output
    record = json.loads(r.output)
    assert record["job_id"] == job_id and record["run_id"] and record["status"] == "SUCCEEDED"
    assert record["queue"] == platform.names[discovery.QUEUE_SPOT_FIRST]
    assert record["console_url"].endswith(f"#jobs/detail/{job_id}")


def test_status_unknown_job(platform, bb):
    one_line_error(bb("status", "00000000-0000-0000-0000-000000000000"),
                   "no such job: 00000000-0000-0000-0000-000000000000")


def test_list_table_filters_by_state_and_queue(platform, bb):
    spot = submit(platform, bb, "--run-name", "on-spot")
    od = submit(platform, bb, "--run-name", "on-od", "--on-demand")
    running = submit(platform, bb, "--run-name", "still-running")
    platform.moto_job(running).status = "RUNNING"

    r = bb("list")
    assert r.exit_code == 0, r.output
    header, *rows = r.output.splitlines()
    assert header.split()[:4] == ["JOB", "ID", "NAME", "STATE"]
    assert {spot, od, running} == {row.split()[0] for row in rows}

    r = bb("list", "--state", "running")
    ids = [row.split()[0] for row in r.output.splitlines()[1:]]
    assert ids == [running]

    r = bb("list", "--queue", "on-demand")
    rows = r.output.splitlines()[1:]
    assert [row.split()[0] for row in rows] == [od]
    assert platform.names[discovery.QUEUE_ON_DEMAND] in rows[0]

    r = bb("list", "--queue", "on-demand", "--state", "FAILED")
    assert r.exit_code == 0 and r.output.strip() == "No jobs."


def test_list_unknown_queue(platform, bb):
    one_line_error(bb("list", "--queue", "nope"), "--queue")


def test_cancel_before_start_uses_cancel_job(platform, bb):
    job_id = submit(platform, bb)
    platform.moto_job(job_id).status = "RUNNABLE"
    r = bb("cancel", job_id, "--reason", "wrong lr")
    assert r.exit_code == 0, r.output
    assert f"Job {job_id} cancelled (was RUNNABLE)" in r.output
    assert platform.moto_job(job_id).job_stopped_reason == "wrong lr"


def test_cancel_running_uses_terminate_job(platform, bb, monkeypatch):
    job_id = submit(platform, bb)
    platform.moto_job(job_id).status = "RUNNING"
    from moto.batch.models import BatchBackend

    calls = []
    real = BatchBackend.terminate_job
    monkeypatch.setattr(BatchBackend, "terminate_job",
                        lambda self, jid, reason: (calls.append(jid), real(self, jid, reason)))
    r = bb("cancel", job_id)
    assert r.exit_code == 0, r.output
    assert "terminated (was RUNNING)" in r.output
    assert calls == [job_id]
    assert platform.moto_job(job_id).stop is True


def test_cancel_finished_job_is_a_no_op(platform, bb):
    job_id = submit(platform, bb)
    r = bb("cancel", job_id)
    assert r.exit_code == 0, r.output
    assert "already ended (SUCCEEDED); nothing to cancel" in r.output


def test_cancel_follows_fallback(platform, bb):
    old = submit(platform, bb, "--run-name", "fb")
    new = submit(platform, bb, "--run-name", "fb", "--on-demand")
    platform.moto_job(old).status = "FAILED"
    platform.moto_job(new).status = "RUNNABLE"
    platform.batch.tag_resource(resourceArn=platform.job(old)["jobArn"], tags={tags.TAG_FALLBACK_TO: new})
    r = bb("cancel", old)
    assert r.exit_code == 0, r.output
    assert f"resubmitted as {new}" in r.output
    assert platform.moto_job(new).job_stopped_reason == "Cancelled with bertbatch"


def test_cancel_unknown_job(platform, bb):
    one_line_error(bb("cancel", "no-such-job"), "no such job: no-such-job")


def test_logs_prints_stream_and_hides_emf(platform, bb):
    job_id = submit(platform, bb, "--run-name", "logged")
    stream = platform.job(job_id)["container"]["logStreamName"]
    emf = emf_line({TRAIN_LOSS.name: 0.5, EVAL_ACCURACY.name: 0.9}, namespace="BertBatch",
                   dimensions={"Profile": "dev", "RunId": "logged"})
    progress = "[progress] epoch 1/1 step 5/5 loss 0.5000 samples/s 10.0 eta 0:00:00"
    platform.write_log(stream, ["loading data", progress, emf, "done"])
    r = bb("logs", job_id)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == ["loading data", progress, emf, "done"]
    r = bb("logs", job_id, "--no-emf")
    assert r.output.splitlines() == ["loading data", progress, "done"]


def test_logs_follow_reads_until_job_ends(platform, bb):
    job_id = submit(platform, bb)
    stream = platform.job(job_id)["container"]["logStreamName"]
    platform.write_log(stream, [f"line {i}" for i in range(3)])
    r = bb("logs", job_id, "--follow", "--poll", "0.01")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == ["line 0", "line 1", "line 2"]


def test_logs_unknown_job(platform, bb):
    one_line_error(bb("logs", "nope"), "no such job: nope")


def test_logs_missing_stream(platform, bb):
    job_id = submit(platform, bb)
    one_line_error(bb("logs", job_id), "no log stream", platform.log_group)


def test_logs_not_started(platform, bb):
    job_id = submit(platform, bb)
    job = platform.moto_job(job_id)
    job.status, job.log_stream_name, job.attempts = "RUNNABLE", None, []
    one_line_error(bb("logs", job_id), "no logs yet (status RUNNABLE)")


def test_logs_of_array_parent_asks_for_a_child(platform, bb):
    job_id = submit(platform, bb, "--array", "2")
    one_line_error(bb("logs", job_id), f"is an array job: give one child, e.g. bertbatch logs {job_id}:0")


def test_cancel_array_parent_terminates(platform, bb, monkeypatch):
    job_id = submit(platform, bb, "--array", "3")
    parent = platform.moto_job(job_id)
    parent.status = "PENDING"
    for child in parent._child_jobs:  # moto derives the parent's state from its children
        child.status = "RUNNING"
    from moto.batch.models import BatchBackend

    calls = []
    real = BatchBackend.terminate_job
    monkeypatch.setattr(BatchBackend, "terminate_job",
                        lambda self, jid, reason: (calls.append(jid), real(self, jid, reason)))
    r = bb("cancel", job_id)
    assert r.exit_code == 0, r.output
    assert calls == [job_id] and "terminated (was PENDING)" in r.output


A10G_RUN = {"samples_per_second": 96.4, "tokens_per_second": 12345.6, "mfu": 0.4123, "mfu_unavailable": None,
            "model_tflops_per_second": 51.5, "model_flops_per_token": 4.2e9, "gpu_name": "NVIDIA A10G",
            "gpu_peak_tflops": 125.0, "gpu_memory_peak_mb": 3072.0}


def test_status_shows_the_runs_efficiency_once_its_metrics_are_written(platform, bb):
    job_id = submit(platform, bb, "--run-name", "mfu-run")
    assert json.loads(bb("status", job_id, "-o", "json").output)["efficiency"] is None  # no metrics.json yet
    platform.put_run("mfu-run", {"run_id": "mfu-run", **A10G_RUN})
    record = json.loads(bb("status", job_id, "-o", "json").output)
    assert record["efficiency"] == A10G_RUN
    r = bb("status", job_id)
    assert r.exit_code == 0, r.output
    assert ("efficiency: 12,346 tokens/s, 96.4 samples/s, MFU 0.412 (NVIDIA A10G, peak 125 TFLOPS), "
            "GPU memory peak 3,072 MB") in " ".join(r.output.split())


def test_status_says_why_a_run_has_no_mfu(platform, bb):
    job_id = submit(platform, bb, "--run-name", "cpu-run")
    platform.put_run("cpu-run", {"run_id": "cpu-run", "samples_per_second": 20.0, "tokens_per_second": 300.0,
                                 "mfu": None, "mfu_unavailable": "trained on CPU: MFU is measured against a GPU's "
                                 "tensor peak", "gpu_memory_peak_mb": None})
    r = bb("status", job_id)
    assert "efficiency: 300 tokens/s, 20.0 samples/s, MFU - (trained on CPU" in " ".join(r.output.split())
    assert "GPU memory peak" not in r.output
