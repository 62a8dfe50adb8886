"""watch (and submit --wait): states, progress from the log, final metrics, fallback following."""

from __future__ import annotations

import pytest

from bertbatch_contract import tags
from bertbatch_contract.metrics import EVAL_ACCURACY, EVAL_F1, TRAIN_LOSS, emf_line
from bertbatch_contract.progress import Progress, format_progress

from .helpers import one_line_error, submit, submitted_id

# The platform's jobs cannot reach the internet: the default model must be staged to submit.
pytestmark = pytest.mark.usefixtures("default_model_staged")


def progress_line(epoch: int, step: int, total: int = 30, eta: int = 60) -> str:
    return format_progress(Progress(epoch=epoch, epochs=3, step=step, total_steps=total, loss=0.4321,
                                    samples_per_second=123.4, eta_seconds=eta))


def emf(**values) -> str:
    return emf_line(values, namespace="BertBatch", dimensions={"Profile": "dev", "RunId": "r"})


def stream_of(platform, job_id: str) -> str:
    return platform.job(job_id)["container"]["logStreamName"]


def test_watch_succeeded_shows_progress_metrics_and_artifacts(platform, bb):
    job_id = submit(platform, bb, "--run-name", "w1")
    platform.write_log(stream_of(platform, job_id), [
        "starting",
        progress_line(1, 10),
        emf(**{TRAIN_LOSS.name: 0.43, EVAL_ACCURACY.name: 0.875, EVAL_F1.name: 0.87}),
        progress_line(3, 30, eta=0),
    ])
    platform.put_run("w1", {"eval_accuracy": 0.9, "train_loss": 0.2, "tokens_per_second": 5000.0, "mfu": 0.35,
                            "gpu_memory_peak_mb": 2048.0, "gpu_name": "NVIDIA L4"})
    r = bb("watch", job_id, "--poll", "0.01")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert f"job {job_id} (w1, run w1, queue bert-batch-dev-spot-first): SUCCEEDED" in lines[0]
    progress = [line for line in lines if line.startswith("epoch ")]
    assert progress, r.output
    assert progress[-1].startswith("epoch 3/3 [####################] 100% step 30/30 loss 0.4321")
    assert "ETA 0:00:00" in progress[-1]
    assert "EvalAccuracy 0.875" in progress[-1] and "EvalF1 0.87" in progress[-1]
    assert any("final metrics: eval_accuracy 0.9000, train_loss 0.2000, tokens_per_second 5000, mfu 0.3500, "
               "gpu_memory_peak_mb 2048" in line for line in lines), r.output
    assert any(f"outputs: s3://{platform.artifacts_bucket}/runs/w1/" in line for line in lines)
    assert any(f"checkpoints: s3://{platform.artifacts_bucket}/checkpoints/w1/" in line for line in lines)
    assert lines[-1].endswith(f"job {job_id} SUCCEEDED")


def test_watch_reports_state_transitions_and_live_progress(platform, bb, monkeypatch):
    job_id = submit(platform, bb, "--run-name", "w2")
    job = platform.moto_job(job_id)
    job.status = "RUNNABLE"
    stream = stream_of(platform, job_id)
    steps = iter([
        lambda: setattr(job, "status", "RUNNING"),
        lambda: platform.write_log(stream, [progress_line(1, 3)]),
        lambda: platform.write_log(stream, [progress_line(2, 15)]),
        lambda: setattr(job, "status", "SUCCEEDED"),
    ])
    r = bb("watch", job_id, "--poll", "0.01", sleep=lambda _s: next(steps)())
    assert r.exit_code == 0, r.output
    out = r.output
    assert out.index("RUNNABLE -> RUNNING") < out.index("epoch 1/3 [##") < out.index("epoch 2/3 [##########") \
        < out.index("RUNNING -> SUCCEEDED")
    assert "step 15/30" in out and " 50% " in out


def test_watch_failed_exits_non_zero(platform, bb):
    job_id = submit(platform, bb, "--run-name", "w3")
    job = platform.moto_job(job_id)
    job.status, job.job_stopped_reason = "FAILED", "Essential container in task exited"
    r = bb("watch", job_id, "--poll", "0.01", "--fallback-grace", "0")
    assert r.exit_code == 3, r.output  # the job FAILED (1 is for errors of the CLI itself)
    last = r.output.splitlines()[-1]
    assert last.startswith(f"Error: job {job_id} FAILED: Essential container in task exited")
    assert "FAILED" in r.output.splitlines()[0]


