"""Every SubmitJob the CLI makes, checked against SubmitJob's rules for the job definition the
templates declare (moto accepts anything, and drops nodeProperties)."""

from __future__ import annotations

import json

import pytest

from bertbatch.jobs import ref_parameters as job_parameters
from bertbatch_contract import discovery, hyperparameters
from tests.platform_from_templates import Deployed, deploy
from tests.submit_job_rules import SubmitJobRules, check_cli_submits, node_range, violations

from .helpers import stage_model, submitted_id

SINGLE = {"type": "container", "parameters": {"model": "m"}, "containerProperties": {"command": ["--x", "Ref::x"]}}


def multi_node(target_nodes: str = "0:", num_nodes: int = 2) -> dict:
    return {"type": "multinode", "parameters": {"model": "m"}, "nodeProperties": {
        "numNodes": num_nodes, "mainNode": 0,
        "nodeRangeProperties": [{"targetNodes": target_nodes, "container": {"command": ["--x", "Ref::x"]}}]}}


def request(**extra) -> dict:
    return {"jobName": "run-1", "jobQueue": "q", "jobDefinition": "d", **extra}


# --- the rules themselves -----------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [("0:1", (0, 1)), ("0:", (0, None)), (":3", (0, 3)), ("2", (2, 2)),
                                                (":", (0, None))])
def test_node_range(text, expected):
    assert node_range(text) == expected


def test_num_nodes_needs_an_open_upper_bound():
    nodes = {"nodeOverrides": {"numNodes": 3, "nodePropertyOverrides": [{"targetNodes": "0:"}]}}
    assert violations(request(**nodes), multi_node("0:")) == []
    closed, uncovered = violations(request(**nodes), multi_node("0:1"))
    assert "no open upper bound" in closed and "(0:1)" in closed
    assert "targetNodes '0:': not inside" in uncovered  # nodes 0..2 against a definition of 0..1


def test_num_nodes_must_exceed_the_main_node_and_range_starts():
    nodes = {"nodeOverrides": {"numNodes": 1}}
    (line,) = violations(request(**nodes), multi_node("1:"))
    assert "lower bound" in line
    main_node_1 = multi_node("0:")
    main_node_1["nodeProperties"]["mainNode"] = 1
    (line,) = violations(request(**nodes), main_node_1)
    assert "main node index 1" in line


def test_target_nodes_inside_the_node_count_and_ranges():
    outside = {"nodeOverrides": {"nodePropertyOverrides": [{"targetNodes": "0:4"}]}}
    found = violations(request(**outside), multi_node("0:1"))
    assert any("outside nodes 0..1" in line for line in found)
    assert any("not inside the job definition's node ranges" in line for line in found)


def test_overrides_match_the_definition_type():
    assert any("multi-node" in line for line in violations(request(containerOverrides={}), multi_node()))
    assert any("only for multi-node" in line for line in violations(request(nodeOverrides={}), SINGLE))


def test_container_override_values():
    overrides = {"environment": [{"name": "AWS_BATCH_JOB_ID", "value": "x"}, {"name": "RUN_ID", "value": "r"}],
                 "resourceRequirements": [{"type": "GPU", "value": "0"}, {"type": "DISK", "value": "1"},
                                          {"type": "MEMORY", "value": "2048"}]}
    found = violations(request(containerOverrides=overrides), SINGLE)
    assert len(found) == 3, found
    assert "AWS_BATCH_JOB_ID" in found[0] and "GPU '0'" in found[1] and "DISK" in found[2]


def test_parameters_array_timeout_tags_and_name():
    assert violations(request(parameters={"x": "1", "model": "m"}), SINGLE) == []
    found = violations(request(jobName="-bad", parameters={"nope": "1"}, arrayProperties={"size": 1},
                               timeout={"attemptDurationSeconds": 59}, tags={"aws:x": "v", "k": "v" * 257}), SINGLE)
    assert [line.split(" ", 1)[0] for line in found] == [
        "jobName", "parameters.nope:", "arrayProperties.size", "timeout.attemptDurationSeconds", "tags:", "tags:"]
    assert violations(request(tags={f"k{i}": "v" for i in range(51)}), SINGLE) == ["tags: 51 tags, the maximum is 50"]


