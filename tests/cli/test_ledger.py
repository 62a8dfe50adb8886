"""The cost ledger (`status`, `runs`) against fixed attempt timelines, checked against sums
worked out by hand from bertbatch/data/prices.json.

moto's Batch runs no container, so the attempts (times, container instance) are injected into
its DescribeJobs answers; everything else (queues, compute environments, tags) is moto's.
"""

from __future__ import annotations

import json

import pytest

from bertbatch.core import aws_clients as bertbatch_aws
from bertbatch.cost import ledger
from bertbatch_contract import tags

from .helpers import hook_clients, submit

pytestmark = pytest.mark.usefixtures("default_model_staged")

T0 = 1_790_000_000_000  # epoch ms
HOUR = 3_600_000
# The job definition asks for 1 GPU, 4 vCPUs, 15000 MiB: the cheapest type of the GPU
# environments that holds it is g6.xlarge (Spot $0.36, On-Demand $0.805 per hour).
G6_SPOT, G6_ON_DEMAND = 0.36, 0.805


@pytest.fixture
def attempts(monkeypatch):
    """job id -> attempts to report in DescribeJobs (a stub of what moto cannot produce)."""
    timelines: dict[str, list[dict]] = {}

    def inject(parsed, **_):
        for job in parsed.get("jobs", []):
            if job["jobId"] in timelines:
                job["attempts"] = timelines[job["jobId"]]
                job["startedAt"] = timelines[job["jobId"]][0]["startedAt"]
                job["stoppedAt"] = timelines[job["jobId"]][-1].get("stoppedAt")

    hook_clients(monkeypatch, ("after-call.batch.DescribeJobs", inject))
    return timelines


def cluster(platform, environment_suffix: str) -> str:
    """The ECS cluster name of the platform's compute environment ending in `environment_suffix`."""
    for env in platform.batch.describe_compute_environments()["computeEnvironments"]:
        if env["computeEnvironmentName"].endswith(environment_suffix):
            return env["ecsClusterArn"].rsplit("/", 1)[-1]
    raise AssertionError(environment_suffix)


def attempt(platform, environment_suffix: str, start_ms: int, hours: float) -> dict:
    instance = f"arn:aws:ecs:us-east-1:123456789012:container-instance/{cluster(platform, environment_suffix)}/i1"
    return {"startedAt": start_ms, "stoppedAt": start_ms + int(hours * HOUR),
            "container": {"containerInstanceArn": instance, "exitCode": 0}}


def spot_then_fallback(platform, bb, attempts, run_name: str) -> tuple[str, str]:
    """A Spot job interrupted once (1 h, then 20 min) and its On-Demand fallback (30 min)."""
    spot = submit(platform, bb, "--run-name", run_name)
    od = submit(platform, bb, "--run-name", run_name, "--on-demand")
    platform.batch.tag_resource(resourceArn=platform.job(spot)["jobArn"], tags={tags.TAG_FALLBACK_TO: od})
    platform.batch.tag_resource(resourceArn=platform.job(od)["jobArn"], tags={tags.TAG_FALLBACK_FROM: spot})
    attempts[spot] = [attempt(platform, "gpu-spot", T0, 1.0), attempt(platform, "gpu-spot", T0 + HOUR, 1 / 3)]
    attempts[od] = [attempt(platform, "gpu-on-demand", T0 + 2 * HOUR, 0.5)]
    return spot, od


EXPECTED = 1.0 * G6_SPOT + (1 / 3) * G6_SPOT + 0.5 * G6_ON_DEMAND  # 0.36 + 0.12 + 0.4025


def test_status_json_sums_every_attempt_of_the_run(platform, bb, attempts):
    spot, od = spot_then_fallback(platform, bb, attempts, "ledger-run")
    r = bb("status", spot, "-o", "json")
    assert r.exit_code == 0, r.output
    record = json.loads(r.output)
    assert record["cost"] == pytest.approx(0.8825)
    assert record["cost"] == pytest.approx(EXPECTED)
    rows = record["cost_attempts"]
    assert [(a["job_id"], a["attempt"], a["pricing"], a["instance_type"]) for a in rows] == [
        (spot, 1, "spot", "g6.xlarge"), (spot, 2, "spot", "g6.xlarge"), (od, 1, "on-demand", "g6.xlarge")]
    assert [a["cost"] for a in rows] == pytest.approx([0.36, 0.12, 0.4025])
    assert rows[2]["environment"].endswith("gpu-on-demand")
    assert "cheapest type" in rows[0]["assumption"]
    assert record["prices_as_of"] == ledger.Pricer().prices["as_of"]


