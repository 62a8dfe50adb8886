"""--output json of every command against the documented fields, and the terminal output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest

from bertbatch.cli import cli
from bertbatch.ui.json_fields import FIELDS
from bertbatch_contract import discovery

from .helpers import submit

# The platform's jobs cannot reach the internet: the default model must be staged to submit.
pytestmark = pytest.mark.usefixtures("default_model_staged")


DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def documented_fields(command: str) -> list[str]:
    """The field column of the table under '### JSON fields of `command`' in docs/cli.md."""
    text = DOCS.read_text(encoding="utf-8")
    heading = f"### JSON fields of `{command}`"
    assert heading in text, heading
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)


@pytest.mark.parametrize("command", sorted(FIELDS))
def test_docs_list_the_json_fields_of_each_command(command):
    assert documented_fields(command) == list(FIELDS[command])


def leaf_commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    """Every command by its full name ("models list"), inside groups too."""
    out: dict[str, click.Command] = {}
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out.update(leaf_commands(cmd, f"{prefix}{name} "))
        else:
            out[prefix + name] = cmd
    return out


def test_every_command_with_output_has_documented_fields():
    with_output = {name for name, cmd in leaf_commands(cli).items()
                   if any("--output" in getattr(p, "opts", []) and not getattr(p, "hidden", False)
                          for p in cmd.params)}
    # "estimate --idle": a mode of estimate with its own record
    assert with_output == {name.split(" --")[0] for name in FIELDS}


def records(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_submit_json(platform, bb):
    train = platform.put_dataset("datasets/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    (record,) = records(bb("submit", "--train", train, "--run-name", "js", "-o", "json"))
    assert list(record) == list(FIELDS["submit"])
    assert record["run_id"] == "js" and record["queue"] == platform.names[discovery.QUEUE_SPOT_FIRST]
    assert record["job_definition"] == platform.names[discovery.JOB_DEFINITION_SINGLE]
    assert record["array_size"] is None and record["console_url"].endswith(record["job_id"])


def test_status_json_fields(platform, bb):
    job_id = submit(platform, bb, "--run-name", "st")
    (record,) = records(bb("status", job_id, "--output", "json"))
    assert list(record) == list(FIELDS["status"])
    assert (record["job_id"], record["run_id"], record["status"]) == (job_id, "st", "SUCCEEDED")
    assert record["created"].endswith("Z") and record["attempts"] >= 0
    assert record["fallback_from"] is None and record["fallback_to"] is None and record["array_states"] is None


def test_list_json_lines(platform, bb):
    first = submit(platform, bb, "--run-name", "l1")
    second = submit(platform, bb, "--run-name", "l2")
    lines = records(bb("list", "--state", "SUCCEEDED", "-o", "json"))
    assert all(list(r) == list(FIELDS["list"]) for r in lines)
    assert {r["job_id"]: r["name"] for r in lines} == {first: "l1", second: "l2"}
    assert {r["status"] for r in lines} == {"SUCCEEDED"}


def test_list_json_with_no_jobs_prints_nothing(platform, bb):
    assert records(bb("list", "-o", "json")) == []


def test_artifacts_json_with_download(platform, bb, tmp_path):
    platform.put_run("aj", {"eval_accuracy": 0.5}, {"checkpoints/aj/step-1/state.pt": b"ckpt"})
    r = bb("artifacts", "aj", "-o", "json", "--download", tmp_path)
    lines = records(r)
    assert all(list(x) == list(FIELDS["artifacts"]) for x in lines)
    by_kind = {x["kind"]: x for x in lines}
    b = platform.artifacts_bucket
    assert by_kind["output"]["uri"] == f"s3://{b}/runs/aj/metrics.json" and by_kind["output"]["size"] > 0
    assert Path(by_kind["output"]["downloaded_to"]).read_text() == '{"eval_accuracy": 0.5}'
    assert by_kind["checkpoint"]["downloaded_to"] is None  # --checkpoints not given
    assert "Downloaded 1 file(s)" in r.stderr  # people's lines stay off stdout


def test_estimate_json_fields(bb):
    (record,) = records(bb("estimate", "--rows", "1000", "-o", "json", "--offline"))
    assert list(record) == list(FIELDS["estimate"])
    assert record["rows"] == 1000 and record["choice"] in record["options"]


def test_watch_json_record(platform, bb):
    job_id = submit(platform, bb, "--run-name", "wj")
    platform.put_run("wj", {"eval_accuracy": 0.75})
    r = bb("watch", job_id, "--poll", "0.01", "-o", "json")
    (record,) = records(r)
    assert list(record) == list(FIELDS["watch"])
    assert record["job_id"] == job_id and record["jobs"] == [job_id] and record["status"] == "SUCCEEDED"
    assert record["metrics"] == {"eval_accuracy": 0.75}
    assert record["outputs_uri"] == f"s3://{platform.artifacts_bucket}/runs/wj/"
    assert "SUCCEEDED" in r.stderr  # the state lines went to stderr


def test_watch_json_on_failure_exits_3_with_the_record(platform, bb):
    job_id = submit(platform, bb, "--run-name", "wf")
    moto_job = platform.moto_job(job_id)
    moto_job.status, moto_job.job_stopped_reason = "FAILED", "Essential container in task exited"
    r = bb("watch", job_id, "--poll", "0.01", "--fallback-grace", "0", "-o", "json")
    assert r.exit_code == 3
    record = json.loads(r.stdout)
    assert record["status"] == "FAILED" and record["status_reason"] == "Essential container in task exited"
    assert r.stderr.strip().splitlines()[-1].startswith(f"Error: job {job_id} FAILED")


def test_tables_fit_a_forced_width_without_escape_codes(platform, bb):
    platform.put_run("a-run-with-a-rather-long-name-for-a-narrow-terminal", {"eval_accuracy": 0.5})
    wide = bb("runs")
    narrow = bb("runs", width=60)
    assert wide.exit_code == narrow.exit_code == 0
    assert max(map(len, wide.output.splitlines())) > 60
    assert max(map(len, narrow.output.splitlines())) <= 60
    assert "\x1b" not in wide.output + narrow.output
    assert all(line == line.rstrip() for line in wide.output.splitlines())