# --- the CLI's requests on the template platform ------------------------------------------
@pytest.fixture
def deployed(aws) -> Deployed:
    return deploy()


@pytest.fixture
def rules(deployed, monkeypatch) -> SubmitJobRules:
    """Checks the SubmitJob calls of every Batch client the CLI makes."""
    from bertbatch.core import aws_clients as aws

    checker = SubmitJobRules(definition_of=deployed.job_definition, shares_of=deployed.share_identifiers)
    real = aws.make_client

    def make_client(service, **kwargs):
        client = real(service, **kwargs)
        return checker.attach(client) if service == "batch" else client

    monkeypatch.setattr(aws, "make_client", make_client)
    return checker


def put_inputs(deployed: Deployed) -> None:
    """The job definitions' default inputs (the CLI checks they exist before submitting)."""
    from tests.cli.conftest import client

    s3 = client("s3")
    stage_model(s3, deployed.names[discovery.ARTIFACTS_BUCKET], str(hyperparameters.default("model")))
    for key in ("datasets/train.tsv", "datasets/dev.tsv"):
        s3.put_object(Bucket=deployed.names[discovery.DATA_BUCKET], Key=key, Body=b"sentence\tlabel\ngood\t1\n")


def sample_value(row: hyperparameters.Hyperparameter) -> str:
    """A value the table accepts for `row`: its default, else its first choice, its minimum or a
    column name."""
    if row.default is not None:
        return hyperparameters.format_value(row.default)
    if row.choices:
        return row.choices[0]
    return hyperparameters.format_value(row.minimum) if row.minimum is not None else "hypothesis"


@pytest.mark.parametrize("args", [
    pytest.param([], id="defaults"),
    pytest.param(["--run-name", "sst2-a", "--epochs", "2", "--learning-rate", "3e-5", "--gpus", "2", "--timeout",
                  "90m"], id="hyperparameters-gpus-timeout"),
    pytest.param(["--on-demand", "--timeout", "60"], id="on-demand"),
    pytest.param(["--array", "3"], id="array"),
    pytest.param(["--nodes", "2"], id="nodes-2"),
    pytest.param(["--nodes", "2", "--gpus", "4"], id="nodes-2-gpus-4"),
    pytest.param(["--warmup-ratio", "0.06", "--seed", "7", "--text-pair-column", "hypothesis", "--max-steps", "100",
                  "--weight-decay", "0", "--gradient-accumulation-steps", "4", "--precision", "bf16",
                  "--early-stopping-patience", "2", "--early-stopping-metric", "eval_f1"], id="trainer-flags"),
    pytest.param([arg for row in job_parameters.OPTION_ROWS for arg in (row.flag, sample_value(row))],
                 id="every-option-of-the-table"),
])
def test_cli_submits_follow_the_rules(deployed, rules, bb, args):
    put_inputs(deployed)
    result = bb("submit", *args)
    assert result.exit_code == 0, result.output
    submitted_id(result.output)
    assert rules.checked == 1
    assert rules.found == []


def test_grid_sweep_follows_the_rules(deployed, rules, bb, tmp_path):
    put_inputs(deployed)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"learning_rate": ["2e-5", "3e-5"], "epochs": ["1", "2"]}))
    result = bb("submit", "--grid", grid)
    assert result.exit_code == 0, result.output
    assert (rules.checked, rules.found) == (1, [])


