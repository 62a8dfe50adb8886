"""S3 over real HTTP (a moto server): data and model read from S3, checkpoints uploaded to and
resumed from S3, outputs written to S3 — all located through the job environment."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal

import boto3
import pytest

from bert_train import storage, train
from bert_train.__main__ import main
from bert_train.retries import Waits
from bert_train.train import run
from bertbatch_contract import job

from .conftest import (
    VOCAB,
    WRITE_PROBE_ANSWERS,
    FakeClock,
    sigterm_at,
    slow_s3_failures,
    tiny_args,
    tiny_config,
)


def _client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _keys(s3, bucket, prefix=""):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


@pytest.mark.slow
def test_s3_data_model_checkpoints_resume_and_outputs(moto_s3, small_data, tmp_path, monkeypatch, caplog):
    s3 = _client(moto_s3)
    for bucket in ("data", "artifacts"):
        s3.create_bucket(Bucket=bucket)
    train, dev = small_data
    s3.upload_file(str(train), "data", "datasets/train.tsv")
    s3.upload_file(str(dev), "data", "datasets/dev.tsv")
    # a "pretrained" base model in S3: a tiny random model saved the transformers way
    from bert_train import modeling

    tok, _ = modeling.build_tokenizer("random:tiny", str(VOCAB), str(tmp_path))
    base = tmp_path / "base"
    modeling.build_model("random:tiny", ["neg", "pos"], len(tok)).save_pretrained(base)
    tok.save_pretrained(base)
    for p in base.iterdir():
        s3.upload_file(str(p), "data", f"models/tiny/{p.name}")
    # Staged as `bertbatch models import` leaves it: the manifest last (a models/<name>/ prefix
    # without one is refused as not staged).
    s3.put_object(Bucket="data", Key="models/tiny/manifest.json", Body=json.dumps({"format": 1, "name": "tiny"}))

    monkeypatch.setenv(job.ENV_ARTIFACTS_URI, "s3://artifacts")
    monkeypatch.setenv(job.ENV_CHECKPOINT_URI, "s3://artifacts/checkpoints")
    monkeypatch.setenv(job.ENV_RUN_ID, "s3-run")
    monkeypatch.setenv(job.ENV_CHECKPOINT_EVERY_STEPS, "4")
    config = tiny_config("s3://data/datasets/train.tsv", "s3://data/datasets/dev.tsv", None, None, run_id=None,
                         model="s3://data/models/tiny", vocab=None, epochs=1, checkpoint_every_steps=None,
                         keep_checkpoints=1)

    first = run(config, on_step=sigterm_at(6))
    assert first.exit_code == job.EXIT_INTERRUPTED and first.global_step == 6
    assert first.checkpoint_uri == "s3://artifacts/checkpoints/s3-run"
    # keep 1: step 4 was deleted once step 6 was complete; the manifest names the attempt's files
    manifest_key = "checkpoints/s3-run/step-000000006/manifest.json"
    manifest = json.loads(s3.get_object(Bucket="artifacts", Key=manifest_key)["Body"].read())
    assert manifest["step"] == 6 and manifest["run_id"] == "s3-run"
    attempt = manifest["attempt"]
    assert _keys(s3, "artifacts") == sorted([manifest_key] + [f"checkpoints/s3-run/step-000000006/{attempt}/{f}" for f
                                                              in ("model.safetensors", "optimizer.pt",
                                                                  "trainer_state.pt")])
    assert {e["key"] for e in manifest["files"].values()} == {f"{attempt}/{f}" for f in
                                                              ("model.safetensors", "optimizer.pt", "trainer_state.pt")}

    with caplog.at_level(logging.INFO, "bert_train"):
        second = run(config)
    assert second.exit_code == 0 and second.resumed_from_step == 6 and second.global_step == 30
    assert "using cached copy" in caplog.text  # the base model was downloaded once
    outputs = _keys(s3, "artifacts", "runs/s3-run/")
    assert {k.rsplit("/", 1)[1] for k in outputs} >= {"model.safetensors", "config.json", "tokenizer.json",
                                                        "label_map.json", "metrics.json", "training_args.json",
                                                        "README.md"}
    m = json.loads(s3.get_object(Bucket="artifacts", Key="runs/s3-run/metrics.json")["Body"].read())
    assert m["global_step"] == 30 and m["resumed_from_step"] == 6 and 0 <= m["eval_accuracy"] <= 1


def test_unreadable_s3_uri_is_bad_input(moto_s3, small_data, tmp_path, capsys):
    s3 = _client(moto_s3)
    s3.create_bucket(Bucket="data")
    s3.create_bucket(Bucket="artifacts")
    _, dev = small_data
    for train_uri, reason in (("s3://data/nope.tsv", "NoSuchKey"), ("s3://no-such-bucket/train.tsv", "NoSuchBucket")):
        code = main(tiny_args(train_uri, dev, "s3://artifacts/runs/x", "s3://artifacts/checkpoints/x"))
        err = capsys.readouterr().err.strip()
        assert code == job.EXIT_BAD_INPUT
        assert err.startswith(f"bert_train: error: {train_uri}: cannot read ({reason}") and "\n" not in err
    assert _keys(s3, "artifacts") == []


@pytest.mark.parametrize(("code", "status", "exit_code"), WRITE_PROBE_ANSWERS)
def test_reading_the_training_data_tells_a_wrong_input_from_an_unavailable_s3(moto_s3, small_data, tmp_path, capsys,
                                                                               code, status, exit_code):
    """Only what the user gave can be bad input: S3 failing to answer for the data (throttling, a
    5xx) exits 74, which Batch retries; a refused bucket is bad input (exit 2)."""
    from botocore.exceptions import ClientError

    s3 = _client(moto_s3)
    for bucket in ("data", "artifacts"):
        s3.create_bucket(Bucket=bucket)
    train_file, dev = small_data
    s3.upload_file(str(train_file), "data", "train.tsv")

    def answer(params, **_):
        if params.get("Bucket") == "data":
            raise ClientError({"Error": {"Code": code, "Message": "injected"},
                               "ResponseMetadata": {"HTTPStatusCode": status}}, "ListObjectsV2")

    storage.make_s3_client().meta.events.register("provide-client-params.s3.*", answer)
    out = "s3://artifacts/runs/x"
    assert main(tiny_args("s3://data/train.tsv", dev, out, tmp_path / "ckpt")) == exit_code
    err = capsys.readouterr().err.strip()
    assert err.startswith("bert_train: error: s3://data/train.tsv: cannot ") and f"({code}: injected)" in err, err
    assert "\n" not in err
    assert _keys(s3, "artifacts") == []


@pytest.mark.parametrize(("code", "status", "exit_code"), WRITE_PROBE_ANSWERS)
def test_the_start_up_write_check_tells_a_wrong_location_from_an_unavailable_s3(s3_stub, small_data, tmp_path,
                                                                                capsys, code, status, exit_code):
    s3_stub.add_client_error("create_multipart_upload", service_error_code=code, service_message="injected",
                             http_status_code=status)
    out = "s3://artifacts/runs/x"
    assert main(tiny_args(*small_data, out, tmp_path / "ckpt")) == exit_code
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bert_train: error: output location {out}: cannot write ({code}: injected)"), err
    assert "\n" not in err
    s3_stub.assert_no_pending_responses()
    assert not (tmp_path / "ckpt").exists()


def test_a_sigterm_checkpoint_s3_cannot_take_gives_up_by_the_deadline_and_exits_74(s3_faults, moto_s3, small_data,
                                                                                     tmp_path, monkeypatch, capsys):
    _client(moto_s3).create_bucket(Bucket="artifacts")
    clock = FakeClock()
    slow_s3_failures(clock, 20.0)  # S3 is down: every checkpoint write takes 20 s to fail
    s3_faults.fail("PutObject", "/step-")
    monkeypatch.setattr(storage, "UPLOAD_FILES_AT_ONCE", 1)  # the fake clock adds up requests made at once
    at_sigterm: list[float] = []

    def sigterm_at_3(step: int) -> None:
        if step == 3:
            at_sigterm.append(clock())
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train, "run", functools.partial(train.run, on_step=sigterm_at_3,
                                                        waits=Waits(clock=clock, sleep=clock.sleep)))
    code = main(tiny_args(*small_data, "s3://artifacts/runs/x", "s3://artifacts/checkpoints/x", epochs=1))
    assert code == job.EXIT_STORAGE_UNAVAILABLE
    assert "could not be stored" in capsys.readouterr().err
    assert clock.sleeps and sum(clock.sleeps) <= job.SIGTERM_CHECKPOINT_BUDGET_SECONDS
    assert clock() - at_sigterm[0] <= job.SIGTERM_CHECKPOINT_BUDGET_SECONDS


@pytest.mark.parametrize("uploaded", [[], ["config.json", "vocab.txt"]])
def test_a_default_model_that_is_not_staged_names_the_import_command(moto_s3, small_data, tmp_path, capsys,
                                                                      uploaded):
    """The job definitions' default model is s3://<artifacts>/models/bert-base-uncased/: a plain
    `aws batch submit-job` before `bertbatch models import` (or after an interrupted one, which
    leaves files but no manifest) fails in one line that says what to run, downloading nothing."""
    s3 = _client(moto_s3)
    s3.create_bucket(Bucket="artifacts")
    for name in uploaded:
        s3.put_object(Bucket="artifacts", Key=f"models/bert-base-uncased/{name}", Body=b"{}")
    train, dev = small_data
    code = main(tiny_args(train, dev, tmp_path / "out", tmp_path / "ckpt", vocab=None,
                          model="s3://artifacts/models/bert-base-uncased/", cache_dir=tmp_path / "cache"))
    err = capsys.readouterr().err.strip()
    assert code == job.EXIT_BAD_INPUT
    assert err == ("bert_train: error: s3://artifacts/models/bert-base-uncased/: model bert-base-uncased is not "
                   "staged (no manifest.json): run bertbatch models import bert-base-uncased")
    assert not list((tmp_path / "cache").rglob("*.json"))
    assert not (tmp_path / "out").exists()
