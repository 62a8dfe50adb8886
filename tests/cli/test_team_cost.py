"""Cost per team: `status`, `runs` and `compare` show the team of a run and `runs --team` totals
one team's runs, on the platform the templates declare with two teams (nlp, vision), and a job
from before fair share (no share identifier, no team tag) shown as "-".

Attempt timelines are injected into DescribeJobs (moto runs no container), as in test_ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bertbatch_contract import discovery, tags
from tests.platform_from_templates import deploy
from tests.submit_job_rules import SubmitJobRules

from .helpers import one_line_error, submitted_id
from .test_ledger import G6_SPOT, HOUR, T0, attempts  # noqa: F401 (the fixture)
from .test_submit_rules import put_inputs

TWO_TEAMS = {"teams.weights": '{"nlp": 4, "vision": 1}', "teams.default": "vision"}


class TwoTeams:
    """The deployed platform's names and a plain Batch client (the CLI's own is checked)."""

    def __init__(self, names: dict[str, str]) -> None:
        from tests.cli.conftest import client

        self.names, self.batch, self.s3 = names, client("batch"), client("s3")

    def job(self, job_id: str) -> dict:
        return self.batch.describe_jobs(jobs=[job_id])["jobs"][0]

    def put_run(self, run_id: str) -> None:
        self.s3.put_object(Bucket=self.names[discovery.ARTIFACTS_BUCKET], Key=f"runs/{run_id}/metrics.json",
                           Body=json.dumps({"eval_accuracy": 0.9}).encode())

    def cluster(self, suffix: str) -> str:
        return next(e["ecsClusterArn"].rsplit("/", 1)[-1] for e in self.batch.describe_compute_environments()[
            "computeEnvironments"] if e["computeEnvironmentName"].endswith(suffix))


@pytest.fixture
def two_teams(aws, monkeypatch, attempts) -> Iterator[TwoTeams]:  # noqa: F811
    """Two teams; every SubmitJob the CLI makes is checked against SubmitJob's rules."""
    from bertbatch.core import aws_clients as bertbatch_aws

    deployed = deploy(overrides=TWO_TEAMS)
    checker = SubmitJobRules(definition_of=deployed.job_definition, shares_of=deployed.share_identifiers)
    real = bertbatch_aws.make_client  # already the `attempts` injector
    monkeypatch.setattr(bertbatch_aws, "make_client", lambda service, **kwargs: checker.attach(
        real(service, **kwargs)) if service == "batch" else real(service, **kwargs))
    monkeypatch.delenv("BERT_BATCH_TEAM", raising=False)
    put_inputs(deployed)
    yield TwoTeams(deployed.names)
    assert checker.found == []


def run_for(platform, bb, attempts, run_id: str, team: str, hours: float) -> str:  # noqa: F811
    """A run of `team` whose one job ran `hours` on the Spot environment (g6.xlarge)."""
    job_id = submitted_id(bb("submit", "--run-name", run_id, "--team", team).output)
    instance = f"arn:aws:ecs:us-east-1:123456789012:container-instance/{platform.cluster('gpu-spot')}/i1"
    attempts[job_id] = [{"startedAt": T0, "stoppedAt": T0 + int(hours * HOUR),
                         "container": {"containerInstanceArn": instance, "exitCode": 0}}]
    platform.put_run(run_id)
    return job_id


def run_before_fair_share(platform, attempts, run_id: str) -> str:  # noqa: F811
    """A job as submitted before fair share: no share identifier, no team tag (straight to Batch)."""
    job_id = platform.batch.submit_job(
        jobName=run_id, jobQueue=platform.names[discovery.QUEUE_SPOT_FIRST],
        jobDefinition=platform.names[discovery.JOB_DEFINITION_SINGLE], tags={tags.TAG_RUN_ID: run_id})["jobId"]
    instance = f"arn:aws:ecs:us-east-1:123456789012:container-instance/{platform.cluster('gpu-spot')}/i1"
    attempts[job_id] = [{"startedAt": T0, "stoppedAt": T0 + HOUR, "container": {"containerInstanceArn": instance}}]
    platform.put_run(run_id)
    return job_id


