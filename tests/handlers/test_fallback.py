"""The Spot -> On-Demand fallback handler: its decisions, and the resubmission against moto's Batch."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from bertbatch_contract import hyperparameters, metrics, prediction, runs, teams
from bertbatch_contract import job as job_contract
from bertbatch_contract import tags as job_tags
from bertbatch_contract.naming import Naming
from platform_constructs.runtime import fallback

REGION = "us-east-1"
PROFILE = "dev"
MOTO_CONFIG = {"batch": {"use_docker": False}}  # no Docker engine: moto marks jobs SUCCEEDED
CAPACITY_CANCEL = "Canceled by JobStateTimeLimit action due to reason: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
HOST_EC2 = "Host EC2 (instance i-0123456789abcdef0) terminated."


def name(kind: str) -> str:
    return Naming(PROFILE).resource(kind)


# --- pure decisions ---------------------------------------------------------------------------
SETTINGS = fallback.Settings(
    source_queue=f"arn:aws:batch:{REGION}:123456789012:job-queue/{name('spot-first')}",
    target_queue=f"arn:aws:batch:{REGION}:123456789012:job-queue/{name('on-demand')}",
    profile=PROFILE,
)


def failed_job(**overrides) -> dict:
    """A FAILED job from the spot-first queue, shaped like an EventBridge event's detail."""
    job = {
        "jobArn": f"arn:aws:batch:{REGION}:123456789012:job/11111111-2222-3333-4444-555555555555",
        "jobId": "11111111-2222-3333-4444-555555555555",
        "jobName": "sst2-lr2e-5",
        "jobQueue": SETTINGS.source_queue,
        "jobDefinition": f"arn:aws:batch:{REGION}:123456789012:job-definition/{name('bert-finetune')}:3",
        "status": "FAILED",
        "statusReason": HOST_EC2,
        "attempts": [
            {"container": {"exitCode": job_contract.EXIT_INTERRUPTED}, "statusReason": HOST_EC2},
            {"container": {}, "statusReason": HOST_EC2},
        ],
        "parameters": {"epochs": "3", "learning_rate": "2e-5"},
        "container": {
            "command": ["--epochs", "3", "--learning-rate", "2e-5"],
            "environment": [
                {"name": job_contract.ENV_RUN_ID, "value": "run-42"},
                {"name": job_contract.ENV_PROFILE, "value": PROFILE},
            ],
            "resourceRequirements": [{"type": "GPU", "value": "1"}, {"type": "VCPU", "value": "4"}],
        },
        "tags": {job_tags.TAG_RUN_ID: "run-42", "team": "nlp"},
        "propagateTags": True,
        "timeout": {"attemptDurationSeconds": 43200},
    }
    job.update(overrides)
    return job


def test_spot_interruptions_on_every_attempt_are_resubmitted():
    decision = fallback.decide(failed_job(), SETTINGS)
    assert decision.resubmit and decision.cause == "spot-interruptions"


def test_capacity_cancel_is_resubmitted():
    decision = fallback.decide(failed_job(statusReason=CAPACITY_CANCEL, attempts=[]), SETTINGS)
    assert decision.resubmit and decision.cause == "capacity"


def test_own_failure_is_not_resubmitted():
    job = failed_job(
        statusReason="Essential container in task exited",
        attempts=[
            {"container": {"exitCode": job_contract.EXIT_INTERRUPTED}, "statusReason": HOST_EC2},
            {"container": {"exitCode": 1}, "statusReason": "Essential container in task exited"},
        ],
    )
    assert not fallback.decide(job, SETTINGS).resubmit


def test_bad_input_exit_is_not_resubmitted():
    job = failed_job(
        statusReason="Essential container in task exited",
        attempts=[
            {
                "container": {"exitCode": job_contract.EXIT_BAD_INPUT},
                "statusReason": "Essential container in task exited",
            }
        ],
    )
    assert not fallback.decide(job, SETTINGS).resubmit


