"""bertbatch submit against a moto platform."""

from __future__ import annotations

import json
import re

import pytest

from bertbatch_contract import discovery, hyperparameters, tags
from bertbatch_contract import job as job_env
from bertbatch_contract.naming import Naming

from .helpers import one_line_error, submitted_id

# The platform's jobs cannot reach the internet: the default model must be staged to submit.
pytestmark = pytest.mark.usefixtures("default_model_staged")


def env_of(job: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in job["container"]["environment"]}


def test_submit_spot_first_with_run_name_and_hyperparameters(platform, bb, submit_spy):
    train = platform.put_dataset("datasets/sst2/train.tsv")
    dev = platform.put_dataset("datasets/sst2/dev.tsv")
    r = bb("submit", "--train", train, "--eval", dev, "--run-name", "sst2-try1", "--epochs", "2",
           "--learning-rate", "3e-5", "--batch-size", "16", "--gpus", "2", "--timeout", "2h")
    assert r.exit_code == 0, r.output
    job_id = submitted_id(r.output)
    assert "run id:  sst2-try1" in r.output
    assert f"queue:   {platform.names[discovery.QUEUE_SPOT_FIRST]}" in r.output
    assert f"#jobs/detail/{job_id}" in r.output and "region=us-east-1" in r.output

    job = platform.job(job_id)
    assert job["jobName"] == "sst2-try1"
    assert job["jobQueue"].endswith("/" + platform.names[discovery.QUEUE_SPOT_FIRST])
    assert job["jobDefinition"] == platform.names[discovery.JOB_DEFINITION_SINGLE]
    assert job["parameters"]["train_uri"] == train
    assert job["parameters"]["eval_uri"] == dev
    assert job["parameters"]["epochs"] == "2"
    assert job["parameters"]["learning_rate"] == "3e-5"
    assert job["parameters"]["batch_size"] == "16"
    assert env_of(job)[job_env.ENV_RUN_ID] == "sst2-try1"
    assert job["tags"][tags.TAG_RUN_ID] == "sst2-try1"
    assert set(job["tags"]) == {tags.TAG_RUN_ID, tags.TAG_COST_ESTIMATE, tags.TAG_TEAM}
    assert job["tags"][tags.TAG_TEAM] == "default"  # the deployment's default team
    assert job["timeout"] == {"attemptDurationSeconds": 7200}

    (call,) = submit_spy
    assert call["propagateTags"] is True
    assert call["containerOverrides"]["resourceRequirements"] == [{"type": "GPU", "value": "2"}]
    # every parameter the CLI sends is a Ref:: parameter of the job definition
    assert set(call["parameters"]) <= set(hyperparameters.JOB_PARAMETERS)


