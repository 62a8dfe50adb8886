"""A bert-batch platform in moto: SSM parameters, Batch queues and job definitions, buckets and
the log group, named the way the stacks name them (bertbatch_contract.naming)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from moto import mock_aws

from bertbatch.cli import cli
from bertbatch.core.session import Session
from bertbatch_contract import discovery, hyperparameters, job, layout
from bertbatch_contract.naming import Naming

PROFILE = "dev"
REGION = "us-east-1"
# dev with FSx on (off by default to keep its idle cost down): the CLI's /fsx paths are tested on it,
# and the tests that need no FSx publish fsx-mount-path "none" themselves.
PLATFORM_OVERRIDES = {"data.fsx.enabled": "true"}
ACCOUNT = "123456789012"  # moto's default account
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MOTO_CONFIG = {"batch": {"use_docker": False}}  # no Docker engine: jobs are marked SUCCEEDED at once


@dataclass
class Platform:
    profile: str
    region: str
    names: dict[str, str]  # discovery key -> value
    clients: dict[str, object] = field(default_factory=dict)

    def client(self, service: str):
        if service not in self.clients:
            self.clients[service] = client(service, self.region)
        return self.clients[service]

    @property
    def batch(self):
        return self.client("batch")

    @property
    def s3(self):
        return self.client("s3")

    @property
    def logs(self):
        return self.client("logs")

    @property
    def data_bucket(self) -> str:
        return self.names[discovery.DATA_BUCKET]

    @property
    def artifacts_bucket(self) -> str:
        return self.names[discovery.ARTIFACTS_BUCKET]

    @property
    def log_group(self) -> str:
        return self.names[discovery.LOG_GROUP]

    def put_dataset(self, key: str, body: bytes = b"sentence\tlabel\ngood\t1\n") -> str:
        self.s3.put_object(Bucket=self.data_bucket, Key=key, Body=body)
        return f"s3://{self.data_bucket}/{key}"

    def put_run(self, run_id: str, metrics: dict | None, extra: dict[str, bytes] | None = None) -> None:
        if metrics is not None:
            self.s3.put_object(
                Bucket=self.artifacts_bucket,
                Key=layout.run_prefix(run_id) + layout.METRICS_FILE,
                Body=json.dumps(metrics).encode(),
            )
        for key, body in (extra or {}).items():
            self.s3.put_object(Bucket=self.artifacts_bucket, Key=key, Body=body)

    def job(self, job_id: str) -> dict:
        return self.batch.describe_jobs(jobs=[job_id])["jobs"][0]

    def moto_job(self, job_id: str):
        """moto's job object, to put a job into a state moto's simple Batch never reaches."""
        from moto.batch.models import batch_backends

        return batch_backends[ACCOUNT][self.region]._jobs[job_id]

    def write_log(self, stream: str, lines: list[str]) -> None:
        now = int(time.time() * 1000)  # CloudWatch rejects events older than 14 days
        try:
            self.logs.create_log_stream(logGroupName=self.log_group, logStreamName=stream)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass
        self.logs.put_log_events(
            logGroupName=self.log_group,
            logStreamName=stream,
            logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
        )


def client(service: str, region: str = REGION):
    from bertbatch.core.aws_clients import boto_session

    return boto_session(region=region).client(service)


@pytest.fixture
def aws_credentials(monkeypatch, tmp_path):
    """Fake credentials and no real AWS config, so nothing can reach an account."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                "BERT_BATCH_PROFILE", "BERT_BATCH_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def build_platform(profile: str = PROFILE, region: str = REGION) -> Platform:
    naming = Naming(profile)
    name = naming.resource
    iam = client("iam", region)
    role = iam.create_role(
        RoleName=name("batch-service"),
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    batch = client("batch", region)
    ce = batch.create_compute_environment(
        computeEnvironmentName=name("gpu"), type="UNMANAGED", state="ENABLED", serviceRole=role
    )["computeEnvironmentArn"]
    queues = {}
    for key in (discovery.QUEUE_SPOT_FIRST, discovery.QUEUE_ON_DEMAND, discovery.QUEUE_MULTI_NODE):
        kind = key.split("/", 1)[1]
        batch.create_job_queue(
            jobQueueName=name(kind), state="ENABLED", priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
        )
        queues[key] = name(kind)

    data_bucket = f"{name('data')}-{ACCOUNT}"
    artifacts_bucket = f"{name('artifacts')}-{ACCOUNT}"
    log_group = naming.log_group("training")
    s3 = client("s3", region)
    for bucket in (data_bucket, artifacts_bucket):
        s3.create_bucket(Bucket=bucket)
    client("logs", region).create_log_group(logGroupName=log_group)

    command = ["python", "-m", "bert_train", *hyperparameters.job_command()]
    defaults = {
        **hyperparameters.parameter_defaults(),
        "train_uri": f"s3://{data_bucket}/datasets/train.tsv",
        "eval_uri": f"s3://{data_bucket}/datasets/dev.tsv",
    }
    container = {
        "image": f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/bert-train:latest",
        "command": command,
        "resourceRequirements": [
            {"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "15000"}, {"type": "GPU", "value": "1"},
        ],
        "environment": [{"name": job.ENV_PROFILE, "value": profile}],
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": log_group}},
    }
    single = batch.register_job_definition(
        jobDefinitionName=name("bert-finetune"), type="container", parameters=defaults,
        containerProperties=container, propagateTags=True,
    )["jobDefinitionArn"]
    multi = batch.register_job_definition(
        jobDefinitionName=name("bert-finetune-multinode"), type="multinode", parameters=defaults,
        nodeProperties={"numNodes": 2, "mainNode": 0,
                        "nodeRangeProperties": [{"targetNodes": "0:", "container": container}]},
        propagateTags=True,
    )["jobDefinitionArn"]

    names = {
        **queues,
        discovery.JOB_DEFINITION_SINGLE: single,
        discovery.JOB_DEFINITION_MULTI_NODE: multi,
        discovery.DATA_BUCKET: data_bucket,
        discovery.ARTIFACTS_BUCKET: artifacts_bucket,
        discovery.LOG_GROUP: log_group,
        discovery.FSX_MOUNT_PATH: "none",
        discovery.METRICS_NAMESPACE: "BertBatch",
    }
    ssm = client("ssm", region)
    for key, value in names.items():
        ssm.put_parameter(Name=naming.parameter(key), Value=value, Type="String")
    return Platform(profile=profile, region=region, names=names)


@pytest.fixture
def aws(aws_credentials):
    """moto without a platform (nothing deployed)."""
    with mock_aws(config=MOTO_CONFIG):
        yield


@pytest.fixture
def platform(aws, monkeypatch) -> Iterator[Platform]:
    """The platform the synthesized templates declare (tests/platform_from_templates.py); every
    SubmitJob a test makes through the CLI is checked against SubmitJob's rules."""
    from bertbatch.core import aws_clients as bertbatch_aws
    from tests.platform_from_templates import deploy
    from tests.submit_job_rules import SubmitJobRules

    deployed = deploy(PROFILE, REGION, PLATFORM_OVERRIDES)
    rules = SubmitJobRules(definition_of=deployed.job_definition, shares_of=deployed.share_identifiers)
    real = bertbatch_aws.make_client
    monkeypatch.setattr(bertbatch_aws, "make_client",
                        lambda service, **kwargs: rules.attach(real(service, **kwargs)) if service == "batch"
                        else real(service, **kwargs))
    yield Platform(profile=PROFILE, region=REGION, names=deployed.names)
    assert rules.found == [], rules.found


TERMINAL_WIDTH = 200  # forced (a wide terminal), so that what the tests read does not depend on the machine


@pytest.fixture
def bb():
    """Run `bertbatch ARGS...` through click's runner (no terminal, colour off, a fixed width);
    returns the Result. `sleep`: what the polling commands call instead of waiting."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None, width: int = TERMINAL_WIDTH, sleep=None):
        obj = Session(sleep=sleep) if sleep else None
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False, prog_name="bertbatch",
                             terminal_width=width, color=False, obj=obj)

    return run


@pytest.fixture
def submit_spy(monkeypatch):
    """Records the parameters of every SubmitJob call made through bertbatch.core.aws_clients.make_client."""
    from bertbatch.core import aws_clients as aws

    calls: list[dict] = []
    real = aws.make_client

    def make_client(service, **kwargs):
        client = real(service, **kwargs)
        if service == "batch":
            client.meta.events.register(
                "provide-client-params.batch.SubmitJob", lambda params, **_: calls.append(dict(params))
            )
        return client

    monkeypatch.setattr(aws, "make_client", make_client)
    return calls


@pytest.fixture
def default_model_staged(request):
    """The job definitions' default model staged on the platform, when the test has one: the
    platform's jobs cannot reach the internet, so `submit` refuses a hub model that is not staged.
    Modules that submit jobs use it with `pytestmark = pytest.mark.usefixtures(...)`."""
    if "platform" in request.fixturenames:
        from .helpers import stage_model

        platform = request.getfixturevalue("platform")
        stage_model(platform.s3, platform.artifacts_bucket, str(hyperparameters.default("model")))
