"""Resource names and the S3 layout."""

from __future__ import annotations

import pytest

from bertbatch_contract import discovery, layout
from bertbatch_contract.naming import Naming


def test_names_derive_from_project_and_profile() -> None:
    naming = Naming("prod", project="acme")
    assert naming.resource("spot-first") == "acme-prod-spot-first"
    assert naming.path == "/acme/prod/"
    assert naming.log_group("jobs") == "/acme/prod/jobs"
    assert naming.events_log_group("batch-job-states") == "/aws/events/acme/prod/batch-job-states"
    assert naming.key_alias() == "alias/acme-prod"
    assert naming.key_alias("monitoring") == "alias/acme-prod-monitoring"
    assert Naming("dev").parameter(discovery.QUEUE_SPOT_FIRST) == "/bert-batch/dev/queue/spot-first"


def test_every_discovery_key_has_a_parameter_and_unknown_keys_fail() -> None:
    names = {Naming("dev").parameter(key) for key in discovery.KEYS}
    assert len(names) == len(discovery.KEYS)
    with pytest.raises(KeyError, match="unknown discovery key"):
        Naming("dev").parameter("queue/nope")


def test_layout_prefixes() -> None:
    assert layout.run_prefix("r1") == "runs/r1/"
    assert layout.checkpoint_prefix("r1") == "checkpoints/r1/"
    assert layout.model_prefix("sst2") == "models/sst2/"
    assert layout.prediction_prefix("p1") == "predictions/p1/"
    assert layout.checkpoint_dir(500) == "step-000000500"
    assert layout.join("s3://bucket/", "/runs", "r1/") == "s3://bucket/runs/r1"
    assert layout.s3_uri("bucket", layout.DEFAULT_TRAIN_KEY) == "s3://bucket/datasets/train.tsv"


def test_staged_model_names_and_uris() -> None:
    assert layout.staged_model_name("bert-base-uncased") == "bert-base-uncased"
    assert layout.staged_model_name("org/model-x") == "org--model-x"
    assert layout.staged_model_uri("art", "org/model-x") == "s3://art/models/org--model-x/"
    assert layout.staged_model_name_of("s3://art/models/org--model-x/") == "org--model-x"
    assert layout.staged_model_name_of("s3://art/models/bert-base-uncased") == "bert-base-uncased"
    for other in ("s3://art/runs/r1/", "s3://art/models/", "s3://art/models/x/versions/", "/fsx/models/x/",
                  "models/x/"):
        assert layout.staged_model_name_of(other) is None, other
