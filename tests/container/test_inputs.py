"""Reading and validating inputs: formats, labels, and a one-line error for every bad input,
raised before anything is written to the output or checkpoint location."""

from __future__ import annotations

import json
import os

import pytest

from bert_train.__main__ import main
from bert_train.config import BadInput, TrainConfig, resolve_cadence, resolve_locations
from bert_train.data import check_eval_labels, infer_labels, read_examples
from bert_train.tasks import SINGLE_LABEL, Task
from bertbatch_contract import hyperparameters, job, runs

from .conftest import cli, subprocess_env, tiny_args, write_tsv


def test_reads_jsonl_csv_and_tsv_with_pairs_and_int_or_string_labels(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"q": "is it", "a": "yes it is", "y": 1}\n\n{"q": "why", "a": "because", "y": 10}\n'
                     '{"q": "so", "a": "so so", "y": 2}\n')
    rows = read_examples(str(jsonl), "q", "y", pair_column="a")
    assert [(r.text, r.pair, r.label, r.line) for r in rows] == [
        ("is it", "yes it is", "1", 1), ("why", "because", "10", 3), ("so", "so so", "2", 4)]
    assert infer_labels(rows, str(jsonl)) == ["1", "2", "10"]  # integers order numerically

    csv_path = tmp_path / "b.csv"
    csv_path.write_text('text,label\n"hello, world",pos\n"say ""hi""",neg\n')
    rows = read_examples(str(csv_path), "text", "label")
    assert [(r.text, r.label, r.line) for r in rows] == [("hello, world", "pos", 2), ('say "hi"', "neg", 3)]
    assert infer_labels(rows, str(csv_path)) == ["neg", "pos"]

    tsv = write_tsv(tmp_path / "c.tsv", [{"sentence": 'a "quoted word', "label": 0}, {"sentence": "b", "label": 1}])
    rows = read_examples(str(tsv), "sentence", "label")
    assert [r.text for r in rows] == ['a "quoted word', "b"]  # GLUE TSVs are unquoted


def _bad(tmp_path, capsys, train_text: str | None, dev_text: str | None = None, *, train_name="train.tsv",
         dev_name="dev.tsv", **overrides) -> str:
    """Run the CLI on bad input; assert exit 2, one stderr line, nothing written. Returns the line."""
    train, dev = tmp_path / train_name, tmp_path / dev_name
    if train_text is not None:
        train.write_text(train_text)
    dev.write_text(dev_text if dev_text is not None else "sentence\tlabel\ngood\t1\nbad\t0\n")
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    code = main(tiny_args(train, dev, out, ckpt, **overrides))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == job.EXIT_BAD_INPUT
    assert len(err) == 1 and err[0].startswith("bert_train: error: "), err
    assert not out.exists() and not ckpt.exists()
    return err[0]


GOOD_TSV = "sentence\tlabel\ngreat\t1\nawful\t0\nfine\t1\n"


def test_missing_file(tmp_path, capsys):
    line = _bad(tmp_path, capsys, None)
    assert "train.tsv: file not found" in line


def test_empty_file(tmp_path, capsys):
    assert "train.tsv: file is empty" in _bad(tmp_path, capsys, "")
    assert "train.tsv: no data rows" in _bad(tmp_path, capsys, "sentence\tlabel\n")


def test_malformed_json_names_the_line(tmp_path, capsys):
    text = '{"sentence": "ok", "label": 1}\n{"sentence": "ok", "label": 0}\n{"sentence": oops}\n'
    line = _bad(tmp_path, capsys, text, train_name="train.jsonl")
    assert "train.jsonl line 3: malformed JSON (Expecting value)" in line


def test_missing_column_in_header_and_in_a_json_line(tmp_path, capsys):
    line = _bad(tmp_path, capsys, "text\tlabel\na\t1\nb\t0\n")
    assert "train.tsv line 1: missing column 'sentence'" in line
    text = '{"sentence": "a", "label": 1}\n{"sentence": "b"}\n'
    line = _bad(tmp_path, capsys, text, train_name="train.jsonl")
    assert "train.jsonl line 2: missing column 'label'" in line
    line = _bad(tmp_path, capsys, GOOD_TSV, text_pair_column="hypothesis")
    assert "missing column 'hypothesis'" in line