def test_submit_generates_readable_run_id_and_uses_job_definition_defaults(platform, bb):
    platform.put_dataset("datasets/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    r = bb("submit")
    assert r.exit_code == 0, r.output
    run_id = re.search(r"run id:  (\S+)", r.output).group(1)
    assert re.fullmatch(r"bert-base-uncased-\d{8}-\d{6}-[0-9a-f]{4}", run_id)
    job = platform.job(submitted_id(r.output))
    assert env_of(job)[job_env.ENV_RUN_ID] == run_id
    assert job["parameters"]["train_uri"] == f"s3://{platform.data_bucket}/datasets/train.tsv"
    assert job["parameters"]["epochs"] == hyperparameters.parameter_defaults()["epochs"]


def test_submit_bare_key_is_under_datasets(platform, bb, submit_spy):
    platform.put_dataset("datasets/imdb/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    r = bb("submit", "--train", "imdb/train.tsv")
    assert r.exit_code == 0, r.output
    assert submit_spy[0]["parameters"]["train_uri"] == f"s3://{platform.data_bucket}/datasets/imdb/train.tsv"
    assert "eval_uri" not in submit_spy[0]["parameters"]  # job definition default, checked to exist


def test_submit_on_demand_queue(platform, bb):
    train = platform.put_dataset("datasets/t.tsv")
    platform.put_dataset("datasets/dev.tsv")
    r = bb("submit", "--train", train, "--on-demand")
    assert r.exit_code == 0, r.output
    job = platform.job(submitted_id(r.output))
    assert job["jobQueue"].endswith("/" + platform.names[discovery.QUEUE_ON_DEMAND])


def test_submit_multi_node(platform, bb, submit_spy):
    train = platform.put_dataset("datasets/t.tsv")
    platform.put_dataset("datasets/dev.tsv")
    r = bb("submit", "--train", train, "--nodes", "2", "--gpus", "4", "--run-name", "mn")
    assert r.exit_code == 0, r.output
    (call,) = submit_spy
    assert call["jobQueue"] == platform.names[discovery.QUEUE_MULTI_NODE]
    assert call["jobDefinition"] == platform.names[discovery.JOB_DEFINITION_MULTI_NODE]
    assert "containerOverrides" not in call
    assert call["nodeOverrides"]["numNodes"] == 2
    (override,) = call["nodeOverrides"]["nodePropertyOverrides"]
    assert override["targetNodes"] == "0:"
    assert {"name": job_env.ENV_RUN_ID, "value": "mn"} in override["containerOverrides"]["environment"]
    assert override["containerOverrides"]["resourceRequirements"] == [{"type": "GPU", "value": "4"}]


def test_submit_array(platform, bb, submit_spy):
    train = platform.put_dataset("datasets/t.tsv")
    platform.put_dataset("datasets/dev.tsv")
    r = bb("submit", "--train", train, "--array", "4", "--run-name", "sweep")
    assert r.exit_code == 0, r.output
    assert submit_spy[0]["arrayProperties"] == {"size": 4}
    assert "sweep-0 .. sweep-3" in r.output
    job = platform.job(submitted_id(r.output))
    assert job["arrayProperties"]["size"] == 4


def test_submit_grid_json_product(platform, bb, submit_spy, tmp_path):
    train = platform.put_dataset("datasets/t.tsv")
    platform.put_dataset("datasets/dev.tsv")
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"learning_rate": ["2e-5", "3e-5"], "epochs": [2, 3]}))
    r = bb("submit", "--train", train, "--grid", grid)
    assert r.exit_code == 0, r.output
    (call,) = submit_spy
    assert call["arrayProperties"] == {"size": 4}
    env = {e["name"]: e["value"] for e in call["containerOverrides"]["environment"]}
    rows = json.loads(env[job_env.ENV_GRID])
    assert rows == [
        {"learning_rate": "2e-5", "epochs": "2"}, {"learning_rate": "2e-5", "epochs": "3"},
        {"learning_rate": "3e-5", "epochs": "2"}, {"learning_rate": "3e-5", "epochs": "3"},
    ]


def test_submit_grid_csv(platform, bb, submit_spy, tmp_path):
    train = platform.put_dataset("datasets/t.tsv")
    platform.put_dataset("datasets/dev.tsv")
    grid = tmp_path / "grid.csv"
    grid.write_text("learning-rate,batch_size\n2e-5,16\n5e-5,32\n1e-4,8\n")
    r = bb("submit", "--train", train, "--grid", grid)
    assert r.exit_code == 0, r.output
    env = {e["name"]: e["value"] for e in submit_spy[0]["containerOverrides"]["environment"]}
    assert json.loads(env[job_env.ENV_GRID])[2] == {"learning_rate": "1e-4", "batch_size": "8"}
    assert submit_spy[0]["arrayProperties"] == {"size": 3}


def test_submit_dry_run_submits_nothing(platform, bb, submit_spy):
    train = platform.put_dataset("datasets/t.tsv")
    platform.put_dataset("datasets/dev.tsv")
    r = bb("submit", "--train", train, "--run-name", "dry", "--dry-run")
    assert r.exit_code == 0, r.output
    assert submit_spy == []
    request = json.loads(r.output)
    assert request["jobName"] == "dry" and request["parameters"]["train_uri"] == train


