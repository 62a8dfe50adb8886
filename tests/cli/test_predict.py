"""`bertbatch predict`: the checks before submit and the SubmitJob of one job or an array job of
shards (moto, the templates' platform), and `--local` end to end on the CPU: a tiny model trained
with `bertbatch local`, promoted with `promote --local`, scored by NAME@ALIAS, sharded, one shard
lost and rerun."""

from __future__ import annotations

import json
import shutil

import pytest

from bertbatch_contract import discovery, job, layout, prediction, tasks

from .conftest import FIXTURES
from .helpers import one_line_error
from .test_registry import METRICS, put_finished_run

ROWS = b"id\tsentence\n" + b"".join(f"r{i}\tsentence number {i}\n".encode() for i in range(10))


def put_rows(platform, key: str = "datasets/rows.tsv", body: bytes = ROWS) -> str:
    return platform.put_dataset(key, body)


def predict_json(bb, *args: str) -> dict:
    r = bb("predict", *args, "-o", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)  # progress and the container's log go to stderr


def container_target(definition: dict, request: dict, array_index: int | None):
    """What the container would score: its flags (the request's command, or the definition's with
    the request's parameters) parsed by the container's parser, and its shard from the job's
    environment and Batch's array index."""
    from bert_train import predict as container

    parameters = {**definition.get("parameters", {}), **request["parameters"]}
    command = request["containerOverrides"].get("command") or definition["containerProperties"]["command"]
    argv = [parameters[w[len("Ref::"):]] if w.startswith("Ref::") else w for w in command]
    assert argv[0] == prediction.SUBCOMMAND
    config = container.parse_args(argv[1:])
    env = {e["name"]: e["value"] for e in request["containerOverrides"]["environment"]}
    if array_index is not None:
        env[job.ENV_BATCH_ARRAY_INDEX] = str(array_index)
    return config, container.resolve_target(config, env)


def test_one_job_scores_a_run_output(platform, bb, submit_spy):
    put_finished_run(platform, "run-a")
    source = put_rows(platform)
    record = predict_json(bb, "--model", "run-a", "--input", "rows.tsv")
    (request,) = submit_spy
    assert request["jobDefinition"] == platform.names[discovery.JOB_DEFINITION_PREDICT]
    assert request["jobQueue"] == platform.names[discovery.QUEUE_SPOT_FIRST]
    assert "arrayProperties" not in request
    output = f"s3://{platform.artifacts_bucket}/{layout.prediction_prefix(record['prediction_id'])}"
    assert request["parameters"]["model"] == f"s3://{platform.artifacts_bucket}/runs/run-a/"
    assert (request["parameters"]["input_uri"], request["parameters"]["output_uri"]) == (source, output)
    assert (record["output"], record["shards"]) == (output, 1)
    assert platform.job(record["job_id"])["jobName"] == record["prediction_id"]
    config, target = container_target(platform.batch.describe_job_definitions(
        jobDefinitions=[request["jobDefinition"]])["jobDefinitions"][0], request, None)
    assert (config.model, config.input, target.output, target.shards, target.shard_index) == (
        f"s3://{platform.artifacts_bucket}/runs/run-a/", source, output, 1, 0)


def test_an_array_job_gives_child_i_shard_i(platform, bb, submit_spy):
    put_finished_run(platform, "run-a")
    put_rows(platform)
    record = predict_json(bb, "--model", "run-a", "--input", "rows.tsv", "--shards", "4", "--id-column", "id")
    (request,) = submit_spy
    assert request["arrayProperties"] == {"size": 4}
    assert "--id-column" in request["containerOverrides"]["command"]
    definition = platform.batch.describe_job_definitions(jobDefinitions=[request["jobDefinition"]])["jobDefinitions"][0]
    total = ROWS.count(b"\n") - 1
    covered = []
    for child in range(4):
        config, target = container_target(definition, request, child)
        assert (target.shards, target.shard_index, config.id_column) == (4, child, "id")
        covered += list(prediction.shard_rows(total, target.shards, target.shard_index))
    assert covered == list(range(total))  # every row once, in order
    assert record["shards"] == 4


def test_name_at_alias_and_wait(platform, bb, submit_spy):
    put_finished_run(platform, "run-a")
    put_rows(platform)
    assert bb("promote", "run-a", "--name", "sst2-sentiment", "--alias", "production").exit_code == 0
    record = predict_json(bb, "--model", "sst2-sentiment@production", "--input", "rows.tsv", "--wait", "--poll",
                          "0.01")
    assert (record["model_version"], record["run_id"]) == (1, "run-a")
    assert submit_spy[0]["parameters"]["model"] == f"s3://{platform.artifacts_bucket}/runs/run-a/"