def test_watch_follows_fallback_resubmission(platform, bb):
    old = submit(platform, bb, "--run-name", "spot-run")
    job = platform.moto_job(old)
    job.status, job.job_stopped_reason = "FAILED", "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
    # what the fallback handler does: same RUN_ID on the On-Demand queue, tags both ways
    new = submit(platform, bb, "--run-name", "spot-run", "--on-demand")
    platform.batch.tag_resource(resourceArn=platform.job(new)["jobArn"], tags={tags.TAG_FALLBACK_FROM: old})
    platform.batch.tag_resource(resourceArn=platform.job(old)["jobArn"], tags={tags.TAG_FALLBACK_TO: new})
    platform.write_log(stream_of(platform, new), [progress_line(3, 30, eta=0)])
    r = bb("watch", old, "--poll", "0.01", "--fallback-grace", "0")
    assert r.exit_code == 0, r.output
    assert f"job {old} was resubmitted to On-Demand as {new}: following it" in r.output
    assert "queue bert-batch-dev-on-demand" in r.output
    assert r.output.splitlines()[-1].endswith(f"job {new} SUCCEEDED")


def test_watch_waits_for_late_fallback_tag(platform, bb, monkeypatch):
    old = submit(platform, bb, "--run-name", "late")
    platform.moto_job(old).status = "FAILED"
    new = submit(platform, bb, "--run-name", "late", "--on-demand")
    arn = platform.job(old)["jobArn"]
    r = bb("watch", old, "--poll", "0.01", "--fallback-grace", "30",
           sleep=lambda _s: platform.batch.tag_resource(resourceArn=arn, tags={tags.TAG_FALLBACK_TO: new}))
    assert r.exit_code == 0, r.output
    assert f"as {new}: following it" in r.output


def test_submit_wait_hands_over_to_watch(platform, bb, monkeypatch):
    train = platform.put_dataset("datasets/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    from bertbatch.jobs import job_follower

    real_report = job_follower.final_report

    def report(session, job, display, *outcome):  # the job writes its metrics while it runs
        platform.put_run("waited", {"eval_accuracy": 0.5})
        return real_report(session, job, display, *outcome)

    monkeypatch.setattr(job_follower, "final_report", report)
    r = bb("submit", "--train", train, "--run-name", "waited", "--wait", "--poll", "0.01")
    assert r.exit_code == 0, r.output
    job_id = submitted_id(r.output)
    assert r.output.splitlines()[-1].endswith(f"job {job_id} SUCCEEDED")
    assert "final metrics: eval_accuracy 0.5000" in r.output


def test_submit_wait_exit_code_on_failure(platform, bb, monkeypatch):
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")  # moto marks new jobs FAILED
    train = platform.put_dataset("datasets/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    r = bb("submit", "--train", train, "--wait", "--poll", "0.01", "--fallback-grace", "0")
    assert r.exit_code == 3, r.output
    assert "FAILED" in r.output.splitlines()[-1]


def test_watch_unknown_job(platform, bb):
    one_line_error(bb("watch", "nope", "--poll", "0.01"), "no such job: nope")


def test_watch_does_not_wait_for_fallback_of_on_demand_job(platform, bb, monkeypatch):
    job_id = submit(platform, bb, "--on-demand")
    platform.moto_job(job_id).status = "FAILED"
    def no_sleep(_s):
        raise AssertionError("waited for a fallback that cannot happen")

    r = bb("watch", job_id, "--poll", "0.01", "--fallback-grace", "600", sleep=no_sleep)
    assert r.exit_code == 3 and f"job {job_id} FAILED" in r.output


def test_watch_explains_a_job_cancelled_by_the_queue_time_limit(platform, bb):
    job_id = submit(platform, bb, "--on-demand")
    job = platform.moto_job(job_id)
    job.status = "FAILED"
    job.job_stopped_reason = ("Canceled by JobStateTimeLimit action due to reason: "
                              "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT")
    r = bb("watch", job_id, "--poll", "0.01", "--fallback-grace", "0")
    assert r.exit_code == 3, r.output
    assert "the queue cancelled it before it started: no instance type of the queue can hold" in r.output
    last = r.output.splitlines()[-1]
    assert last.startswith(f"Error: job {job_id} FAILED: the queue cancelled it") and "JOB_RESOURCE_REQUIREMENT" in last