# --- error paths: one line, non-zero exit, nothing submitted -------------------------------------
def test_submit_missing_train_object(platform, bb, submit_spy):
    platform.put_dataset("datasets/dev.tsv")
    uri = f"s3://{platform.data_bucket}/datasets/x.tsv"
    r = bb("submit", "--train", uri)
    one_line_error(r, f"--train {uri}: no such object")
    assert submit_spy == []


def test_submit_missing_default_eval_object(platform, bb, submit_spy):
    train = platform.put_dataset("datasets/t.tsv")
    r = bb("submit", "--train", train)
    one_line_error(r, "--eval", "datasets/dev.tsv: no such object")
    assert submit_spy == []


def test_submit_missing_bucket(platform, bb):
    r = bb("submit", "--train", "s3://no-such-bucket-xyz/a.tsv")
    one_line_error(r, "no such bucket")


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--epochs", "0"), ("--epochs", "two"), ("--learning-rate", "-1"), ("--learning-rate", "abc"),
     ("--batch-size", "0"), ("--max-seq-length", "9000"), ("--long-text", "middle"), ("--text-column", " ")],
)
def test_submit_bad_hyperparameter(aws, bb, submit_spy, flag, value):
    # nothing deployed: the check must come before any AWS call to name the flag
    r = bb("submit", flag, value)
    one_line_error(r, flag)
    assert submit_spy == []


def container_message(flag: str, value: str) -> str:
    """What the training container says about `flag value` at start (its own validation)."""
    from bert_train import config

    with pytest.raises(config.BadInput) as err:
        parsed = config.parse_args(["--train", "train.tsv", flag, value], env={})
        config.validate(parsed)
    return str(err.value)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--learning-rate", "nan"), ("--learning-rate", "0"), ("--learning-rate", "5"), ("--epochs", "0"),
     ("--max-seq-length", "4")],
)
def test_submit_rejects_what_the_container_rejects_in_its_words(platform, bb, submit_spy, flag, value):
    platform.put_dataset("datasets/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    expected = container_message(flag, value)
    r = bb("submit", flag, value)
    assert one_line_error(r) == f"Error: {expected}"
    assert submit_spy == []
    # the same deployment takes a value the container accepts
    good = {"--learning-rate": "3e-5", "--epochs": "2", "--max-seq-length": "64"}[flag]
    assert bb("submit", flag, good).exit_code == 0
    assert len(submit_spy) == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["--nodes", "0"], "--nodes 0"), (["--gpus", "9"], "--gpus 9"), (["--array", "1"], "--array 1"),
     (["--timeout", "30s"], "--timeout 30s"), (["--timeout", "soon"], "--timeout soon"),
     (["--run-name", "bad name!"], "--run-name"), (["--array", "2", "--nodes", "2"], "multi-node")],
)
def test_submit_bad_options(aws, bb, submit_spy, args, fragment):
    r = bb("submit", *args)
    one_line_error(r, fragment)
    assert submit_spy == []


def test_submit_bad_grid(aws, bb, tmp_path):
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps([{"learning_rate": "2e-5"}, {"dropout": 0.1}]))
    one_line_error(bb("submit", "--grid", grid), "row 1", "dropout")
    grid.write_text(json.dumps([{"epochs": 0}]))
    one_line_error(bb("submit", "--grid", grid), "epochs 0")
    one_line_error(bb("submit", "--grid", tmp_path / "missing.json"), "no such file")


def test_submit_not_deployed_profile(platform, bb):
    r = bb("submit", "--profile", "staging")
    one_line_error(r, "not deployed for profile 'staging' in us-east-1", "/bert-batch/staging/", "make deploy")


