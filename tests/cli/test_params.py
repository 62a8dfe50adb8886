"""Hyperparameter, run id, timeout and grid checks (no AWS)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from bertbatch import params
from bertbatch.errors import BertBatchError


def test_validate_normalizes_and_drops_unset():
    assert params.validate({"epochs": "03", "learning_rate": "2e-5", "batch_size": None}) == {
        "epochs": "3", "learning_rate": "2e-5"}


@pytest.mark.parametrize(("name", "value", "flag"), [
    ("epochs", "1.5", "--epochs"), ("learning_rate", "0", "--learning-rate"), ("learning_rate", "nan", "--learning-rate"),
    ("batch_size", "-3", "--batch-size"), ("max_seq_length", "7", "--max-seq-length"), ("model", "", "--model"),
])
def test_validate_rejects(name, value, flag):
    with pytest.raises(BertBatchError) as err:
        params.validate({name: value})
    assert err.value.message.startswith(f"{flag} {value}:")


def test_generated_run_id_is_readable_and_valid():
    now = dt.datetime(2026, 11, 21, 19, 5, 0, tzinfo=dt.timezone.utc)
    run_id = params.generate_run_id("random:tiny", now=now)
    assert run_id.startswith("random-tiny-20261121-190500-") and len(run_id.rsplit("-", 1)[1]) == 4
    assert params.check_run_id(run_id) == run_id
    assert params.generate_run_id("s3://b/models/My_Model", now=now).startswith("my-model-")
    assert params.generate_run_id(now=now) != params.generate_run_id(now=now)


@pytest.mark.parametrize(("text", "seconds"), [("3600", 3600), ("90m", 5400), ("6h", 21600), ("1d", 86400), ("1.5h", 5400)])
def test_parse_timeout(text, seconds):
    assert params.parse_timeout(text) == seconds


def test_grid_list_of_objects(tmp_path):
    p = tmp_path / "g.json"
    p.write_text(json.dumps([{"learning-rate": 3e-5}, {"epochs": 2, "batch_size": 16}]))
    assert params.load_grid(str(p)) == [{"learning_rate": "3e-05"}, {"epochs": "2", "batch_size": "16"}]


def test_grid_errors(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("a: 1")
    with pytest.raises(BertBatchError, match="use a .json or .csv"):
        params.load_grid(str(p))
    p = tmp_path / "g.json"
    p.write_text("[1, 2]")
    with pytest.raises(BertBatchError, match="list of objects"):
        params.load_grid(str(p))
    p.write_text("{bad")
    with pytest.raises(BertBatchError, match="invalid JSON"):
        params.load_grid(str(p))
    p.write_text(json.dumps({"learning_rate": [f"{i}e-6" for i in range(1, 600)]}))
    with pytest.raises(BertBatchError, match="too large"):
        params.load_grid(str(p))
