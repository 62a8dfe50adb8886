"""`submit --max-cost`: validated, passed to the job as the container reads it, shown in
`status` when the job stopped on it, and a stopped run resumes with a higher cap."""

from __future__ import annotations

import json

import pytest

from bertbatch_contract import job, layout, pricing

from .helpers import hook_clients, one_line_error, submit

pytestmark = pytest.mark.usefixtures("default_model_staged")


def env_of(request: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in request["containerOverrides"]["environment"]}


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf", "ten"])
def test_bad_cap_is_refused_before_any_aws_call(platform, bb, submit_spy, value):
    one_line_error(bb("submit", "--max-cost", value), f"--max-cost {value!r}")
    assert submit_spy == []


def test_cap_and_queue_prices_reach_the_job(platform, bb, submit_spy):
    submit(platform, bb, "--run-name", "capped", "--max-cost", "12.5")
    env = env_of(submit_spy[-1])
    assert pricing.parse_cap(env[job.ENV_MAX_COST_USD]) == 12.5
    table = pricing.parse(env[job.ENV_PRICES])
    # the spot-first queue's environments launch g6.xlarge (among others): both prices from prices.json
    assert table["g6.xlarge"] == {"spot": 0.36, "on_demand": 0.805}
    assert "p5.48xlarge" not in table  # not a type of these environments


def test_without_cap_nothing_is_added(platform, bb, submit_spy):
    submit(platform, bb, "--run-name", "uncapped")
    env = env_of(submit_spy[-1])
    assert job.ENV_MAX_COST_USD not in env and job.ENV_PRICES not in env


def test_status_says_the_job_stopped_on_its_cap_and_a_higher_cap_resumes(platform, bb, submit_spy, monkeypatch):
    job_id = submit(platform, bb, "--run-name", "cap-stop", "--max-cost", "1")
    platform.moto_job(job_id).status = "FAILED"

    def stopped_on_cap(parsed, **_):  # moto's DescribeJobs reports no container exit code
        for described in parsed.get("jobs", []):
            if described["jobId"] == job_id:
                described["container"]["exitCode"] = job.EXIT_COST_CAP

    hook_clients(monkeypatch, ("after-call.batch.DescribeJobs", stopped_on_cap))
    r = bb("status", job_id)
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("exit code:"))
    assert str(job.EXIT_COST_CAP) in line and "--max-cost" in line and "resume" in line
    # stopped on the cap: a checkpoint, no metrics.json -> not finished, a new submit resumes it
    platform.put_run("cap-stop", None, {layout.checkpoint_prefix("cap-stop") + "step-000000500/manifest.json": b"{}"})
    r = bb("submit", "--train", platform.put_dataset("datasets/train.tsv"), "--run-name", "cap-stop",
           "--max-cost", "5")
    assert r.exit_code == 0, r.output
    assert "resumes from them" in r.output
    assert pricing.parse_cap(env_of(submit_spy[-1])[job.ENV_MAX_COST_USD]) == 5.0
    assert json.loads(env_of(submit_spy[-1])[job.ENV_PRICES])
