"""The FSx fast path: datasets read from the mount when it holds the same bytes, tokenizing cached."""

from __future__ import annotations

import logging

import pytest
from transformers.models.bert.tokenization_bert import BertTokenizerFast

from bert_train import data, fsx
from bert_train.errors import StoreUnavailable
from bert_train.tasks import SINGLE_LABEL, Task
from bertbatch_contract import job
from tests.conftest import FIXTURES

DATA_URI = "s3://data-bucket/datasets"
BODY = b"sentence\tlabel\ngood film\t1\nbad film\t0\n"


@pytest.fixture
def mount(tmp_path):
    root = tmp_path / "fsx"
    (root / "datasets" / "sst2").mkdir(parents=True)
    (root / "datasets" / "sst2" / "train.tsv").write_bytes(BODY)
    return root


def env_for(mount) -> dict[str, str]:
    return {job.ENV_FSX_MOUNT: str(mount), job.ENV_DATA_URI: DATA_URI}


def test_a_dataset_on_the_mount_with_the_same_size_is_read_from_fsx(mount):
    where = fsx.input_location(f"{DATA_URI}/sst2/train.tsv", env_for(mount), s3_size=lambda uri: len(BODY))
    assert where == str(mount / "datasets" / "sst2" / "train.tsv")


@pytest.mark.parametrize(
    ("uri", "size", "why"),
    [
        (f"{DATA_URI}/sst2/dev.tsv", len(BODY), "not on FSx yet"),  # not imported yet
        (f"{DATA_URI}/sst2/train.tsv", len(BODY) + 1, "import in progress"),  # a different version
    ],
)
def test_otherwise_s3_is_read_and_the_log_says_why(mount, caplog, uri, size, why):
    with caplog.at_level(logging.INFO, logger="bert_train"):
        assert fsx.input_location(uri, env_for(mount), s3_size=lambda _: size) == uri
    assert why in caplog.text


def test_uris_outside_the_data_bucket_and_jobs_without_fsx_are_left_alone(mount):
    assert fsx.input_location("s3://other/datasets/sst2/train.tsv", env_for(mount)) == "s3://other/datasets/sst2/train.tsv"
    assert fsx.input_location(f"{DATA_URI}/sst2/train.tsv", {}) == f"{DATA_URI}/sst2/train.tsv"
    assert fsx.token_cache_dir({}) is None


def test_a_failed_mount_reads_from_s3_loudly_and_refuses_mount_paths(mount, caplog):
    (mount / job.FSX_MOUNT_FAILED_MARKER).write_text("mount 10.0.0.1@tcp:/abc failed 3 times\n")
    with caplog.at_level(logging.WARNING, logger="bert_train"):
        uri = f"{DATA_URI}/sst2/train.tsv"
        assert fsx.input_location(uri, env_for(mount), s3_size=lambda _: len(BODY)) == uri
    assert "FSx is not mounted on this host (mount 10.0.0.1@tcp:/abc failed 3 times)" in caplog.text
    with pytest.raises(StoreUnavailable, match="FSx is not mounted on this host"):
        fsx.input_location(str(mount / "datasets" / "sst2" / "train.tsv"), env_for(mount))
    assert fsx.token_cache_dir(env_for(mount)) is None


@pytest.fixture
def tokenizer():
    return BertTokenizerFast(vocab=str(FIXTURES / "vocab.txt"), do_lower_case=True)


EXAMPLES = [data.Example(text="a good film", pair=None, label="1", line=2),
            data.Example(text="a bad film , truly", pair=None, label="0", line=3)]


def test_tokenizing_is_cached_and_the_cached_result_equals_a_fresh_one(tmp_path, tokenizer, monkeypatch):
    task = Task(SINGLE_LABEL, ("0", "1"))
    fresh = data.encode(EXAMPLES, tokenizer, task, 16)
    first = fsx.encode_cached(EXAMPLES, tokenizer, task, 16, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1 and first == fresh

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(data, "encode", no_tokenizing)
    assert fsx.encode_cached(EXAMPLES, tokenizer, task, 16, cache_dir=tmp_path) == fresh


def test_the_key_changes_with_the_data_the_max_length_and_the_tokenizer(tokenizer):
    task = Task(SINGLE_LABEL, ("0", "1"))
    key = fsx.cache_key(EXAMPLES, tokenizer, task, 16)
    assert key == fsx.cache_key(list(EXAMPLES), tokenizer, Task(SINGLE_LABEL, ("0", "1")), 16)
    assert key != fsx.cache_key(EXAMPLES[:1], tokenizer, task, 16)
    assert key != fsx.cache_key(EXAMPLES, tokenizer, task, 32)
    assert key != fsx.cache_key(EXAMPLES, tokenizer, Task(SINGLE_LABEL, ("1", "0")), 16)  # another class order
    uncased = BertTokenizerFast(vocab=str(FIXTURES / "vocab.txt"), do_lower_case=False)
    assert key != fsx.cache_key(EXAMPLES, uncased, task, 16)


def test_a_corrupt_or_unwritable_cache_never_stops_training(tmp_path, tokenizer):
    task = Task(SINGLE_LABEL, ("0", "1"))
    key = fsx.cache_key(EXAMPLES, tokenizer, task, 16)
    (tmp_path / f"{key}.json").write_text("{not json")
    assert fsx.encode_cached(EXAMPLES, tokenizer, task, 16, cache_dir=tmp_path) == data.encode(
        EXAMPLES, tokenizer, task, 16)
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the cache directory should be: mkdir fails
    assert fsx.encode_cached(EXAMPLES, tokenizer, task, 16, cache_dir=blocked / "tokenized") == data.encode(
        EXAMPLES, tokenizer, task, 16)


def test_the_trainer_reads_its_inputs_through_the_fast_path(mount, monkeypatch, tmp_path):
    """No S3 holds these URIs: the run can read them only from the mount."""
    from bert_train import train
    from bert_train.config import TrainConfig, resolve_locations

    for name in ("train.tsv", "dev.tsv"):
        (mount / "datasets" / "sst2" / name).write_bytes((FIXTURES / "sst2" / name).read_bytes())
    sizes = {f"{DATA_URI}/sst2/{n}": (FIXTURES / "sst2" / n).stat().st_size for n in ("train.tsv", "dev.tsv")}
    monkeypatch.setattr(fsx, "_s3_size", sizes.__getitem__)
    for key, value in env_for(mount).items():
        monkeypatch.setenv(key, value)
    config = TrainConfig(train=f"{DATA_URI}/sst2/train.tsv", eval=f"{DATA_URI}/sst2/dev.tsv", model="random:tiny",
                         vocab=str(FIXTURES / "vocab.txt"), output_uri=str(tmp_path / "out"))
    inputs = train.read_inputs(config, resolve_locations(config, env={}))
    assert len(inputs.train_enc) == 2000 and inputs.eval_enc is not None
    assert list((mount / job.FSX_CACHE_DIR / "tokenized").glob("*.json"))  # tokenized once, cached