def test_the_checker_sees_what_moto_lets_through(deployed, rules, bb):
    """A request AWS would reject goes through moto: only the checker catches it."""
    from tests.cli.conftest import client

    batch = rules.attach(client("batch"))
    batch.submit_job(jobName="bad", jobQueue=deployed.names[discovery.QUEUE_SPOT_FIRST],
                     jobDefinition=deployed.names[discovery.JOB_DEFINITION_SINGLE],
                     containerOverrides={"environment": [{"name": "AWS_BATCH_X", "value": "1"}]},
                     timeout={"attemptDurationSeconds": 10})
    assert len(rules.found) == 3, rules.found  # the environment, the timeout, no shareIdentifier


# --- fair share: every queue has a scheduling policy ----------------------------------------
def test_share_identifier_rules():
    from tests.submit_job_rules import share_violations

    assert share_violations(request(), None) == []
    assert share_violations(request(shareIdentifier="nlp"), None) == [
        "shareIdentifier: the queue has no scheduling policy, so AWS rejects one"]
    assert share_violations(request(), {"nlp"}) == [
        "shareIdentifier: missing, and the queue's fair-share scheduling policy requires one"]
    assert share_violations(request(shareIdentifier="data-science"), {"nlp"}) == [
        "shareIdentifier 'data-science': 1-255 letters and digits"]
    assert share_violations(request(shareIdentifier="other"), {"nlp"}) == []  # weight 1 in the policy


TWO_TEAMS = {"teams.weights": '{"nlp": 4, "vision": 1}', "teams.default": "vision"}


@pytest.fixture
def two_teams(aws, monkeypatch) -> tuple[Deployed, SubmitJobRules, list[dict]]:
    """A platform of two teams; every SubmitJob is checked and recorded."""
    deployed = deploy(overrides=TWO_TEAMS)
    checker = SubmitJobRules(definition_of=deployed.job_definition, shares_of=deployed.share_identifiers)
    sent = check_cli_submits(monkeypatch, checker)
    monkeypatch.delenv("BERT_BATCH_TEAM", raising=False)
    return deployed, checker, sent


@pytest.mark.parametrize(("args", "env", "team"), [
    pytest.param([], None, "vision", id="the-deployment-default"),
    pytest.param(["--team", "nlp"], None, "nlp", id="flag"),
    pytest.param([], "nlp", "nlp", id="environment"),
    pytest.param(["--team", "vision"], "nlp", "vision", id="flag-over-environment"),
])
def test_submit_runs_in_the_team_share_and_tags_the_job(two_teams, bb, monkeypatch, args, env, team):
    deployed, checker, sent = two_teams
    if env:
        monkeypatch.setenv("BERT_BATCH_TEAM", env)
    put_inputs(deployed)
    result = bb("submit", *args)
    assert result.exit_code == 0, result.output
    (request_,) = sent
    assert request_["shareIdentifier"] == team
    assert request_["tags"]["bert-batch:team"] == team
    assert checker.found == []


def test_an_unknown_team_is_refused_before_anything_is_submitted(two_teams, bb):
    deployed, checker, sent = two_teams
    put_inputs(deployed)
    result = bb("submit", "--team", "robotics")
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1] == (
        "Error: --team: team 'robotics' is not one of this deployment's teams (nlp, vision): "
        "add it to the teams.weights config and redeploy, or pick another")
    assert sent == []


def test_prepare_children_and_merge_run_in_the_team_share(two_teams, bb):
    from tests.cli.conftest import client

    deployed, checker, sent = two_teams
    stage_model(client("s3"), deployed.names[discovery.ARTIFACTS_BUCKET], "bert-base-uncased")
    client("s3").put_object(Bucket=deployed.names[discovery.DATA_BUCKET], Key="datasets/big/part-0.jsonl",
                            Body=b'{"text": "good", "label": 1}\n')
    result = bb("prepare", "--input", "big/", "--model", "bert-base-uncased", "--team", "nlp")
    assert result.exit_code == 0, result.output
    assert [(r["shareIdentifier"], r["tags"]["bert-batch:team"]) for r in sent] == [("nlp", "nlp")] * 2
    assert checker.found == []