def test_interrupted_exit_code_counts_as_an_interruption():
    job = failed_job(
        statusReason="Essential container in task exited",
        attempts=[{"container": {"exitCode": 75}, "statusReason": "Essential container in task exited"}] * 5,
    )
    assert fallback.decide(job, SETTINGS).resubmit


@pytest.mark.parametrize(
    "reason",
    ["Job attempt duration exceeded timeout", "Cancelled with bertbatch", "wrong learning rate"],
)
def test_timeouts_and_cancellations_by_people_are_not_resubmitted(reason):
    job = failed_job(statusReason=reason, attempts=[{"container": {"exitCode": 75}, "statusReason": reason}])
    assert not fallback.decide(job, SETTINGS).resubmit


@pytest.mark.parametrize(
    "reason", ["MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"]
)
def test_a_job_that_can_never_be_placed_is_not_resubmitted(reason):
    """spot-first also cancels unplaceable jobs: On-Demand has the same instance types, so
    only capacity cancellations fall back."""
    cancelled = failed_job(statusReason=f"Canceled by JobStateTimeLimit action due to reason: {reason}", attempts=[])
    assert not fallback.decide(cancelled, SETTINGS).resubmit


def test_capacity_cancels_of_the_on_demand_queue_are_not_resubmitted():
    cancelled = failed_job(statusReason=CAPACITY_CANCEL, attempts=[], jobQueue=SETTINGS.target_queue)
    assert not fallback.decide(cancelled, SETTINGS).resubmit


def test_runnable_job_cancelled_by_a_person_is_not_resubmitted():
    assert not fallback.decide(failed_job(statusReason="Cancelled with bertbatch", attempts=[]), SETTINGS).resubmit


def test_a_fallback_job_is_not_resubmitted_again():
    by_tag = failed_job(tags={job_tags.TAG_FALLBACK_FROM: "older-job"})
    env = failed_job()
    env["container"]["environment"].append({"name": job_contract.ENV_FALLBACK_FROM_JOB, "value": "older-job"})
    assert not fallback.decide(by_tag, SETTINGS).resubmit
    assert not fallback.decide(env, SETTINGS).resubmit


def test_jobs_of_other_queues_are_not_resubmitted():
    assert not fallback.decide(failed_job(jobQueue=SETTINGS.target_queue), SETTINGS).resubmit


def test_only_failed_jobs_are_considered():
    assert not fallback.decide(failed_job(status="SUCCEEDED"), SETTINGS).resubmit


def test_array_parent_and_multi_node_jobs_are_not_resubmitted():
    assert not fallback.decide(failed_job(arrayProperties={"size": 4}), SETTINGS).resubmit
    assert not fallback.decide(failed_job(nodeProperties={"numNodes": 2}), SETTINGS).resubmit


def test_resubmission_keeps_definition_parameters_environment_and_run_id():
    request = fallback.build_resubmission(failed_job(), SETTINGS).request
    assert request["jobQueue"] == SETTINGS.target_queue
    assert request["jobDefinition"].endswith(f"{name('bert-finetune')}:3")
    assert request["parameters"] == {"epochs": "3", "learning_rate": "2e-5"}
    env = {e["name"]: e["value"] for e in request["containerOverrides"]["environment"]}
    assert env[job_contract.ENV_RUN_ID] == "run-42"
    assert env[job_contract.ENV_PROFILE] == PROFILE
    assert env[job_contract.ENV_FALLBACK_FROM_JOB] == failed_job()["jobId"]
    assert request["tags"][job_tags.TAG_FALLBACK_FROM] == failed_job()["jobId"]
    assert request["tags"][job_tags.TAG_RUN_ID] == "run-42"
    assert request["tags"]["team"] == "nlp"
    assert request["containerOverrides"]["resourceRequirements"] == [
        {"type": "GPU", "value": "1"},
        {"type": "VCPU", "value": "4"},
    ]
    assert request["timeout"] == {"attemptDurationSeconds": 43200}
    assert "command" not in request["containerOverrides"]  # the definition's Ref:: flags + parameters


