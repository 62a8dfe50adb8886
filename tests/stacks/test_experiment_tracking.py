"""Optional MLflow tracking (stacks/config.py `tracking.mlflow_tracking_uri`): validated, published
in SSM, set as MLFLOW_TRACKING_URI on the training job definitions only, and SageMaker MLflow
permissions on the job role only for a tracking server ARN."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Capture

from bertbatch_contract import discovery, job
from bertbatch_contract.naming import Naming
from platform_constructs.job_roles import SAGEMAKER_MLFLOW_ACTIONS
from stacks.config import ConfigError
from stacks.training_stack import tracking_environment
from tests.stacks.conftest import (
    MULTI_NODE,
    PREDICT,
    SAGEMAKER_MLFLOW_ARN,
    SINGLE,
    as_list,
    config_for,
    container_has,
    env_var,
    no_env_var,
    policy_has,
    statement_like,
    statements,
)


def published(template, key: str, value) -> None:
    template.has_resource_properties("AWS::SSM::Parameter", {"Name": Naming("dev").parameter(key), "Value": value})


@pytest.mark.parametrize(
    "uri",
    [
        "https://mlflow.ml.example.com",
        "https://mlflow.ml.example.com:8443/tracking/",
        "http://10.42.1.17:5000",
        "http://mlflow.internal",
        SAGEMAKER_MLFLOW_ARN,
        "arn:aws-cn:sagemaker:cn-north-1:111122223333:mlflow-tracking-server/a-b-c",
    ],
)
def test_accepted_tracking_uris(uri):
    assert config_for("dev", **{"tracking.mlflow_tracking_uri": uri}).tracking.mlflow_tracking_uri == uri


@pytest.mark.parametrize(
    "uri, message",
    [
        ("mlflow.ml.example.com", "must be https://"),
        ("ftp://mlflow.ml.example.com", "must be https://"),
        ("file:///tmp/mlruns", "must be https://"),
        ("databricks", "must be https://"),
        ("https://", "must be https://"),
        ("https://mlflow.ml.example.com:port", "must be https://"),
        ("https://mlflow.ml.example.com/a b", "must be https://"),
        ("https://alice:secret@mlflow.ml.example.com", "must not hold credentials"),
        ("arn:aws:sagemaker:eu-west-1:111122223333:mlflow-app/app-1234", "mlflow-tracking-server"),
        ("arn:aws:sagemaker:eu-west-1:1111:mlflow-tracking-server/x", "mlflow-tracking-server"),
        ("arn:aws:s3:::bucket", "must be https://"),
    ],
)
def test_rejected_tracking_uris_name_the_key_and_value(uri, message):
    with pytest.raises(ConfigError) as raised:
        config_for("dev", **{"tracking.mlflow_tracking_uri": uri})
    line = str(raised.value)
    assert "\n" not in line
    assert line.startswith(f"config error: tracking.mlflow_tracking_uri = {uri}: ")
    assert message in line


def test_only_an_arn_is_a_sagemaker_tracking_server():
    def server_arn(**overrides: str) -> str | None:
        return config_for("dev", **overrides).tracking.sagemaker_tracking_server_arn

    assert server_arn(**{"tracking.mlflow_tracking_uri": SAGEMAKER_MLFLOW_ARN}) == SAGEMAKER_MLFLOW_ARN
    assert server_arn(**{"tracking.mlflow_tracking_uri": "https://m.example.com"}) is None
    assert server_arn() is None


def test_tracking_environment_is_empty_without_a_uri():
    assert tracking_environment(config_for("dev")) == {}
    assert tracking_environment(config_for("dev", **{"tracking.mlflow_tracking_uri": "http://10.42.1.17:5000"})) == {
        job.ENV_MLFLOW_TRACKING_URI: "http://10.42.1.17:5000"
    }


def test_unconfigured_nothing_changes(dev_training, prod_training):
    for template in (dev_training, prod_training):
        for job_definition in (SINGLE, MULTI_NODE, PREDICT):
            container_has(template, job_definition, {"Environment": no_env_var(job.ENV_MLFLOW_TRACKING_URI)})
        actions = [a for s in statements(template, "RolesJobPolicy") for a in as_list(s["Action"])]
        assert not [a for a in actions if a.startswith("sagemaker")]
    published(dev_training, discovery.MLFLOW_TRACKING_URI, "none")


def test_configured_uri_is_published_and_set_on_the_training_jobs_only(tracked_training):
    published(tracked_training, discovery.MLFLOW_TRACKING_URI, SAGEMAKER_MLFLOW_ARN)
    tracked_training.has_output("MlflowTrackingUri", {"Value": SAGEMAKER_MLFLOW_ARN})
    for job_definition in (SINGLE, MULTI_NODE):
        container_has(tracked_training, job_definition,
                      {"Environment": env_var(job.ENV_MLFLOW_TRACKING_URI, SAGEMAKER_MLFLOW_ARN)})
    # Scoring is not an experiment.
    container_has(tracked_training, PREDICT, {"Environment": no_env_var(job.ENV_MLFLOW_TRACKING_URI)})


def test_sagemaker_tracking_server_permissions_are_scoped_to_that_server(tracked_training):
    sid = "LogToSageMakerMlflow"
    assert [s.get("Sid") for s in statements(tracked_training, "RolesJobPolicy")].count(sid) == 1
    found = Capture()
    policy_has(tracked_training, "RolesJobPolicy", statement_like(sid, Resource=SAGEMAKER_MLFLOW_ARN, Action=found))
    actions = found.as_array()
    assert sorted(actions) == sorted(SAGEMAKER_MLFLOW_ACTIONS)
    assert all(a.startswith("sagemaker-mlflow:") and "*" not in a for a in actions)
    assert {"sagemaker-mlflow:CreateRun", "sagemaker-mlflow:LogBatch", "sagemaker-mlflow:SearchRuns"} <= set(actions)
    # Logging only: no deletes, no registry, no UI.
    assert not [a for a in actions if "Delete" in a or "RegisteredModel" in a or a.endswith("AccessUI")]

