"""Batch inference (`python -m bert_train predict`): local files and S3 (moto), shards that resume,
bad input, and predictions checked against the model's own forward pass."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import boto3
import pytest

from bert_train import predict
from bert_train.__main__ import main
from bert_train.tasks import SINGLE_LABEL, Task
from bertbatch_contract import job, layout, prediction
from bertbatch_contract.hyperparameters import InvalidHyperparameter

from .conftest import VOCAB, WRITE_PROBE_ANSWERS, read_sst2, write_tsv

LABELS = ["neg", "pos"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A training run's output directory, as `outputs.write_local` writes it, for a tiny random BERT."""
    import torch

    from bert_train import modeling, outputs

    torch.manual_seed(3)
    directory = tmp_path_factory.mktemp("run") / "runs" / "tiny-run"
    tokenizer, _ = modeling.build_tokenizer("random:tiny", str(VOCAB), str(directory.parent / "cache"))
    model = modeling.build_model("random:tiny", LABELS, len(tokenizer))
    outputs.write_local(directory, model=model, tokenizer=tokenizer, task=Task(SINGLE_LABEL, tuple(LABELS)),
                        run_id="tiny-run", config={},
                        metrics={})
    return directory


@pytest.fixture
def rows_tsv(tmp_path) -> Path:
    rows = [{"id": f"r{n}", "sentence": r["sentence"]} for n, r in enumerate(read_sst2("dev.tsv")[:45])]
    return write_tsv(tmp_path / "in" / "rows.tsv", rows, columns=("id", "sentence"))


def _args(model, input_uri, output, **extra) -> list[str]:
    args = ["predict", "--model", str(model), "--input", str(input_uri), "--output", str(output),
            "--batch-size", "8", "--max-seq-length", "64"]
    for key, value in extra.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    return args


def _parts(output: Path | str, shards: int) -> list[dict]:
    lines: list[dict] = []
    for shard in range(shards):
        text = (Path(output) / layout.prediction_part(shard)).read_text()
        lines.extend(json.loads(line) for line in text.splitlines())
    return lines


def _same_predictions(a: list[dict], b: list[dict]) -> None:
    assert [(x["row"], x.get("id"), x["label"]) for x in a] == [(x["row"], x.get("id"), x["label"]) for x in b]
    for x, y in zip(a, b, strict=True):
        assert x["probabilities"] == pytest.approx(y["probabilities"], abs=1e-5)


def test_predict_local_matches_the_models_own_argmax(run_dir, rows_tsv, tmp_path, capsys):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "predictions" / "p1"
    # fp32: the reference below runs in fp32 (auto is bf16 on CPUs with native bf16)
    assert main(_args(run_dir, rows_tsv, out, id_column="id", precision="fp32")) == job.EXIT_OK
    got = _parts(out, 1)
    manifest = json.loads((out / layout.PREDICTION_MANIFEST).read_text())
    assert manifest["total_rows"] == 45 and manifest["labels"] == LABELS and manifest["shards"] == 1
    assert manifest["parts"][0]["rows"] == 45 and manifest["parts"][0]["first_row"] == 0
    assert [x["row"] for x in got] == list(range(45)) and [x["id"] for x in got] == [f"r{n}" for n in range(45)]

    # The model run directly, one row at a time, padded by nobody: the reference.
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model = AutoModelForSequenceClassification.from_pretrained(run_dir).eval()
    texts = [r["sentence"] for r in read_sst2("dev.tsv")[:45]]
    with torch.no_grad():
        expected = [model(**tokenizer(t, truncation=True, max_length=64, return_tensors="pt")).logits.softmax(-1)[0]
                    for t in texts]
    assert [x["label"] for x in got] == [LABELS[int(p.argmax())] for p in expected]
    for x, p in zip(got, expected, strict=True):
        assert [x["probabilities"][label] for label in LABELS] == pytest.approx(p.tolist(), abs=1e-5)


