"""Shell completion of job ids and run ids, and --debug's traceback and AWS request id."""

from __future__ import annotations

import pytest
from click.shell_completion import ShellComplete

from bertbatch.cli import cli
from bertbatch.core import aws_clients as aws

from .helpers import first_list_jobs, one_line_error, refused, submit

# The platform's jobs cannot reach the internet: the default model must be staged to submit.
pytestmark = pytest.mark.usefixtures("default_model_staged")


def complete(*words: str) -> list[str]:
    """What the shell would offer after `bertbatch WORDS...` (the last word is being typed)."""
    *args, incomplete = words
    return [item.value for item in ShellComplete(cli, {}, "bertbatch", "_BERTBATCH_COMPLETE").get_completions(
        list(args), incomplete)]


def test_job_ids_are_completed_from_the_profile(platform, bb):
    first = submit(platform, bb, "--run-name", "c1")
    second = submit(platform, bb, "--run-name", "c2", "--on-demand")
    for command in ("watch", "status", "logs", "cancel"):
        assert set(complete(command, "")) == {first, second}, command
    assert complete("status", first[:8]) == [first]


def test_run_ids_are_completed_from_the_artifacts_bucket(platform):
    platform.put_run("sst2-a", {"eval_accuracy": 0.5})
    platform.put_run("sst2-b", None, {"checkpoints/sst2-b/x": b"1", "runs/sst2-b/partial": b"1"})
    platform.put_run("other", {"eval_accuracy": 0.5})
    assert complete("artifacts", "sst2") == ["sst2-a", "sst2-b"]


def test_completion_uses_the_profile_on_the_command_line(platform, bb):
    submit(platform, bb)
    assert complete("--profile", "prod", "status", "") == []  # nothing deployed for prod
    assert complete("status", "--profile", "prod", "") == []
    assert len(complete("--profile", "dev", "status", "")) == 1


def test_completion_without_credentials_completes_nothing_silently(aws_credentials, monkeypatch, capsys):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert complete("status", "") == [] and complete("artifacts", "") == []
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""


def test_completion_script_for_bash(bb, monkeypatch):
    from click.testing import CliRunner

    r = CliRunner().invoke(cli, [], prog_name="bertbatch", env={"_BERTBATCH_COMPLETE": "bash_source"})
    assert r.exit_code == 0 and "_BERTBATCH_COMPLETE=bash_complete" in r.output


def access_denied(monkeypatch, platform):
    """ListJobs is refused, with a request id, on the Batch client of the CLI's one client factory."""
    real = aws.make_client

    def make_client(service, **kwargs):
        client = real(service, **kwargs)
        if service != "batch":
            return client
        return refused(client, "list_jobs", "AccessDeniedException", "not allowed", first_list_jobs(platform),
                       RequestId="req-1234")

    monkeypatch.setattr(aws, "make_client", make_client)


def test_debug_shows_the_traceback_and_the_request_id(platform, bb, monkeypatch):
    access_denied(monkeypatch, platform)
    r = bb("--debug", "list")
    assert r.exit_code == 1
    assert "Traceback (most recent call last)" in r.stderr and "botocore.exceptions.ClientError" in r.stderr
    assert "AWS request id (ListJobs: req-1234)" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "Error: ListJobs failed: AccessDeniedException: not allowed"


def test_without_debug_the_error_stays_one_line(platform, bb, monkeypatch):
    access_denied(monkeypatch, platform)
    one_line_error(bb("list"), "ListJobs failed")


@pytest.mark.parametrize("args", [["--debug", "status", "nope"], ["--debug", "watch", "j", "--poll", "0"]])
def test_debug_on_errors_that_are_not_aws_errors(platform, bb, args):
    r = bb(*args)
    assert r.exit_code == 1 and "Traceback" in r.stderr and "AWS request id" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: ")