def test_submit_missing_one_parameter(platform, bb):
    platform.client("ssm").delete_parameter(
        Name=Naming(platform.profile).parameter(discovery.QUEUE_ON_DEMAND))
    one_line_error(bb("submit", "--on-demand"), "/bert-batch/dev/queue/on-demand is missing")


def test_submit_refuses_to_overwrite_a_finished_run(platform, bb, submit_spy):
    platform.put_dataset("datasets/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    platform.put_run("done-run", {"eval_accuracy": 0.9})
    one_line_error(bb("submit", "--run-name", "done-run"), "run done-run already finished", "choose another name")
    assert submit_spy == []


def test_submit_resumes_an_unfinished_run(platform, bb, submit_spy):
    platform.put_dataset("datasets/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    platform.put_run("half-run", None, {"checkpoints/half-run/step-000000100/manifest.json": b"{}"})
    r = bb("submit", "--run-name", "half-run")
    assert r.exit_code == 0, r.output
    assert "Run half-run has checkpoints: the job resumes from them." in r.output
    assert submit_spy[0]["tags"][tags.TAG_RUN_ID] == "half-run"


def test_submit_records_the_estimate_bertbatch_estimate_gives_for_its_queue(platform, bb):
    body = b"sentence\tlabel\n" + b"".join(b"sentence number %d\t%d\n" % (i, i % 2) for i in range(500))
    train = platform.put_dataset("datasets/big/train.tsv", body)
    dev = platform.put_dataset("datasets/big/dev.tsv")
    r = bb("submit", "--train", train, "--eval", dev, "--epochs", "2", "--max-seq-length", "64", "--run-name", "est1")
    assert r.exit_code == 0, r.output
    job = platform.job(submitted_id(r.output))
    shown = bb("estimate", "--rows", "500", "--epochs", "2", "--max-seq-length", "64", "-o", "json")
    options = json.loads(shown.output)["options"]
    spot_first = [o["cost"] for o in options
                  if o["queue"] == discovery.QUEUE_SPOT_FIRST and o["pricing"] == "spot" and o["placeable"]]
    assert job["tags"][tags.TAG_COST_ESTIMATE] == f"{min(spot_first):.2f}"


def spot_first_cost(bb, *args: str) -> tuple[float, dict]:
    """The cheapest placeable Spot option on spot-first by `bertbatch estimate ARGS`, and its record."""
    shown = bb("estimate", *args, "-o", "json")
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.output)
    costs = [o["cost"] for o in record["options"]
             if o["queue"] == discovery.QUEUE_SPOT_FIRST and o["pricing"] == "spot" and o["placeable"]]
    return min(costs), record


def test_the_recorded_estimate_counts_the_tokens_of_the_training_rows_with_the_jobs_tokenizer(platform, bb):
    from bertbatch_contract import layout

    from .conftest import FIXTURES

    train = platform.put_dataset("datasets/sst2-tok/train.tsv", (FIXTURES / "sst2" / "train.tsv").read_bytes())
    dev = platform.put_dataset("datasets/sst2-tok/dev.tsv")
    vocab = (FIXTURES / "vocab.txt").read_bytes()
    prefix = layout.model_prefix("tok-model")
    platform.s3.put_object(Bucket=platform.artifacts_bucket, Key=prefix + "vocab.txt", Body=vocab)
    platform.s3.put_object(Bucket=platform.artifacts_bucket, Key=layout.model_manifest_key("tok-model"),
                           Body=json.dumps({"format": 1, "name": "tok-model", "source": "test", "files": [
                               {"path": "vocab.txt", "size": len(vocab), "sha256": "0" * 64}]}).encode())
    # 50 epochs: long enough for the tokens, not the startup, to decide the cost
    args = ("--train", train, "--eval", dev, "--model", "tok-model", "--epochs", "50")
    dry = bb("submit", *args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    r = bb("submit", *args, "--run-name", "tok1")
    assert r.exit_code == 0, r.output
    recorded = platform.job(submitted_id(r.output))["tags"][tags.TAG_COST_ESTIMATE]

    expected, shown = spot_first_cost(bb, "--data", train, "--model", "tok-model", "--epochs", "50")
    assert shown["tokens"]["source"] == "sample" and shown["tokens"]["tokenizer"].endswith(prefix + "vocab.txt")
    assert recorded == f"{expected:.2f}" == json.loads(dry.output)["tags"][tags.TAG_COST_ESTIMATE]
    padded, _ = spot_first_cost(bb, "--rows", str(shown["rows"]), "--epochs", "50")  # 128 tokens a row
    assert float(recorded) < padded and f"{padded:.2f}" != recorded


def test_the_row_count_of_a_large_file_comes_from_its_first_mebibyte():
    from bertbatch.cost.job_estimate_tag import rows_from_sample

    line = b"a sentence of some length\t1\n"
    whole = b"sentence\tlabel\n" + line * 10
    assert rows_from_sample(whole, len(whole), header=True) == 10  # the whole file: exact
    head = line * 1000
    assert rows_from_sample(head, len(head) * 50, header=True) == 50_000 - 1
    assert rows_from_sample(b'{"sentence": "x", "label": 1}\n' * 4, 10_000, header=False) > 100


def test_the_recorded_estimate_of_a_store_comes_from_its_manifest(platform, bb, tmp_path):
    """--train a prepared store: the estimate takes every row's real tokens from manifest.json
    (nothing sampled), the same figure `bertbatch estimate --data STORE` gives."""
    from .conftest import FIXTURES

    local = tmp_path / "store"
    prepared = bb("prepare", "--local", "--input", FIXTURES / "sst2" / "train.tsv", "--model", "random:tiny",
                  "--vocab", FIXTURES / "vocab.txt", "--max-seq-length", "64", "--workers", "1", "--store", local)
    assert prepared.exit_code == 0, prepared.output
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        platform.put_dataset(f"datasets/prepared/sst2/{path.relative_to(local).as_posix()}", path.read_bytes())
    store_uri = f"s3://{platform.data_bucket}/datasets/prepared/sst2/"
    dev = platform.put_dataset("datasets/sst2/dev.tsv")
    r = bb("submit", "--train", store_uri, "--eval", dev, "--max-seq-length", "64", "--epochs", "50",
           "--run-name", "store1")
    assert r.exit_code == 0, r.output
    recorded = platform.job(submitted_id(r.output))["tags"][tags.TAG_COST_ESTIMATE]
    expected, shown = spot_first_cost(bb, "--data", store_uri, "--max-seq-length", "64", "--epochs", "50")
    assert shown["tokens"]["source"] == "store" and shown["rows"] == 2000
    assert recorded == f"{expected:.2f}"


def test_data_files_too_big_to_read_whole_are_refused_with_the_prepare_command(platform, bb, submit_spy,
                                                                              monkeypatch):
    from bertbatch.jobs import preparation_array as prepare_batch

    monkeypatch.setattr(prepare_batch, "MAX_RAW_TRAIN_BYTES", 1000)  # the real limit is 200 MB
    body = b"sentence\tlabel\n" + b"".join(b"sentence number %d\t%d\n" % (i, i % 2) for i in range(100))
    big = platform.put_dataset("datasets/big/part-0.tsv", body)
    platform.put_dataset("datasets/big/part-1.tsv", body)
    dev = platform.put_dataset("datasets/big-dev.tsv")
    prefix = big.rsplit("/", 1)[0] + "/"
    one_line_error(bb("submit", "--train", prefix, "--eval", dev),
                   f"--train {prefix}: 0 MB of data files would be read whole into memory",
                   f"bertbatch prepare --input {prefix}")
    assert submit_spy == []
    small = platform.put_dataset("datasets/small.tsv", body[:900])
    assert bb("submit", "--train", small, "--eval", dev).exit_code == 0