@pytest.mark.parametrize(("args", "fragments"), [
    (["--model", "no-such-run"], ["--model no-such-run: no finished run no-such-run"]),
    (["--model", "nolabels"], ["--model nolabels: no label_map.json"]),
    (["--model", "m@production"], ["model 'm' has no alias 'production'"]),
    (["--model", "random:tiny"], ["random:* models are built on this machine"]),
    (["--text-column", "review"], ["no column 'review' in the header (has: id, sentence)"]),
    (["--id-column", "key"], ["no column 'key'"]),
    (["--input", "empty.tsv"], ["--input s3://", "empty.tsv: the file is empty"]),
    (["--input", "missing.tsv"], ["missing.tsv: no such object"]),
    (["--input", "rows.parquet"], ["use a .jsonl, .csv, .tsv file"]),
    (["--shards", "0"], ["--shards 0"]),
    (["--output", "s3://no-such-bucket-here/p/"], ["--output s3://no-such-bucket-here/p/: no such bucket"]),
])
def test_bad_input_fails_before_any_submit(platform, bb, submit_spy, args, fragments):
    put_finished_run(platform, "run-a")
    put_finished_run(platform, "nolabels", labels=False)
    put_rows(platform)
    put_rows(platform, "datasets/empty.tsv", b"")
    put_rows(platform, "datasets/rows.parquet", ROWS)
    given = dict(zip(args[::2], args[1::2], strict=True))
    full = {"--model": "run-a", "--input": "rows.tsv", **given}
    one_line_error(bb("predict", *[x for kv in full.items() for x in kv]), *fragments)
    assert submit_spy == []


# --- --local, end to end on the CPU ----------------------------------------------------------------
def part_lines(directory) -> list[dict]:
    lines = []
    for part in sorted(directory.glob("part-*.jsonl")):
        lines += [json.loads(line) for line in part.read_text().splitlines()]
    return lines


@pytest.mark.slow
def test_local_train_promote_predict_sharded_and_resumed(bb, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)  # local-runs/ under the test's directory
    sst2 = FIXTURES / "sst2"
    r = bb("local", "--train", sst2 / "train.tsv", "--eval", sst2 / "dev.tsv", "--model", "random:tiny",
           "--vocab", FIXTURES / "vocab.txt", "--epochs", "1", "--max-steps", "3", "--batch-size", "8",
           "--max-seq-length", "32", "--run-name", "tiny-run")
    assert r.exit_code == 0, r.output
    promoted = json.loads(bb("promote", "tiny-run", "--name", "tiny", "--alias", "production", "--local",
                             "-o", "json").stdout)
    assert promoted["version"] == 1
    # Listed and inspected here too, as on S3 (tests/cli/test_local_listing.py has the details).
    def json_lines(*args: str) -> list[dict]:
        return [json.loads(line) for line in bb(*args, "--local", "-o", "json").stdout.splitlines()]

    (run,) = json_lines("runs")
    assert (run["run_id"], run["state"]) == ("tiny-run", "finished") and "eval_accuracy" in run["metrics"]
    (version,) = json_lines("models", "show", "tiny")
    assert (version["run_id"], version["aliases"]) == ("tiny-run", ["production"])
    (compared,) = json_lines("compare", "tiny-run")
    assert compared["steps"] == 3 and compared["duration_seconds"] > 0

    rows = tmp_path / "rows.tsv"
    rows.write_text("sentence\tlabel\n" + "".join(sst2.joinpath("dev.tsv").read_text().splitlines(True)[1:41]))
    common = ("--model", "tiny@production", "--input", rows, "--local", "--max-seq-length", "32",
              "--batch-size", "7")
    whole = predict_json(bb, *common, "--output", tmp_path / "whole")
    assert whole["rows"] == 40
    sharded_dir = tmp_path / "sharded"
    assert predict_json(bb, *common, "--shards", "3", "--output", sharded_dir)["rows"] == 40
    expected = part_lines(tmp_path / "whole")
    assert [p["row"] for p in expected] == list(range(40))
    assert set(expected[0]["probabilities"]) == {"0", "1"}  # the labels of the training data

    # Shard 1 killed before it wrote its manifest (and so no top-level manifest): the rerun
    # skips shards 0 and 2 and scores shard 1 only.
    (sharded_dir / layout.prediction_shard_manifest(1)).unlink()
    (sharded_dir / layout.prediction_part(1)).unlink()
    (sharded_dir / layout.PREDICTION_MANIFEST).unlink()
    before = {i: (sharded_dir / layout.prediction_part(i)).stat().st_mtime_ns for i in (0, 2)}
    capfd.readouterr()
    assert predict_json(bb, *common, "--shards", "3", "--output", sharded_dir)["rows"] == 40
    log = capfd.readouterr().err
    assert log.count("already done") == 2 and "shard 2/3" in log and "rows scored" in log
    assert {i: (sharded_dir / layout.prediction_part(i)).stat().st_mtime_ns for i in (0, 2)} == before

    resumed = part_lines(sharded_dir)
    assert [p["row"] for p in resumed] == [p["row"] for p in expected]
    assert [p["label"] for p in resumed] == [p["label"] for p in expected]
    for a, b in zip(resumed, expected, strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)

    # A finished prediction is not overwritten; a missing local model is one line.
    one_line_error(bb("predict", *common, "--output", tmp_path / "whole"), "already holds a finished prediction")
    shutil.rmtree(tmp_path / "local-runs" / "runs" / "tiny-run")
    one_line_error(bb("predict", *common), "--model tiny@production", "no config.json")


