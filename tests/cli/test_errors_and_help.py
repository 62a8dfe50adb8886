"""Errors common to every AWS command, the one client factory, and --help examples."""

from __future__ import annotations

import pytest

from bertbatch.cli import cli
from bertbatch.core import aws_clients as aws
from bertbatch_contract import discovery, hyperparameters, job

from .helpers import first_list_jobs, one_line_error, refused

# The platform's jobs cannot reach the internet: the default model must be staged to submit.
pytestmark = pytest.mark.usefixtures("default_model_staged")


AWS_COMMANDS = [
    ["submit"], ["watch", "j", "--poll", "0.01"], ["status", "j"], ["logs", "j"], ["list"], ["cancel", "j"],
    ["artifacts", "r"], ["runs"],
]


@pytest.mark.parametrize("args", AWS_COMMANDS, ids=lambda a: a[0])
def test_no_credentials(aws_credentials, monkeypatch, bb, args):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    one_line_error(bb(*args), "no AWS credentials found")


# status and cancel need only the job id, not the deployment's names
NEEDS_DEPLOYMENT = [a for a in AWS_COMMANDS if a[0] not in ("status", "cancel")]


@pytest.mark.parametrize("args", NEEDS_DEPLOYMENT, ids=lambda a: a[0])
def test_not_deployed(aws, bb, args):
    one_line_error(bb(*args, "--profile", "prod"),
                   "bert-batch is not deployed for profile 'prod' in us-east-1 "
                   "(no SSM parameters under /bert-batch/prod/)")


def test_unknown_aws_profile(aws_credentials, bb):
    one_line_error(bb("list", "--aws-profile", "nobody"), "AWS profile 'nobody' not found")


def test_profile_from_environment(platform, bb, monkeypatch):
    monkeypatch.setenv(job.ENV_PROFILE, "qa")
    one_line_error(bb("list"), "profile 'qa'")


def test_region_option_reaches_the_client_factory(platform, bb, monkeypatch):
    seen = []
    real = aws.make_client

    def spy(service, **kwargs):
        seen.append((service, kwargs))
        return real(service, **kwargs)

    monkeypatch.setattr(aws, "make_client", spy)
    one_line_error(bb("list", "--region", "eu-west-1", "--aws-profile", "default"))
    assert seen and all(kw == {"region": "eu-west-1", "aws_profile": "default"} for _, kw in seen)


def test_aws_error_is_one_line(platform, bb, monkeypatch):
    real = aws.make_client

    def make_client(service, **kwargs):
        client = real(service, **kwargs)
        if service != "batch":
            return client
        return refused(client, "list_jobs", "AccessDeniedException", "not allowed\nat all", first_list_jobs(platform))

    monkeypatch.setattr(aws, "make_client", make_client)
    one_line_error(bb("list"), "ListJobs failed: AccessDeniedException: not allowed at all")


def command_names():
    return sorted(cli.commands)


def test_every_command_is_there():
    assert set(command_names()) >= {"submit", "watch", "logs", "status", "list", "cancel", "artifacts",
                                    "runs", "estimate", "local"}


@pytest.mark.parametrize("name", command_names())
def test_help_has_examples(bb, name):
    r = bb(name, "--help")
    assert r.exit_code == 0
    assert "Examples:" in r.output
    example_lines = r.output.split("Examples:", 1)[1].split("Options:", 1)[0]
    assert f"bertbatch {name}" in example_lines


def test_group_help_has_examples(bb):
    r = bb("--help")
    assert r.exit_code == 0 and "Examples:" in r.output


@pytest.mark.parametrize("name", ["submit", "local"])
def test_every_hyperparameter_is_an_option(name):
    """Every trainer flag of the table, unless the table says why it is container-only."""
    flags = {opt for p in cli.commands[name].params for opt in getattr(p, "opts", [])}
    for row in hyperparameters.HYPERPARAMETERS:
        if not row.container_only:
            assert row.flag in flags, (name, row.flag)
    assert hyperparameters.JOB_PARAMETERS["train_uri"].flag in flags
    assert hyperparameters.JOB_PARAMETERS["eval_uri"].flag in flags


@pytest.mark.parametrize("name", ["submit", "watch", "status", "logs", "list", "cancel", "artifacts", "runs"])
def test_aws_commands_take_profile_region_and_aws_profile(name):
    flags = {opt for p in cli.commands[name].params for opt in getattr(p, "opts", [])}
    assert {"--profile", "--region", "--aws-profile"} <= flags


def test_discovery_keys_used_exist():
    from bertbatch.jobs import aws_batch as jobs

    assert set(jobs.QUEUE_KEYS.values()) <= set(discovery.KEYS)


@pytest.mark.parametrize(("args", "fragment"), [
    (["watch"], "Missing argument 'JOB'. (see: bertbatch watch --help)"),
    (["submit", "--nodes", "x"], "'--nodes': 'x' is not a valid integer"),
    (["list", "--state", "DONE"], "'--state'"),
    (["frobnicate"], "No such command 'frobnicate'"),
])
def test_usage_errors_are_one_line(bb, args, fragment):
    r = bb(*args)
    assert r.exit_code == 2
    one_line_error(r, fragment)


def test_aws_options_before_the_command(platform, bb, monkeypatch):
    one_line_error(bb("--profile", "qa", "list"), "profile 'qa'")
    monkeypatch.setenv(job.ENV_PROFILE, "qa")
    assert bb("--profile", "dev", "list").exit_code == 0  # the flag beats the environment
    assert bb("list", "--profile", "dev").exit_code == 0
    # the command's own flag wins
    one_line_error(bb("--profile", "dev", "list", "--profile", "stage"), "profile 'stage'")


def test_region_before_the_command(platform, bb, monkeypatch):
    seen = []
    real = aws.make_client
    monkeypatch.setattr(aws, "make_client", lambda service, **kw: (seen.append(kw), real(service, **kw))[1])
    bb("--region", "eu-central-1", "runs")
    assert seen and all(kw["region"] == "eu-central-1" for kw in seen)


def test_region_from_aws_region_env(aws_credentials, bb, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-2")
    seen = []
    monkeypatch.setattr(aws, "make_client", lambda service, **kw: (seen.append(kw), (_ for _ in ()).throw(
        aws.BertBatchError("stop")))[1])
    one_line_error(bb("list"), "stop")
    assert seen[0]["region"] == "eu-west-2"


def test_no_region(aws_credentials, bb, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    one_line_error(bb("list"), "no AWS region: pass --region")