def test_sharded_run_resumes_after_a_failed_and_a_stopped_shard(run_dir, rows_tsv, tmp_path, monkeypatch):
    single = tmp_path / "single"
    assert main(_args(run_dir, rows_tsv, single, id_column="id")) == job.EXIT_OK
    out = tmp_path / "sharded"

    def config(index: int) -> predict.PredictConfig:
        return predict.parse_args(_args(run_dir, rows_tsv, out, id_column="id", shards=3, shard_index=index)[1:])

    scored: list[int] = []

    def count(shard):
        return lambda batch: scored.append(shard)

    first = predict.run(config(0), on_batch=count(0))
    assert first.exit_code == 0 and first.rows == 15 and not first.manifest_written

    def fail_at_second_batch(batch):
        if batch == 2:
            raise RuntimeError("host went away")

    with pytest.raises(RuntimeError, match="host went away"):
        predict.run(config(1), on_batch=fail_at_second_batch)

    def sigterm_at_first_batch(batch):
        os.kill(os.getpid(), signal.SIGTERM)

    stopped = predict.run(config(1), on_batch=sigterm_at_first_batch)
    assert stopped.exit_code == job.EXIT_INTERRUPTED
    assert not (out / layout.prediction_part(1)).exists() and not (out / layout.prediction_shard_manifest(1)).exists()
    # shard 2 from the job environment, as an array child
    monkeypatch.setenv(job.ENV_BATCH_ARRAY_INDEX, "2")
    monkeypatch.setenv(job.ENV_PREDICT_SHARDS, "3")
    env_config = predict.parse_args(_args(run_dir, rows_tsv, out, id_column="id")[1:])
    third = predict.run(env_config, on_batch=count(2))
    assert (third.shard, third.shards, third.exit_code, third.manifest_written) == (2, 3, 0, False)
    monkeypatch.delenv(job.ENV_BATCH_ARRAY_INDEX)
    monkeypatch.delenv(job.ENV_PREDICT_SHARDS)
    assert not (out / layout.PREDICTION_MANIFEST).exists()

    mtimes = {s: (out / layout.prediction_part(s)).stat().st_mtime_ns for s in (0, 2)}
    scored.clear()
    retries = [predict.run(config(i), on_batch=count(i)) for i in range(3)]
    assert [r.skipped for r in retries] == [True, False, True]
    assert set(scored) == {1}  # only the unfinished shard was scored again
    assert {s: (out / layout.prediction_part(s)).stat().st_mtime_ns for s in (0, 2)} == mtimes
    assert retries[-1].manifest_written
    manifest = json.loads((out / layout.PREDICTION_MANIFEST).read_text())
    assert [p["rows"] for p in manifest["parts"]] == [15, 15, 15] and manifest["total_rows"] == 45
    _same_predictions(_parts(out, 3), _parts(single, 1))