@pytest.fixture
def three_runs(two_teams, bb, attempts) -> TwoTeams:  # noqa: F811
    """nlp-a (2 h) and nlp-b (1 h) of nlp, vis-a (4 h) of vision, old-run from before fair share."""
    run_for(two_teams, bb, attempts, "nlp-a", "nlp", 2)
    run_for(two_teams, bb, attempts, "vis-a", "vision", 4)
    run_for(two_teams, bb, attempts, "nlp-b", "nlp", 1)
    run_before_fair_share(two_teams, attempts, "old-run")
    return two_teams


def test_runs_json_has_each_runs_team_and_null_before_fair_share(three_runs, bb):
    result = bb("runs", "-o", "json")
    assert result.exit_code == 0, result.output
    by_run = {r["run_id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert {run: r["team"] for run, r in by_run.items()} == {
        "nlp-a": "nlp", "nlp-b": "nlp", "vis-a": "vision", "old-run": None}
    assert by_run["vis-a"]["cost"] == pytest.approx(4 * G6_SPOT)


def test_runs_table_has_a_team_column_with_a_dash_before_fair_share(three_runs, bb):
    result = bb("runs")
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split()[:4] == ["RUN", "ID", "STATE", "TEAM"]
    assert {row.split()[0]: row.split()[2] for row in rows} == {
        "nlp-a": "nlp", "nlp-b": "nlp", "vis-a": "vision", "old-run": "-"}


def test_runs_team_lists_that_teams_runs_and_their_total(three_runs, bb):
    result = bb("runs", "--team", "nlp")
    assert result.exit_code == 0, result.output
    header, *rows, total = result.output.splitlines()
    assert sorted(row.split()[0] for row in rows) == ["nlp-a", "nlp-b"]
    assert total == f"total for team nlp: ${3 * G6_SPOT:,.2f} over 2 run(s)"
    records = [json.loads(line) for line in bb("runs", "--team", "vision", "-o", "json").stdout.splitlines()]
    assert [(r["run_id"], r["team"]) for r in records] == [("vis-a", "vision")]


def test_runs_team_limit_counts_the_teams_runs_only(three_runs, bb):
    result = bb("runs", "--team", "nlp", "--limit", "1")
    assert result.exit_code == 0, result.output
    header, *rows, total = result.output.splitlines()
    assert len(rows) == 1 and total.endswith("over 1 run(s)")


def test_runs_team_of_nobody_totals_nothing(three_runs, bb):
    result = bb("runs", "--team", "robotics")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "total for team robotics: $0.00 over 0 run(s)"


@pytest.mark.parametrize(("args", "fragment"), [
    (["--local"], "--team with --local: local runs have no team"),
    (["--sweep", "sweep-x"], "--team with --sweep: a sweep runs for one team"),
])
def test_runs_team_with_local_or_sweep_is_refused(aws, bb, args, fragment):
    one_line_error(bb("runs", "--team", "nlp", *args), fragment)


def test_status_shows_the_team_and_a_dash_before_fair_share(three_runs, bb, attempts):  # noqa: F811
    record = json.loads(bb("status", "vis-a", "-o", "json").output)
    assert record["team"] == "vision"
    old = json.loads(bb("status", "old-run", "-o", "json").output)
    assert old["team"] is None
    lines = bb("status", "old-run").output.splitlines()
    assert "team:" in "".join(lines) and any(
        line.startswith("team:") and line.split(":", 1)[1].strip() == "- (submitted before fair share)"
        for line in lines)


def test_compare_shows_each_runs_team(three_runs, bb):
    result = bb("compare", "nlp-a", "vis-a", "old-run", "-o", "json")
    assert result.exit_code == 0, result.output
    assert [(r["run_id"], r["team"]) for r in map(json.loads, result.stdout.splitlines())] == [
        ("nlp-a", "nlp"), ("vis-a", "vision"), ("old-run", None)]
    header, *rows = bb("compare", "nlp-a", "vis-a", "old-run").output.splitlines()[:4]
    assert header.split()[:3] == ["RUN", "ID", "TEAM"]
    words = [row.split() for row in rows]
    assert ([w[w.index(run) + 1] for w, run in zip(words, ("nlp-a", "vis-a", "old-run"), strict=True)]
            == ["nlp", "vision", "-"])