@pytest.mark.parametrize(("job", "share"), [
    ({"shareIdentifier": "nlp", "tags": {job_tags.TAG_TEAM: "vision"}}, "nlp"),  # the share it ran in
    ({"tags": {job_tags.TAG_TEAM: "vision"}}, "vision"),  # no share (a FIFO queue then): its team
    ({"tags": {}}, teams.DEFAULT_TEAM),
])
def test_the_on_demand_job_runs_in_the_same_fair_share(job, share):
    # every queue has a fair-share policy, which refuses a SubmitJob without a share identifier
    assert fallback.build_resubmission(failed_job(**job), SETTINGS).request["shareIdentifier"] == share


def test_a_job_without_run_id_resumes_under_its_batch_job_id():
    job = failed_job(tags={})
    job["container"]["environment"] = []
    resubmission = fallback.build_resubmission(job, SETTINGS)
    env = {e["name"]: e["value"] for e in resubmission.request["containerOverrides"]["environment"]}
    assert resubmission.run_id == env[job_contract.ENV_RUN_ID] == job["jobId"]


def test_array_child_becomes_a_single_job_with_its_grid_row_and_run_id():
    job = failed_job(jobId="parent-id:1", arrayProperties={"index": 1})
    grid = [{"learning_rate": "1e-5"}, {"learning_rate": "3e-5", "epochs": "4"}]
    job["container"]["environment"].append({"name": job_contract.ENV_GRID, "value": json.dumps(grid)})
    assert fallback.decide(job, SETTINGS).resubmit
    resubmission = fallback.build_resubmission(job, SETTINGS)
    env = {e["name"]: e["value"] for e in resubmission.request["containerOverrides"]["environment"]}
    assert resubmission.run_id == runs.array_run_id("run-42", 1) == env[job_contract.ENV_RUN_ID]
    assert job_contract.ENV_GRID not in env
    assert resubmission.request["parameters"] == {"epochs": "4", "learning_rate": "3e-5"}


def predict_job(**overrides) -> dict:
    """A failed `bert-predict` job whose command the CLI overrode (an option without a parameter)."""
    job = failed_job(
        jobName="score-sst2",
        jobDefinition=f"arn:aws:batch:{REGION}:123456789012:job-definition/{name('bert-predict')}:1",
        parameters={"model": "s3://artifacts/runs/run-42/", "input_uri": "s3://data/datasets/test.tsv"},
        **overrides,
    )
    job["container"]["command"] = [
        prediction.SUBCOMMAND, "--model", "s3://artifacts/runs/run-42/", "--input", "s3://data/datasets/test.tsv",
        "--id-column", "idx",
    ]
    return job


def test_a_prediction_job_is_resubmitted_with_the_command_it_ran():
    job = predict_job()
    assert fallback.decide(job, SETTINGS).resubmit
    request = fallback.build_resubmission(job, SETTINGS).request
    assert request["jobDefinition"].endswith(f"{name('bert-predict')}:1")
    assert request["containerOverrides"]["command"] == job["container"]["command"]
    assert request["parameters"] == job["parameters"]


def test_a_prediction_shard_keeps_its_shard_index_as_a_single_job():
    job = predict_job(jobId="parent-id:7", arrayProperties={"index": 7})
    job["container"]["environment"].append({"name": job_contract.ENV_PREDICT_SHARDS, "value": "10"})
    request = fallback.build_resubmission(job, SETTINGS).request
    env = {e["name"]: e["value"] for e in request["containerOverrides"]["environment"]}
    assert env[job_contract.ENV_PREDICT_SHARD_INDEX] == "7"
    assert env[job_contract.ENV_PREDICT_SHARDS] == "10"
    assert "arrayProperties" not in request


def test_a_training_array_child_gets_no_shard_index():
    job = failed_job(jobId="parent-id:1", arrayProperties={"index": 1})
    env = {e["name"] for e in fallback.build_resubmission(job, SETTINGS).request["containerOverrides"]["environment"]}
    assert job_contract.ENV_PREDICT_SHARD_INDEX not in env