def test_a_corrupt_part_is_scored_again(run_dir, rows_tsv, tmp_path):
    out = tmp_path / "out"
    config = predict.parse_args(_args(run_dir, rows_tsv, out)[1:])
    assert predict.run(config).exit_code == 0
    good = (out / layout.prediction_part(0)).read_text()
    (out / layout.prediction_part(0)).write_text(good[: len(good) // 2])
    again = predict.run(config)
    assert not again.skipped and (out / layout.prediction_part(0)).read_text() == good
    manifest = json.loads((out / layout.PREDICTION_MANIFEST).read_text())
    assert manifest["parts"][0]["sha256"] == hashlib.sha256(good.encode()).hexdigest()


def test_another_runs_output_is_refused(run_dir, rows_tsv, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(run_dir, rows_tsv, out, shards=2, shard_index=0)) == 0
    capsys.readouterr()
    assert main(_args(run_dir, rows_tsv, out, shards=3, shard_index=0)) == job.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "holds another prediction run" in err and "\n" not in err


def _bad_inputs(run_dir: Path, rows_tsv: Path, tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    no_labels = tmp_path / "no-labels"
    shutil.copytree(run_dir, no_labels)
    (no_labels / "label_map.json").unlink()
    header_only = write_tsv(tmp_path / "in" / "header.tsv", [], columns=("id", "sentence"))
    empty = tmp_path / "in" / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out"
    return {
        "missing model": (_args(tmp_path / "nope", rows_tsv, out), f"{tmp_path / 'nope'}: model directory not found"),
        "missing label map": (_args(no_labels, rows_tsv, out), f"{no_labels}: no label_map.json"),
        "unknown column": (_args(run_dir, rows_tsv, out, text_column="text"),
                           f"{rows_tsv} line 1: missing column 'text' (header: id, sentence)"),
        "unknown id column": (_args(run_dir, rows_tsv, out, id_column="key"),
                              f"{rows_tsv} line 1: missing column 'key'"),
        "no rows": (_args(run_dir, header_only, out), f"{header_only}: no data rows"),
        "empty file": (_args(run_dir, empty, out), f"{empty}: file is empty"),
        "shard out of range": (_args(run_dir, rows_tsv, out, shards=2, shard_index=2),
                               "--shard-index 2: must be < --shards 2"),
        "bad batch size": (_args(run_dir, rows_tsv, out, batch_size=0), "--batch-size 0: must be an integer >= 1"),
        "too long": (_args(run_dir, rows_tsv, out, max_seq_length=256),
                     "--max-seq-length 256 exceeds the model's 128 positions"),
    }


@pytest.mark.parametrize("case", ["missing model", "missing label map", "unknown column", "unknown id column",
                                  "no rows", "empty file", "shard out of range", "bad batch size", "too long"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, run_dir, rows_tsv, tmp_path, capsys):
    args, message = _bad_inputs(run_dir, rows_tsv, tmp_path)[case]
    assert main(args) == job.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bert_train: error: {message}"), err
    assert "\n" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("code", "status", "exit_code"), WRITE_PROBE_ANSWERS)
def test_the_start_up_write_check_tells_a_wrong_output_from_an_unavailable_s3(s3_stub, run_dir, rows_tsv, capsys,
                                                                              code, status, exit_code):
    s3_stub.add_client_error("create_multipart_upload", service_error_code=code, service_message="injected",
                             http_status_code=status)
    out = "s3://artifacts/predictions/p"
    assert main(_args(run_dir, rows_tsv, out)) == exit_code
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bert_train: error: output location {out}: cannot write ({code}: injected)"), err
    assert "\n" not in err
    s3_stub.assert_no_pending_responses()


def test_predict_through_s3(run_dir, rows_tsv, tmp_path, moto_s3, monkeypatch, caplog):
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    for bucket in ("data", "artifacts"):
        s3.create_bucket(Bucket=bucket)
    for path in run_dir.iterdir():
        s3.upload_file(str(path), "artifacts", f"runs/tiny-run/{path.name}")
    rows = [{"key": n * 10, "sentence": r["sentence"]} for n, r in enumerate(read_sst2("dev.tsv")[:45])]
    s3.put_object(Bucket="data", Key="datasets/rows.jsonl", Body="".join(json.dumps(r) + "\n" for r in rows).encode())
    monkeypatch.setenv(job.ENV_ARTIFACTS_URI, "s3://artifacts")
    monkeypatch.setenv(job.ENV_PREDICTION_ID, "pred-1")
    base = ["predict", "--model", "s3://artifacts/runs/tiny-run", "--input", "s3://data/datasets/rows.jsonl",
            "--id-column", "key", "--batch-size", "8", "--max-seq-length", "64", "--shards", "2"]
    for index in (1, 0):
        assert main([*base, "--shard-index", str(index)]) == job.EXIT_OK
    prefix = layout.prediction_prefix("pred-1")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="artifacts", Prefix=prefix)["Contents"])
    assert keys == sorted(prefix + name for name in (layout.PREDICTION_MANIFEST, layout.prediction_part(0),
                                                     layout.prediction_part(1), layout.prediction_shard_manifest(0),
                                                     layout.prediction_shard_manifest(1)))
    bodies = [s3.get_object(Bucket="artifacts", Key=prefix + layout.prediction_part(shard))["Body"].read()
              for shard in (0, 1)]
    from_s3 = [json.loads(line) for body in bodies for line in body.splitlines()]
    assert [x["id"] for x in from_s3] == [str(n * 10) for n in range(45)]
    local = tmp_path / "local"
    assert main(_args(run_dir, rows_tsv, local)) == job.EXIT_OK
    _same_predictions([{**x, "id": None} for x in from_s3], [{**x, "id": None} for x in _parts(local, 1)])
    manifest = json.loads(s3.get_object(Bucket="artifacts", Key=prefix + layout.PREDICTION_MANIFEST)["Body"].read())
    assert manifest["model"] == "s3://artifacts/runs/tiny-run" and manifest["total_rows"] == 45

    # a model prefix without its label map: refused, nothing under predictions/
    s3.delete_object(Bucket="artifacts", Key="runs/tiny-run/label_map.json")
    monkeypatch.setenv(job.ENV_PREDICTION_ID, "pred-2")
    monkeypatch.setenv(job.ENV_CACHE_DIR, str(tmp_path / "fresh-cache"))
    assert main(base[:-2]) == job.EXIT_BAD_INPUT
    assert "Contents" not in s3.list_objects_v2(Bucket="artifacts", Prefix=layout.prediction_prefix("pred-2"))


# --- the contract ---------------------------------------------------------------------------------


def test_config_fields_are_the_tables_rows():
    assert [f.name for f in dataclasses.fields(predict.PredictConfig)] == [row.name for row in prediction.OPTIONS]
    for f in dataclasses.fields(predict.PredictConfig):
        if f.default is not dataclasses.MISSING:
            assert f.default == prediction.BY_NAME[f.name].default


@pytest.mark.parametrize("total, shards", [(45, 3), (10, 4), (3, 5), (1, 1), (10_001, 7)])
def test_shards_cover_every_row_once_in_order(total, shards):
    ranges = [prediction.shard_rows(total, shards, i) for i in range(shards)]
    assert [n for r in ranges for n in r] == list(range(total))
    assert max(map(len, ranges)) - min(map(len, ranges)) <= 1


def test_validate_and_command_round_trip():
    values = prediction.validate({"model": "s3://a/runs/r/", "input": "s3://d/x.tsv", "shards": "4",
                                  "batch_size": 128, "id_column": "", "precision": "bf16"})
    assert values == {"model": "s3://a/runs/r/", "input": "s3://d/x.tsv", "shards": 4, "batch_size": 128,
                      "precision": "bf16"}
    command = prediction.command(values)
    assert command[0] == prediction.SUBCOMMAND
    assert dataclasses.asdict(predict.parse_args(command[1:])) == dataclasses.asdict(predict.PredictConfig(**values))
    assert prediction.job_command()[:5] == ["predict", "--model", "Ref::model", "--input", "Ref::input_uri"]
    for bad, message in (({"model": "m"}, "--input: required"),
                         ({"model": "m", "input": "i", "precision": "fp16"}, "--precision fp16: must be one of"),
                         ({"model": "m", "input": "i", "shards": 10_001}, "--shards 10001: must be an integer")):
        with pytest.raises(InvalidHyperparameter, match=message):
            prediction.validate(bad)


def test_a_killed_shard_continues_after_its_last_whole_segment(run_dir, rows_tsv, tmp_path, monkeypatch):
    """Predictions are flushed as they are made: a crash loses at most the segment being scored,
    and a rerun scores only the rows after the last whole segment, in order, one line per row."""
    single = tmp_path / "single"
    assert main(_args(run_dir, rows_tsv, single, id_column="id")) == job.EXIT_OK
    monkeypatch.setattr(layout, "PREDICTION_SEGMENT_ROWS", 8)  # 15 rows per shard: segments of 8 and 7
    out = tmp_path / "out"

    def config(index: int) -> predict.PredictConfig:
        return predict.parse_args(_args(run_dir, rows_tsv, out, id_column="id", shards=3, shard_index=index,
                                        batch_size=4)[1:])

    def crash_at_third_batch(batch):
        if batch == 3:  # in the second segment of shard 1 (two batches of 4 per segment of 8)
            raise RuntimeError("host went away")

    with pytest.raises(RuntimeError, match="host went away"):
        predict.run(config(1), on_batch=crash_at_third_batch)
    assert (out / layout.prediction_segment(1, 0)).exists() and not (out / layout.prediction_segment(1, 1)).exists()
    assert not (out / layout.prediction_part(1)).exists()
    first_segment = [json.loads(x) for x in (out / layout.prediction_segment(1, 0)).read_text().splitlines()]
    assert [x["row"] for x in first_segment] == list(range(15, 23))

    def sigterm_at_first_batch(batch):
        os.kill(os.getpid(), signal.SIGTERM)

    stopped = predict.run(config(1), on_batch=sigterm_at_first_batch)
    assert stopped.exit_code == job.EXIT_INTERRUPTED
    assert (out / layout.prediction_segment(1, 0)).read_text().splitlines() == [
        json.dumps(x, ensure_ascii=False) for x in first_segment]  # the whole segment stays

    batches: list[int] = []
    resumed = predict.run(config(1), on_batch=batches.append)
    assert resumed.exit_code == 0 and len(batches) == 2  # only the 7 rows after the first segment
    assert sorted(p.name for p in out.iterdir()) == [layout.prediction_part(1), layout.prediction_shard_manifest(1)]
    for index in (0, 2):
        assert predict.run(config(index)).exit_code == 0
    _same_predictions(_parts(out, 3), _parts(single, 1))


def test_segments_of_another_run_are_refused(run_dir, rows_tsv, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / layout.prediction_progress(0)).write_text(json.dumps({"model": "other", "input": "x", "shards": 1,
                                                                 "total_rows": 45, "segment_rows": 8192}))
    assert main(_args(run_dir, rows_tsv, out)) == job.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds another prediction run's segments of shard 0" in err[0]


def test_a_folder_of_compressed_shards_is_scored_in_order(run_dir, tmp_path):
    import gzip

    rows = [{"sentence": r["sentence"]} for r in read_sst2("dev.tsv")[:20]]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows[:12]).encode()))
    write_tsv(folder / "b.tsv", rows[12:], columns=("sentence",))
    whole = write_tsv(tmp_path / "whole.tsv", rows, columns=("sentence",))
    assert main(_args(run_dir, folder, tmp_path / "a")) == job.EXIT_OK
    assert main(_args(run_dir, whole, tmp_path / "b")) == job.EXIT_OK
    _same_predictions(_parts(tmp_path / "a", 1), _parts(tmp_path / "b", 1))