def test_fewer_than_two_labels(tmp_path, capsys):
    line = _bad(tmp_path, capsys, "sentence\tlabel\na\t1\nb\t1\n")
    assert "train.tsv: found 1 distinct label(s) (1); need at least 2" in line


def test_eval_label_not_in_train(tmp_path, capsys):
    line = _bad(tmp_path, capsys, GOOD_TSV, "sentence\tlabel\nx\t1\ny\t2\n")
    assert "dev.tsv line 3: label '2' does not appear in the training data" in line


def test_ragged_row_unknown_extension_and_bad_numbers(tmp_path, capsys):
    ragged = "sentence\tlabel\na\t1\nb\t0\textra\n"
    assert "train.tsv line 3: expected 2 fields, found 3" in _bad(tmp_path, capsys, ragged)
    assert "unknown file type" in _bad(tmp_path, capsys, GOOD_TSV, train_name="train.txt")
    # the hyperparameter table's message, the one `bertbatch submit` gives too
    line = _bad(tmp_path, capsys, GOOD_TSV, batch_size=0)
    assert line == "bert_train: error: --batch-size 0: must be an integer >= 1"
    # 3 examples cannot fill one batch of 16
    assert "less than one global batch" in _bad(tmp_path, capsys, GOOD_TSV)


def test_labels_may_be_json_integers_or_strings_but_not_other_types(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"sentence": "a", "label": "pos"}\n{"sentence": "b", "label": [1]}\n')
    with pytest.raises(BadInput, match=r"t.jsonl line 2: label must be a string or an integer"):
        read_examples(str(p), "sentence", "label")


def test_eval_labels_are_checked_against_train():
    from bert_train.data import Example

    task = Task(SINGLE_LABEL, ("0", "1"))
    check_eval_labels([Example("a", None, "1", 2)], task, "dev.tsv")
    with pytest.raises(BadInput, match="dev.tsv line 5: label 'x'"):
        check_eval_labels([Example("a", None, "x", 5)], task, "dev.tsv")


def test_locations_follow_flags_then_environment():
    env = {"ARTIFACTS_URI": "s3://art", "CHECKPOINT_URI": "s3://art/checkpoints", "AWS_BATCH_JOB_ID": "job-1",
           "CHECKPOINT_EVERY_STEPS": "250", "BERT_BATCH_PROFILE": "prod"}
    config = TrainConfig(train="t.tsv", eval="d.tsv")
    loc = resolve_locations(config, env)
    assert (loc.run_id, loc.output_uri, loc.checkpoint_uri) == ("job-1", "s3://art/runs/job-1",
                                                                "s3://art/checkpoints/job-1")
    cadence = resolve_cadence(config, env)
    assert (cadence.every_steps, cadence.every_minutes) == (250, job.DEFAULT_CHECKPOINT_EVERY_MINUTES)
    assert loc.profile == "prod"
    config = TrainConfig(train="t", eval="d", run_id="r7", checkpoint_every_steps=9)
    loc = resolve_locations(config, {**env, "RUN_ID": "r1"})
    assert (loc.run_id, loc.output_uri, resolve_cadence(config, env).every_steps) == ("r7", "s3://art/runs/r7", 9)
    loc = resolve_locations(TrainConfig(train="t", eval="d"), {**env, "RUN_ID": "r1"})
    assert loc.run_id == "r1"  # RUN_ID (survives retries) wins over the Batch job id
    with pytest.raises(BadInput, match="no output location"):
        resolve_locations(TrainConfig(train="t", eval="d"), {})


def test_cadence_defaults_and_when_it_is_due():
    cadence = resolve_cadence(TrainConfig(train="t"), {})
    assert (cadence.every_steps, cadence.every_minutes) == (job.DEFAULT_CHECKPOINT_EVERY_STEPS,
                                                            job.DEFAULT_CHECKPOINT_EVERY_MINUTES)
    cadence = resolve_cadence(TrainConfig(train="t"), {job.ENV_CHECKPOINT_EVERY_MINUTES: "0.5"})
    assert cadence.every_minutes == 0.5
    assert cadence.step_due(cadence.every_steps * 3) and not cadence.step_due(cadence.every_steps + 1)
    assert cadence.time_due(30.0) and not cadence.time_due(29.9)
    with pytest.raises(BadInput, match=r"^\$CHECKPOINT_EVERY_STEPS='0': must be an integer >= 1$"):
        resolve_cadence(TrainConfig(train="t"), {job.ENV_CHECKPOINT_EVERY_STEPS: "0"})


