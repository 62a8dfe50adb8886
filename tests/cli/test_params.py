"""Hyperparameter, run id, timeout and grid checks (no AWS)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from bertbatch.core import input_checks as params
from bertbatch.core.errors import BertBatchError
from bertbatch.jobs import ref_parameters as job_parameters
from bertbatch_contract import hyperparameters as hp
from bertbatch_contract import runs


def test_check_normalizes_and_drops_unset():
    assert job_parameters.check({"epochs": "03", "learning_rate": "2e-5", "batch_size": None}) == {
        "epochs": "3", "learning_rate": "2e-5"}


@pytest.mark.parametrize(("name", "value", "flag"), [
    ("epochs", "1.5", "--epochs"), ("learning_rate", "0", "--learning-rate"),
    ("learning_rate", "nan", "--learning-rate"),
    ("batch_size", "-3", "--batch-size"), ("max_seq_length", "7", "--max-seq-length"), ("model", "", "--model"),
])
def test_check_rejects(name, value, flag):
    with pytest.raises(BertBatchError) as err:
        job_parameters.check({name: value})
    assert err.value.message.startswith(f"{flag} {value or repr(value)}:")


def test_option_rows_are_every_trainer_flag_but_the_inputs_and_the_container_only_ones():
    expected = [row.parameter for row in hp.HYPERPARAMETERS
                if not row.container_only and row.parameter not in hp.INPUT_PARAMETERS]
    assert list(job_parameters.BY_PARAMETER) == expected
    assert {"warmup_ratio", "seed", "text_pair_column", "max_steps", "precision"} <= set(expected)


def test_a_grid_takes_the_new_hyperparameters(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("warmup-ratio,seed,text_pair_column,precision\n0.1,7,hypothesis,bf16\n0,8,hypothesis,fp32\n")
    assert params.load_grid(str(p)) == [
        {"warmup_ratio": "0.1", "seed": "7", "text_pair_column": "hypothesis", "precision": "bf16"},
        {"warmup_ratio": "0", "seed": "8", "text_pair_column": "hypothesis", "precision": "fp32"}]


@pytest.mark.parametrize(("grid", "error"), [
    ({"warmup_ratio": [0.1, 1]}, "row 1: --warmup-ratio 1: must be a number >= 0 and < 1"),
    ({"precision": ["fp8"]}, "row 0: --precision fp8: must be one of auto, bf16, fp16, fp32"),
    ({"vocab": ["v.txt"]}, "row 0: unknown hyperparameter 'vocab'"),
])
def test_a_grid_checks_the_new_hyperparameters_with_the_table(tmp_path, grid, error):
    p = tmp_path / "g.json"
    p.write_text(json.dumps(grid))
    with pytest.raises(BertBatchError) as err:
        params.load_grid(str(p))
    assert err.value.message.startswith(f"--grid {p}: {error}")
    assert "\n" not in err.value.message


def test_generated_run_id_is_readable_and_valid():
    now = dt.datetime(2026, 11, 21, 19, 5, 0, tzinfo=dt.UTC)
    run_id = runs.generate_run_id("random:tiny", now=now)
    assert run_id.startswith("random-tiny-20261121-190500-") and len(run_id.rsplit("-", 1)[1]) == 4
    assert params.run_id(run_id, None) == run_id
    assert runs.generate_run_id("s3://b/models/My_Model", now=now).startswith("my-model-")
    assert params.run_id(None, None).startswith("bert-base-uncased-")
    assert params.run_id(None, None) != params.run_id(None, None)


def test_bad_run_name_names_the_flag():
    with pytest.raises(BertBatchError) as err:
        params.run_id("bad name!", None)
    assert err.value.message == "--run-name 'bad name!': " + runs.RULE


@pytest.mark.parametrize(("text", "seconds"),
                         [("3600", 3600), ("90m", 5400), ("6h", 21600), ("1d", 86400), ("1.5h", 5400)])
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
    p.write_text(json.dumps([{"train_uri": "s3://b/k.tsv"}]))  # inputs are --train/--eval, checked to exist
    with pytest.raises(BertBatchError, match="row 0: unknown hyperparameter 'train_uri'"):
        params.load_grid(str(p))


@pytest.mark.parametrize(("body", "error"), [
    # a row with fewer fields: its missing column would silently be the default
    ("learning_rate,epochs,batch_size\n3e-5,2,16\n5e-5,3\n",
     "--grid {path}:3: column 'batch_size' is missing (2 fields, the header has 3)"),
    # a row with more fields than the header
    ("learning_rate,epochs\n3e-5,2\n5e-5,3,16\n",
     "--grid {path}:3: 3 fields, the header has 2 (after column 'epochs')"),
    # an empty cell is not "the default": refused
    ("learning_rate,epochs\n3e-5,\n", "--grid {path}:2: column 'epochs' is empty"),
    ("learning_rate,epochs\n3e-5,2\n , 3\n", "--grid {path}:3: column 'learning_rate' is empty"),
])
def test_a_csv_grid_row_must_fill_every_column(tmp_path, body, error):
    p = tmp_path / "grid.csv"
    p.write_text(body)
    with pytest.raises(BertBatchError) as err:
        params.load_grid(str(p))
    assert err.value.message.startswith(error.format(path=p)), err.value.message
    assert "\n" not in err.value.message


def test_a_csv_grid_reads_every_row_with_blank_lines_skipped(tmp_path):
    p = tmp_path / "grid.csv"
    p.write_text("learning-rate,epochs\n3e-5,2\n\n5e-5,3\n")
    assert params.load_grid(str(p)) == [{"learning_rate": "3e-5", "epochs": "2"},
                                        {"learning_rate": "5e-5", "epochs": "3"}]