# --- what the run was trained with (training_args.json) --------------------------------------------
PAIRS = b"id\tsentence\thypothesis\n" + b"".join(f"r{i}\ta {i}\tb {i}\n".encode() for i in range(4))


def put_pair_run(platform, run_id: str = "run-p") -> None:
    """A finished run trained on sentence pairs at 64 tokens."""
    prefix = layout.run_prefix(run_id)
    platform.put_run(run_id, METRICS, {
        prefix + "config.json": b'{"model_type": "bert"}',
        prefix + layout.LABEL_MAP_FILE: b'{"labels": ["negative", "positive"]}',
        prefix + layout.TRAINING_ARGS_FILE: json.dumps({"max_seq_length": 64, "text_pair_column": "hypothesis",
                                                        "text_column": "sentence"}).encode()})


def test_a_pair_run_scores_its_pair_column_at_its_length(platform, bb, submit_spy):
    put_pair_run(platform)
    put_rows(platform, "datasets/pairs.tsv", PAIRS)
    predict_json(bb, "--model", "run-p", "--input", "pairs.tsv")
    (request,) = submit_spy
    definition = platform.batch.describe_job_definitions(jobDefinitions=[request["jobDefinition"]])["jobDefinitions"][0]
    config, _ = container_target(definition, request, None)
    assert (config.text_pair_column, config.max_seq_length) == ("hypothesis", 64)


@pytest.mark.parametrize(("model", "args", "fragment"), [
    # trained with a pair column: an input without it is refused, not scored on text 1 alone
    ("run-p", ["--input", "rows.tsv"], "no column 'hypothesis' in the header (has: id, sentence)"),
    # trained on single texts: a pair column is refused
    ("run-a", ["--input", "pairs.tsv", "--text-pair-column", "hypothesis"],
     "--text-pair-column hypothesis: the model was trained on single texts"),
])
def test_a_pair_column_that_contradicts_the_training_is_refused(platform, bb, submit_spy, model, args, fragment):
    put_pair_run(platform)
    put_finished_run(platform, "run-a")
    put_rows(platform)
    put_rows(platform, "datasets/pairs.tsv", PAIRS)
    one_line_error(bb("predict", "--model", model, *args), fragment)
    assert submit_spy == []


def test_another_max_seq_length_than_trained_is_sent_with_a_warning(platform, bb, submit_spy):
    put_pair_run(platform)
    put_rows(platform, "datasets/pairs.tsv", PAIRS)
    r = bb("predict", "--model", "run-p", "--input", "pairs.tsv", "--max-seq-length", "32")
    assert r.exit_code == 0, r.output
    assert ("Warning: --max-seq-length 32: the model was trained with 64 (training_args.json); scoring with 32"
            in r.stderr)
    (request,) = submit_spy
    assert request["parameters"]["max_seq_length"] == "32"


def _task_rows(problem_type: str, lines: list[str]) -> list[dict]:
    """SST-2 rows with a label of the problem type: several labels (sentiment, length), or a score."""
    rows = []
    for line in lines:
        sentence, label = line.rstrip("\n").split("\t")
        long = len(sentence.split()) > 12
        rows.append({"sentence": sentence, "label": (["positive"] if label == "1" else []) + (["long"] if long else [])
                     if problem_type == "multi_label_classification" else int(label) * 2 + long})
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("problem_type", ["multi_label_classification", "regression"])
def test_local_trains_each_problem_type_and_predict_scores_every_row(bb, tmp_path, monkeypatch, problem_type):
    monkeypatch.chdir(tmp_path)  # local-runs/ under the test's directory
    sst2 = FIXTURES / "sst2"
    files = {}
    for name, count in (("train", 160), ("dev", 40)):
        rows = _task_rows(problem_type, (sst2 / f"{name}.tsv").read_text().splitlines(True)[1:count + 1])
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = bb("local", "--train", files["train"], "--eval", files["dev"], "--model", "random:tiny",
           "--vocab", FIXTURES / "vocab.txt", "--problem-type", problem_type, "--epochs", "1", "--max-steps", "4",
           "--batch-size", "8", "--max-seq-length", "32", "--run-name", "task-run")
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "local-runs" / layout.run_prefix("task-run") / layout.METRICS_FILE).read_text())
    assert metrics["problem_type"] == problem_type
    assert all(isinstance(metrics[name], float) for name in tasks.METRICS[problem_type])

    assert predict_json(bb, "--model", "task-run", "--input", files["dev"], "--local",
                        "--output", tmp_path / "scored")["rows"] == 40
    lines = part_lines(tmp_path / "scored")
    assert [x["row"] for x in lines] == list(range(40))
    if problem_type == "regression":
        assert all(isinstance(x["value"], float) and "label" not in x for x in lines)
    else:
        assert all(set(x["probabilities"]) == {"long", "positive"} and set(x["labels"]) <= {"long", "positive"}
                   for x in lines)