def test_a_shard_child_checks_only_its_own_rows(run_dir, tmp_path, capsys):
    """Rows are counted, not parsed, outside a child's shard: a bad row in shard 0 stops shard 0
    (one line, nothing written) and not shard 1, which never reads it."""
    rows = [json.dumps({"sentence": r["sentence"]}) for r in read_sst2("dev.tsv")[:20]]
    rows[3] = '{"sentence": ["not", "text"]}'
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert main(_args(run_dir, path, out, shards=2, shard_index=1)) == job.EXIT_OK
    assert json.loads((out / layout.prediction_shard_manifest(1)).read_text())["first_row"] == 10
    assert main(_args(run_dir, path, out, shards=2, shard_index=0)) == job.EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"bert_train: error: {path} line 4: column 'sentence' must be text, not a list")
    assert not (out / layout.prediction_part(0)).exists() and not (out / layout.prediction_progress(0)).exists()


# --- what the run was trained with (training_args.json) --------------------------------------------
def _trained_run(run_dir: Path, tmp_path: Path, **training_args) -> Path:
    """`run_dir`'s model with a training_args.json saying how it was trained."""
    copy = tmp_path / "trained"
    shutil.copytree(run_dir, copy)
    (copy / layout.TRAINING_ARGS_FILE).write_text(json.dumps(training_args))
    return copy