def test_generated_run_ids_have_the_contract_format_and_bad_ones_stop_the_run():
    loc = resolve_locations(TrainConfig(train="t", model="bert-base-uncased", output_uri="out"), {})
    assert runs.check_run_id(loc.run_id) and loc.run_id.startswith("bert-base-uncased-")
    with pytest.raises(BadInput, match=r"^\$RUN_ID 'a/b': use 1-100 letters"):
        resolve_locations(TrainConfig(train="t", output_uri="out"), {job.ENV_RUN_ID: "a/b"})
    with pytest.raises(BadInput, match=r"^--run-id '\.\.': use 1-100 letters"):
        resolve_locations(TrainConfig(train="t", output_uri="out", run_id=".."), {})


def test_train_config_fields_are_the_hyperparameter_table():
    from dataclasses import fields

    assert {f.name for f in fields(TrainConfig)} == set(hyperparameters.BY_NAME)
    config = TrainConfig(train="t")
    for row in hyperparameters.HYPERPARAMETERS:
        if row.name != "train":
            assert getattr(config, row.name) == row.default, row.name


BAD_VALUES = [
    ("learning_rate", "nan"), ("learning_rate", "inf"), ("learning_rate", "-0.00002"),
    ("weight_decay", "nan"), ("weight_decay", "-0.1"),
    ("max_grad_norm", "inf"), ("max_grad_norm", "-1"),
    ("seed", "-1"), ("seed", str(2**32)),
    ("checkpoint_every_steps", "0"), ("checkpoint_every_steps", "-5"),
    ("checkpoint_every_minutes", "0"), ("checkpoint_every_minutes", "-1"),
    ("eval_batch_size", "0"), ("eval_batch_size", "-8"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=[f"{n}={v}" for n, v in BAD_VALUES])
def test_values_the_table_rejects_exit_2_on_one_line(tmp_path, capsys, name, value):
    """Each of these used to give a traceback or a NaN model; now the same line `bertbatch submit` gives."""
    line = _bad(tmp_path, capsys, GOOD_TSV, **{name: value})
    flag = "--" + name.replace("_", "-")
    assert line == f"bert_train: error: {flag} {value}: must be {hyperparameters.BY_NAME[name].rule()}"


def test_every_table_row_is_a_cli_flag():
    from bert_train.config import build_parser

    flags = {a for action in build_parser()._actions for a in action.option_strings}
    assert {row.flag for row in hyperparameters.HYPERPARAMETERS} <= flags
    assert set(hyperparameters.job_command()[::2]) <= flags  # the job definitions' command


def test_the_job_definitions_defaults_are_the_trainers_defaults():
    """A plain submit: every Ref:: filled with its default; "" leaves an optional flag unset."""
    from bert_train.config import parse_args

    filled = {**hyperparameters.parameter_defaults(), "train_uri": "s3://b/train.tsv", "eval_uri": ""}
    argv = [filled[arg.removeprefix("Ref::")] if arg.startswith("Ref::") else arg
            for arg in hyperparameters.job_command()]
    assert parse_args(argv, env={}) == TrainConfig(train="s3://b/train.tsv")


@pytest.mark.slow
def test_real_cli_process_reports_bad_input_on_one_line(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"sentence": "a", "label": 1}\n' * 6 + "{not json\n")
    dev = write_tsv(tmp_path / "dev.tsv", [{"sentence": "a", "label": 1}])
    proc = cli(tiny_args(train, dev, tmp_path / "out", tmp_path / "ckpt"))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == job.EXIT_BAD_INPUT
    assert stderr.strip() == (f"bert_train: error: {train} line 7: malformed JSON "
                              "(Expecting property name enclosed in double quotes)")
    assert stdout == "" and not (tmp_path / "out").exists()


def test_pairs_get_token_types_and_single_sentences_do_not():
    from bert_train.data import Example, encode
    from bert_train.modeling import build_tokenizer

    from .conftest import VOCAB

    tok, _ = build_tokenizer("random:tiny", str(VOCAB), "unused")
    pairs = encode([Example("a good film", "it was fine", "1", 2)], tok, Task(SINGLE_LABEL, ("1",)), 64)
    assert pairs.token_type_ids is not None and set(pairs.token_type_ids[0]) == {0, 1}
    single = encode([Example("a good film", None, "1", 2)], tok, Task(SINGLE_LABEL, ("1",)), 64)
    assert single.token_type_ids is None and single.input_ids[0][0] == tok.cls_token_id
    long = encode([Example("word " * 200, None, "1", 2)], tok, Task(SINGLE_LABEL, ("1",)), 16)
    assert len(long.input_ids[0]) == 16  # truncated to --max-seq-length


def test_sweep_child_takes_its_grid_row_and_its_own_run_id():
    from bert_train.config import parse_args

    grid = json.dumps([{"learning_rate": "2e-5"}, {"learning_rate": "1e-4", "batch_size": "8", "model": "random:tiny"}])
    env = {job.ENV_GRID: grid, job.ENV_BATCH_ARRAY_INDEX: "1", job.ENV_RUN_ID: "run-42",
           job.ENV_ARTIFACTS_URI: "s3://art", job.ENV_CHECKPOINT_URI: "s3://art/checkpoints"}
    config = parse_args(["--train", "t.tsv", "--eval", "d.tsv", "--learning-rate", "3e-5", "--batch-size", "32"], env)
    assert (config.learning_rate, config.batch_size, config.model) == (1e-4, 8, "random:tiny")
    loc = resolve_locations(config, env)
    assert loc.run_id == runs.array_run_id("run-42", 1) == "run-42-1"
    assert (loc.output_uri, loc.checkpoint_uri) == ("s3://art/runs/run-42-1", "s3://art/checkpoints/run-42-1")
    # without RUN_ID the parent's job id is the base (a child's job id is <parent>:<index>)
    loc = resolve_locations(config, {job.ENV_BATCH_JOB_ID: "abc-123:1", job.ENV_BATCH_ARRAY_INDEX: "1",
                                     job.ENV_ARTIFACTS_URI: "s3://art"})
    assert loc.run_id == "abc-123-1"

    for bad_env, message in (
        ({job.ENV_GRID: "[{", job.ENV_BATCH_ARRAY_INDEX: "0"}, "malformed JSON"),
        ({job.ENV_GRID: grid, job.ENV_BATCH_ARRAY_INDEX: "2"}, "no such row"),
        ({job.ENV_GRID: '[{"lr": "1"}]', job.ENV_BATCH_ARRAY_INDEX: "0"}, "unknown job parameter 'lr'"),
        # the table's message, as `bertbatch submit --grid` gives it
        ({job.ENV_GRID: '[{"epochs": "two"}]', job.ENV_BATCH_ARRAY_INDEX: "0"},
         r"^\$BERT_BATCH_GRID row 0: --epochs two: must be an integer >= 1$"),
    ):
        with pytest.raises(BadInput, match=message):
            parse_args(["--train", "t.tsv", "--eval", "d.tsv"], bad_env)


JSON_TEXT_FIELDS = [
    ('{"sentence": {"a": 1}, "label": 1}', "column 'sentence' must be text, not an object"),
    ('{"sentence": ["a", "b"], "label": 1}', "column 'sentence' must be text, not a list"),
    ('{"sentence": NaN, "label": 1}', "column 'sentence' must be text, not nan"),
    ('{"sentence": true, "label": 1}', "column 'sentence' must be text, not true/false"),
    ('{"sentence": "fine", "label": null}', "empty label"),
]


@pytest.mark.parametrize(("row", "message"), JSON_TEXT_FIELDS, ids=[m for _, m in JSON_TEXT_FIELDS])
def test_json_fields_that_are_not_text_are_rejected_with_file_and_line(tmp_path, capsys, row, message):
    """Objects, lists and NaN used to be trained on as their Python str()."""
    text = '{"sentence": "good", "label": 1}\n{"sentence": "bad", "label": 0}\n' + row + "\n"
    line = _bad(tmp_path, capsys, text, train_name="train.jsonl")
    assert f"train.jsonl line 3: {message}" in line


def test_json_numbers_are_text(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"sentence": 42, "label": 1}\n{"sentence": 0.5, "label": 0}\n')
    assert [r.text for r in read_examples(str(p), "sentence", "label")] == ["42", "0.5"]


def test_empty_or_incomplete_vocab_is_bad_input(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n\n")
    assert _bad(tmp_path, capsys, GOOD_TSV, vocab=vocab) == f"bert_train: error: {vocab}: vocab file is empty"
    vocab.write_text("[PAD]\nhello\n")
    assert _bad(tmp_path, capsys, GOOD_TSV, vocab=vocab) == (
        f"bert_train: error: {vocab}: vocab file lacks the special token(s) [UNK], [CLS], [SEP]")


def test_output_location_is_checked_before_training(tmp_path, capsys):
    not_a_dir = tmp_path / "out-file"
    not_a_dir.write_text("x")
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text(GOOD_TSV * 10)
    dev.write_text(GOOD_TSV)
    code = main(tiny_args(train, dev, not_a_dir, tmp_path / "ckpt", batch_size=2))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == job.EXIT_BAD_INPUT
    assert err == [f"bert_train: error: output location {not_a_dir}: not a directory"]
    assert not (tmp_path / "ckpt").exists()


def test_s3_output_bucket_is_checked_before_training(moto_s3, tmp_path, capsys):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket="artifacts")
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text(GOOD_TSV * 10)
    dev.write_text(GOOD_TSV)
    code = main(tiny_args(train, dev, "s3://no-such-bucket/runs/x", "s3://artifacts/checkpoints/x", batch_size=2))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == job.EXIT_BAD_INPUT
    assert len(err) == 1 and err[0].startswith(  # the location the user gave, not the probe's key
        "bert_train: error: output location s3://no-such-bucket/runs/x: cannot write (NoSuchBucket"), err
    # the probe of a writable location leaves nothing behind
    assert s3.list_objects_v2(Bucket="artifacts").get("Contents", []) == []


def test_the_s3_write_probe_needs_no_delete_and_leaves_no_version(moto_s3):
    """The artifacts bucket is versioned and the training role may not delete under runs/: the
    probe is a multipart upload that is started and aborted, so no object, version, delete marker
    or pending upload is left, and no DeleteObject is needed."""
    import boto3

    from bert_train import storage

    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket="artifacts")
    s3.put_bucket_versioning(Bucket="artifacts", VersioningConfiguration={"Status": "Enabled"})
    storage.check_writable("s3://artifacts/runs/x")
    versions = s3.list_object_versions(Bucket="artifacts")
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []
    assert s3.list_multipart_uploads(Bucket="artifacts").get("Uploads", []) == []


def test_bad_input_leaves_no_scratch_directory(tmp_path, capsys, monkeypatch):
    import tempfile

    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))
    # no checkpoint location: the checkpoints would live in the scratch dir, but none were written
    _bad(tmp_path, capsys, "sentence\tlabel\na\t1\nb\t1\n", checkpoint_uri=None)
    assert list(scratch_root.iterdir()) == []


@pytest.mark.slow
def test_botocore_info_lines_do_not_join_the_error_line(moto_s3, tmp_path):
    import boto3

    boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1").create_bucket(Bucket="artifacts")
    dev = write_tsv(tmp_path / "dev.tsv", [{"sentence": "a", "label": 1}])
    env = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                     "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN")}
    proc = cli(tiny_args("s3://artifacts/nope.tsv", dev, "s3://artifacts/runs/x", "s3://artifacts/checkpoints/x"),
               env=subprocess_env(env))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == job.EXIT_BAD_INPUT
    assert stderr.strip().splitlines() == [
        "bert_train: error: s3://artifacts/nope.tsv: cannot read (NoSuchKey: The specified key does not exist.)"]