def test_status_table_shows_breakdown_and_the_estimate(platform, bb, attempts):
    spot, od = spot_then_fallback(platform, bb, attempts, "ledger-table")
    platform.batch.tag_resource(resourceArn=platform.job(od)["jobArn"], tags={tags.TAG_COST_ESTIMATE: "1.25"})
    r = bb("status", "ledger-table")  # a run id: its newest job
    assert r.exit_code == 0, r.output
    assert "job:" in r.output and od in r.output.splitlines()[0]
    assert "cost:" in r.output and "$0.88" in r.output and "estimated at submit: $1.25" in r.output
    table = [line for line in r.output.splitlines() if line.startswith("attempt ")]
    assert [line.split()[1:3] for line in table] == [[spot, "#1:"], [spot, "#2:"], [od, "#1:"]]
    assert "(0:20:00)" in table[1] and "on-demand g6.xlarge" in table[2] and table[2].endswith("$0.40")
    assert any(line.startswith("assumed:") and "g6.xlarge: the cheapest type of" in line
               for line in r.output.splitlines())


def test_unknown_container_instance_assumes_the_queues_first_environment(platform, bb, attempts):
    job_id = submit(platform, bb, "--run-name", "no-instance")
    attempts[job_id] = [{"startedAt": T0, "stoppedAt": T0 + 2 * HOUR, "container": {"containerInstanceArn": "TBD"}}]
    record = json.loads(bb("status", job_id, "-o", "json").output)
    assert record["cost"] == pytest.approx(2 * G6_SPOT)  # spot-first: the Spot environment comes first
    assert "the queue's first environment" in record["cost_attempts"][0]["assumption"]


def test_runs_shows_a_cost_column(platform, bb, attempts):
    spot_then_fallback(platform, bb, attempts, "ledger-runs")
    platform.put_run("ledger-runs", {"eval_accuracy": 0.9})
    platform.put_run("other-run", {"eval_accuracy": 0.8})
    r = bb("runs")
    assert r.exit_code == 0, r.output
    header, *rows = r.output.splitlines()
    assert "COST" in header.split()
    by_run = {row.split()[0]: row for row in rows}
    assert "$0.88" in by_run["ledger-runs"] and "$" not in by_run["other-run"]
    records = {json.loads(line)["run_id"]: json.loads(line) for line in bb("runs", "-o", "json").output.splitlines()}
    assert records["ledger-runs"]["cost"] == pytest.approx(EXPECTED, abs=1e-4)
    assert records["other-run"]["cost"] is None


def test_sweep_children_each_have_their_ledger(platform, bb, attempts, tmp_path):
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps({"learning_rate": ["2e-5", "3e-5"]}))
    parent = submit(platform, bb, "--run-name", "sw", "--grid", str(grid_file))
    attempts[f"{parent}:0"] = [attempt(platform, "gpu-spot", T0, 1.0)]
    attempts[f"{parent}:1"] = [attempt(platform, "gpu-spot", T0, 2.0)]
    queues = [q["jobQueueName"] for q in platform.batch.describe_job_queues()["jobQueues"]]
    client = bertbatch_aws.make_client("batch")
    ledgers = ledger.sweep_ledgers(client, queues, "sw")
    assert {k: v.cost for k, v in ledgers.items()} == pytest.approx({"sw-0": G6_SPOT, "sw-1": 2 * G6_SPOT})
    assert ledger.ledger(client, queues, "sw").cost == pytest.approx(3 * G6_SPOT)
    assert ledger.ledger(client, queues, "sw-1").cost == pytest.approx(2 * G6_SPOT)


def test_cluster_of_container_instance_arn():
    arn = "arn:aws:ecs:us-east-1:123456789012:container-instance/my-cluster/0a1b2c"
    assert ledger.cluster_of({"containerInstanceArn": arn}) == "my-cluster"
    assert ledger.cluster_of({"containerInstanceArn": "TBD"}) is None
    assert ledger.cluster_of({}) is None