@pytest.fixture
def pairs_tsv(tmp_path) -> Path:
    rows = [{"sentence": r["sentence"], "hypothesis": r["sentence"][::-1]} for r in read_sst2("dev.tsv")[:12]]
    return write_tsv(tmp_path / "in" / "pairs.tsv", rows, columns=("sentence", "hypothesis"))


def test_predict_scores_pairs_at_the_trained_length_without_flags(run_dir, pairs_tsv, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = _trained_run(run_dir, tmp_path, max_seq_length=16, text_pair_column="hypothesis")
    out = tmp_path / "out"
    args = ["predict", "--model", str(model_dir), "--input", str(pairs_tsv), "--output", str(out),
            "--precision", "fp32"]
    assert main(args) == job.EXIT_OK
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    rows = read_sst2("dev.tsv")[:12]
    with torch.no_grad():
        expected = [model(**tokenizer(r["sentence"], r["sentence"][::-1], truncation=True, max_length=16,
                                      return_tensors="pt")).logits.softmax(-1)[0] for r in rows]
    for x, p in zip(_parts(out, 1), expected, strict=True):
        assert [x["probabilities"][label] for label in LABELS] == pytest.approx(p.tolist(), abs=1e-5)


def test_an_input_without_the_trained_pair_column_is_refused(run_dir, rows_tsv, tmp_path, capsys):
    model_dir = _trained_run(run_dir, tmp_path, max_seq_length=16, text_pair_column="hypothesis")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model_dir), "--input", str(rows_tsv), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bert_train: error: {rows_tsv} line 1: missing column 'hypothesis'") and "\n" not in err
    assert not out.exists()


