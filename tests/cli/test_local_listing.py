"""`--local` on runs, models list, models show and compare: `bertbatch local`'s runs and the
registry of `promote --local`, listed from local-runs/ in the current directory without AWS."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bertbatch.ui.json_fields import FIELDS
from bertbatch_contract import layout

from .helpers import FIRST, LOCAL_ROOT, SECOND, one_line_error, put_local_run

ROOT = Path(LOCAL_ROOT)  # relative: the tests run in their own tmp_path


@pytest.fixture
def no_aws(monkeypatch):
    """Every boto3 client the CLI would make: none may be made."""
    from bertbatch.core import aws_clients as aws

    made: list[str] = []

    def refuse(service, **kwargs):
        made.append(service)
        raise AssertionError(f"a {service} client was made with --local")

    monkeypatch.setattr(aws, "make_client", refuse)
    yield made
    assert made == []


@pytest.fixture
def here(tmp_path, monkeypatch, no_aws) -> Path:
    """An empty current directory (no local-runs/ yet)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lines(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_runs_local_lists_the_runs_like_runs_on_s3(here, bb):
    put_local_run(FIRST, 0.8123, 2e-5, finished_at=1_700_000_000)
    put_local_run(SECOND, 0.85, 5e-5, finished_at=1_700_000_600)
    put_local_run("still-training", None, 3e-5)
    records = lines(bb("runs", "--local", "-o", "json"))
    assert all(list(r) == list(FIELDS["runs"]) for r in records)
    # Running first, then finished newest first, as on S3.
    assert [(r["run_id"], r["state"]) for r in records] == [
        ("still-training", "running"), (SECOND, "finished"), (FIRST, "finished")]
    assert records[1]["finished"] == "2023-11-14T22:23:20Z" and records[1]["metrics"]["eval_accuracy"] == 0.85
    assert {r["cost"] for r in records} == {None}

    table = bb("runs", "--local")
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split()[:2] == ["RUN", "ID"]
    assert FIRST in table.output and "0.8123" in table.output and "running" in table.output
    assert [line.split()[0] for line in lines_of(bb("runs", "--local", "--limit", "1"))[1:]] == ["still-training"]


def lines_of(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_empty_local_runs_and_no_local_runs(here, bb):
    for args in (("runs",), ("models", "list"), ("models", "show", "tiny"), ("compare", FIRST)):
        one_line_error(bb(*args, "--local"), "no local-runs/ in", "run bertbatch local first")
    (here / "local-runs").mkdir()
    assert bb("runs", "--local").output == "No runs under local-runs/runs/\n".replace("/", os.sep)
    assert lines(bb("runs", "--local", "-o", "json")) == []
    assert "No models registered under local-runs" in bb("models", "list", "--local").output
    one_line_error(bb("models", "show", "tiny", "--local"), "model 'tiny' has no registered versions",
                   "bertbatch models list --local")
    one_line_error(bb("runs", "--local", "--sweep", "s"), "--sweep with --local")


def test_local_run_promote_list_show(here, bb):
    put_local_run(FIRST, 0.8123, 2e-5)
    put_local_run(SECOND, 0.85, 5e-5)
    for run_id, alias in ((FIRST, "production"), (SECOND, "staging")):
        r = bb("promote", run_id, "--name", "tiny", "--alias", alias, "--local")
        assert r.exit_code == 0, r.output

    (listed,) = lines(bb("models", "list", "--local", "-o", "json"))
    assert list(listed) == list(FIELDS["models list"])
    assert (listed["name"], listed["kind"], listed["state"], listed["versions"], listed["aliases"]) == (
        "tiny", "registered", "registered", 2, {"production": 1, "staging": 2})
    assert Path(listed["uri"]) == ROOT / "models" / "tiny" and listed["source"] == SECOND
    table = bb("models", "list", "--local", width=200).output
    assert "production=1, staging=2" in table and "registered" in table

    shown = lines(bb("models", "show", "tiny", "--local", "-o", "json"))
    assert all(list(r) == list(FIELDS["models show"]) for r in shown)
    assert [(r["version"], r["run_id"], r["aliases"]) for r in shown] == [(1, FIRST, ["production"]),
                                                                           (2, SECOND, ["staging"])]
    assert Path(shown[0]["uri"]) == ROOT / "runs" / FIRST
    assert shown[0]["data"] == {"train": "data/train.tsv", "eval": "data/dev.tsv", "text_column": "sentence"}
    table = bb("models", "show", "tiny", "--local").output
    assert FIRST in table and "0.8123" in table and "production" in table


def test_compare_local_run_ids(here, bb):
    put_local_run(FIRST, 0.8123, 2e-5)
    put_local_run(SECOND, 0.85, 5e-5)
    (ROOT / layout.checkpoint_prefix("interrupted")).mkdir(parents=True)  # checkpoints only: still training
    records = lines(bb("compare", FIRST, SECOND, "interrupted", "--local", "-o", "json"))
    assert all(list(r) == list(FIELDS["compare"]) for r in records)
    assert [(r["run_id"], r["source"], r["state"], r["best"]) for r in records] == [
        (FIRST, "local", "finished", False), (SECOND, "local", "finished", True), ("interrupted", "local", "running",
                                                                                   False)]
    assert records[0]["duration_seconds"] == 12.5 and records[0]["attempts"] is None and records[0]["cost"] is None

    r = bb("compare", FIRST, SECOND, "--local")
    assert r.exit_code == 0, r.output
    header, *rows = r.output.splitlines()
    assert "LEARNING_RATE" in header and "EPOCHS" not in header
    assert rows[1].startswith("*") and "5e-5" in rows[1] and "2e-5" in rows[0]  # as the command line takes them
    assert f"best eval_accuracy: {SECOND}" in r.output
    # A directory still works with --local, next to run ids.
    assert lines(bb("compare", FIRST, str(ROOT / "runs" / SECOND), "--local", "-o", "json"))[1]["run_id"] == SECOND
    one_line_error(bb("compare", "nope", "--local"), "no such run: nope", "bertbatch runs --local")