def test_job_name_stays_within_the_batch_limit():
    request = fallback.build_resubmission(failed_job(jobName="x" * 128), SETTINGS).request
    assert len(request["jobName"]) <= 128 and request["jobName"].endswith("-on-demand")


def test_emf_line_counts_one_resubmission_per_profile():
    record = json.loads(fallback.emf_line(SETTINGS, timestamp_ms=0))
    directive = record["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == metrics.DEFAULT_NAMESPACE
    assert directive["Metrics"] == [
        {"Name": metrics.FALLBACK_RESUBMISSIONS.name, "Unit": metrics.FALLBACK_RESUBMISSIONS.unit}
    ]
    assert directive["Dimensions"] == [[metrics.DIMENSION_PROFILE]]
    assert record[metrics.DIMENSION_PROFILE] == PROFILE
    assert record[metrics.FALLBACK_RESUBMISSIONS.name] == 1.0


def test_settings_come_from_the_environment():
    settings = fallback.Settings.from_env(
        {
            "SOURCE_QUEUE_ARN": "a",
            "TARGET_QUEUE_ARN": "b",
            "METRICS_NAMESPACE": "NS",
            "METRIC_NAME": "M",
            "PROFILE": "prod",
        }
    )
    assert (
        settings.source_queue,
        settings.target_queue,
        settings.namespace,
        settings.metric_name,
        settings.profile,
    ) == (
        "a",
        "b",
        "NS",
        "M",
        "prod",
    )


# --- against moto's Batch -------------------------------------------------------------------
@pytest.fixture
def batch(monkeypatch, tmp_path):
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with mock_aws(config=MOTO_CONFIG):
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client = boto3.client("batch", region_name=REGION)
        ce = client.create_compute_environment(
            computeEnvironmentName=name("ce"), type="UNMANAGED", state="ENABLED", serviceRole=role
        )["computeEnvironmentArn"]
        for kind in ("spot-first", "on-demand"):
            client.create_job_queue(
                jobQueueName=name(kind),
                state="ENABLED",
                priority=1,
                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
            )
        client.register_job_definition(
            jobDefinitionName=name("bert-finetune"),
            type="container",
            parameters=dict(hyperparameters.parameter_defaults()),
            containerProperties={
                "image": "bert-train:latest",
                "command": ["--epochs", "Ref::epochs"],
                "resourceRequirements": [{"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "15000"}],
            },
        )
        yield client


def queue_arn(client, kind: str) -> str:
    return client.describe_job_queues(jobQueues=[name(kind)])["jobQueues"][0]["jobQueueArn"]


def spot_job(client, *, run_id: str | None = "run-7", **overrides) -> dict:
    """Submit a job to the spot-first queue and return it as a FAILED event detail."""
    env = [{"name": job_contract.ENV_RUN_ID, "value": run_id}] if run_id else []
    tags = {job_tags.TAG_RUN_ID: run_id} if run_id else {}
    submitted = client.submit_job(
        jobName="sst2",
        jobQueue=name("spot-first"),
        jobDefinition=name("bert-finetune"),
        parameters={"epochs": "5"},
        containerOverrides={"environment": env},
        tags=tags,
    )
    job = client.describe_jobs(jobs=[submitted["jobId"]])["jobs"][0]
    job.update(status="FAILED", statusReason=HOST_EC2, attempts=[{"container": {}, "statusReason": HOST_EC2}] * 5)
    job.update(overrides)
    return job


def on_demand_jobs(client) -> list[str]:
    statuses = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
    return [
        j["jobId"]
        for status in statuses
        for j in client.list_jobs(jobQueue=name("on-demand"), jobStatus=status)["jobSummaryList"]
    ]


def settings_for(client) -> fallback.Settings:
    return fallback.Settings(
        source_queue=queue_arn(client, "spot-first"), target_queue=queue_arn(client, "on-demand"), profile=PROFILE
    )


def event(job: dict) -> dict:
    return {"source": "aws.batch", "detail-type": "Batch Job State Change", "detail": job}


def test_interrupted_job_is_resubmitted_once_with_the_same_run_id(batch, capsys):
    settings = settings_for(batch)
    old = spot_job(batch)
    result = fallback.handle(event(old), settings, batch)
    assert result["action"] == "resubmit"

    new = batch.describe_jobs(jobs=[result["newJobId"]])["jobs"][0]
    assert new["jobQueue"] == settings.target_queue
    assert new["parameters"]["epochs"] == "5"
    env = {e["name"]: e["value"] for e in new["container"]["environment"]}
    assert env[job_contract.ENV_RUN_ID] == "run-7"
    assert env[job_contract.ENV_FALLBACK_FROM_JOB] == old["jobId"]
    assert new["tags"][job_tags.TAG_FALLBACK_FROM] == old["jobId"]
    assert new["tags"][job_tags.TAG_RUN_ID] == "run-7"
    assert batch.describe_jobs(jobs=[old["jobId"]])["jobs"][0]["tags"][job_tags.TAG_FALLBACK_TO] == new["jobId"]

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(line.get("action") == "resubmit" and line.get("newJobId") == new["jobId"] for line in lines)
    assert any(metrics.FALLBACK_RESUBMISSIONS.name in line for line in lines)

    # The same event delivered again (EventBridge is at-least-once): no second job.
    again = fallback.handle(event(old), settings, batch)
    assert again["action"] == "skip" and new["jobId"] in again["reason"]
    assert on_demand_jobs(batch) == [new["jobId"]]


def test_own_failure_is_left_alone(batch):
    settings = settings_for(batch)
    old = spot_job(
        batch,
        statusReason="Essential container in task exited",
        attempts=[{"container": {"exitCode": 1}, "statusReason": "Essential container in task exited"}],
    )
    assert fallback.handle(event(old), settings, batch)["action"] == "skip"
    assert on_demand_jobs(batch) == []
    assert job_tags.TAG_FALLBACK_TO not in batch.describe_jobs(jobs=[old["jobId"]])["jobs"][0]["tags"]


def test_second_fallback_is_not_resubmitted(batch):
    settings = settings_for(batch)
    first = fallback.handle(event(spot_job(batch)), settings, batch)
    fallback_job = batch.describe_jobs(jobs=[first["newJobId"]])["jobs"][0]
    # Even if the On-Demand job were to fail on the spot-first queue, it is not sent again.
    fallback_job.update(status="FAILED", jobQueue=settings.source_queue, statusReason=CAPACITY_CANCEL, attempts=[])
    result = fallback.handle(event(fallback_job), settings, batch)
    assert result["action"] == "skip" and "already a fallback" in result["reason"]


def test_capacity_cancel_without_run_id_resumes_under_the_old_job_id(batch):
    settings = settings_for(batch)
    old = spot_job(batch, run_id=None, statusReason=CAPACITY_CANCEL, attempts=[])
    result = fallback.handle(event(old), settings, batch)
    assert result["action"] == "resubmit" and result["runId"] == old["jobId"]
    new = batch.describe_jobs(jobs=[result["newJobId"]])["jobs"][0]
    env = {e["name"]: e["value"] for e in new["container"]["environment"]}
    assert env[job_contract.ENV_RUN_ID] == old["jobId"]


def test_lambda_entry_point_reads_its_settings_from_the_environment(batch, monkeypatch):
    settings = settings_for(batch)
    monkeypatch.setenv("SOURCE_QUEUE_ARN", settings.source_queue)
    monkeypatch.setenv("TARGET_QUEUE_ARN", settings.target_queue)
    monkeypatch.setattr(fallback, "make_client", lambda service="batch": batch)
    result = fallback.handler(event(spot_job(batch)), None)
    assert result["action"] == "resubmit"