def test_a_pair_column_for_a_single_text_model_is_refused(run_dir, pairs_tsv, tmp_path, capsys):
    model_dir = _trained_run(run_dir, tmp_path, max_seq_length=16, text_pair_column=None)
    out = tmp_path / "out"
    assert main(_args(model_dir, pairs_tsv, out, text_pair_column="hypothesis")) == job.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err == ("bert_train: error: --text-pair-column hypothesis: the model was trained on single texts "
                   "(no text_pair_column in its training_args.json)")
    assert not out.exists()


def test_another_max_seq_length_than_trained_is_scored_with_a_warning(run_dir, rows_tsv, tmp_path, caplog):
    model_dir = _trained_run(run_dir, tmp_path, max_seq_length=16, text_pair_column=None)
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="bert_train"):
        assert main(_args(model_dir, rows_tsv, out)) == job.EXIT_OK  # --max-seq-length 64
    assert ("--max-seq-length 64: the model was trained with 16 (training_args.json); scoring with 64"
            in caplog.messages)


def test_from_training_fills_in_only_what_is_not_given():
    trained = {"max_seq_length": 32, "text_pair_column": "b"}
    untrained_long_text = {"long_text": "truncate"}  # the training default
    assert prediction.from_training({}, trained) == ({"max_seq_length": 32, "text_pair_column": "b",
                                                      **untrained_long_text}, [])
    assert prediction.from_training({"text_pair_column": "c"}, trained)[0]["text_pair_column"] == "c"
    assert prediction.from_training({}, {}) == ({"max_seq_length": prediction.DEFAULT_MAX_SEQ_LENGTH,
                                                 **untrained_long_text}, [])
    assert prediction.validate({"model": "m", "input": "i", "max_seq_length": ""}) == {"model": "m", "input": "i"}
