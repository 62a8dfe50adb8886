"""bertbatch local: the trainer's command line, path checks, and a tiny model end to end."""

from __future__ import annotations

import json
import shlex
import sys

import pytest

from bertbatch_contract import hyperparameters, job, layout

from .conftest import FIXTURES
from .helpers import one_line_error

TRAIN = str(FIXTURES / "sst2" / "train.tsv")
DEV = str(FIXTURES / "sst2" / "dev.tsv")
VOCAB = str(FIXTURES / "vocab.txt")


def test_dry_run_builds_the_trainer_command(bb, tmp_path):
    r = bb("local", "--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", VOCAB,
           "--epochs", "1", "--learning-rate", "1e-4", "--batch-size", "8", "--max-seq-length", "32",
           "--run-name", "loc", "--output-dir", tmp_path / "out", "--checkpoint-dir", tmp_path / "ck",
           "--max-steps", "5", "--seed", "7", "--precision", "fp32", "--dry-run",
           "--", "--checkpoint-every-minutes", "3")
    assert r.exit_code == 0, r.output
    prepare_line, train_line = r.output.strip().splitlines()
    argv = shlex.split(train_line)
    assert argv[:3] == [sys.executable, "-m", "bert_train"]
    flags = dict(zip(argv[3::2], argv[4::2], strict=True))
    store_dir = flags["--train"]
    assert store_dir.replace("\\", "/").startswith("local-runs/stores/train-")
    # the --train file is prepared first, into that store, with the settings the trainer uses
    prepare_argv = shlex.split(prepare_line)
    assert prepare_argv[:4] == [sys.executable, "-m", "bert_train", "prepare"]
    assert dict(zip(prepare_argv[4::2], prepare_argv[5::2], strict=True)) == {
        "--input": TRAIN, "--output": store_dir, "--model": "random:tiny", "--vocab": VOCAB, "--max-seq-length": "32"}
    assert flags == {
        "--train": store_dir, "--eval": DEV, "--model": "random:tiny", "--epochs": "1", "--learning-rate": "1e-4",
        "--batch-size": "8", "--max-seq-length": "32", "--vocab": VOCAB, "--run-id": "loc",
        "--output-uri": str(tmp_path / "out"), "--checkpoint-uri": str(tmp_path / "ck"), "--max-steps": "5",
        "--seed": "7", "--precision": "fp32", "--checkpoint-every-minutes": "3",
    }
    # the hyperparameter flags are the contract's
    names = ("model", "epochs", "learning_rate", "batch_size", "max_seq_length")
    assert {hyperparameters.JOB_PARAMETERS[k].flag for k in names} <= set(flags)


def test_default_locations_mirror_the_bucket_layout(bb):
    r = bb("local", "--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", VOCAB, "--run-name", "x",
           "--dry-run", "--no-prepare")
    assert len(r.output.strip().splitlines()) == 1  # no prepare step
    flags = dict(zip(shlex.split(r.output)[3::2], shlex.split(r.output)[4::2], strict=True))
    assert flags["--train"] == TRAIN
    assert flags["--output-uri"].replace("\\", "/") == "local-runs/runs/x"
    assert flags["--checkpoint-uri"].replace("\\", "/") == "local-runs/checkpoints/x"


@pytest.mark.parametrize(("args", "fragment"), [
    (["--train", "missing.tsv", "--eval", DEV], "--train missing.tsv: no such file"),
    (["--train", TRAIN, "--eval", "nope/dev.tsv"], "--eval nope/dev.tsv: no such file"),
    (["--train", "s3://b/k.tsv", "--eval", DEV], "takes local paths"),
    (["--train", TRAIN, "--eval", DEV, "--model", "random:tiny"], "needs --vocab"),
    (["--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", "no-vocab.txt"],
     "--vocab no-vocab.txt: no such file"),
    (["--train", TRAIN, "--eval", DEV, "--model", "./no-model-dir"], "--model ./no-model-dir: no such directory"),
    (["--train", TRAIN, "--eval", DEV, "--epochs", "0"], "--epochs 0"),
    (["--train", TRAIN, "--eval", DEV, "--max-steps", "0"], "--max-steps 0"),
])
def test_local_errors(bb, args, fragment):
    one_line_error(bb("local", *args), fragment)


BASE = ["--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", VOCAB, "--dry-run"]


@pytest.mark.parametrize(("args", "fragment"), [
    # An option local does not know is refused, not handed to the trainer (whose argparse took
    # `--output json` as `--output-uri json`).
    (["--output-uri", "elsewhere"], "No such option '--output-uri'"),
    (["--checkpoint-every-steps", "5"], "No such option '--checkpoint-every-steps'"),
    (["stray.tsv"], "unexpected extra argument (stray.tsv)"),
    # Scripts that ask for JSON learn where the record is instead.
    (["--output", "json"], "--output json: bertbatch local prints the training's progress, not a record"),
    (["-o", "json"], "bertbatch runs --local -o json"),
    # After --, flags local sets itself would make the trainer write where the CLI does not report.
    (["--", "--output-uri", "elsewhere"], "-- --output-uri: bertbatch local has its own option for it: --output-dir"),
    (["--", "--run-id=other"], "-- --run-id: bertbatch local has its own option for it: --run-name"),
    (["--", "--epochs", "3"], "-- --epochs: bertbatch local has its own option for it: --epochs"),
    (["--", "--train", TRAIN], "-- --train: bertbatch local has its own option for it: --train"),
])
def test_local_takes_its_own_options_before_dashes_only(bb, args, fragment):
    one_line_error(bb("local", *BASE, *args), fragment)


def test_trainer_flags_after_dashes_reach_the_trainer_last(bb):
    r = bb("local", *BASE, "--run-name", "x", "--", "--checkpoint-every-steps", "5", "--checkpoint-every-minutes", "3")
    assert r.exit_code == 0, r.output
    assert shlex.split(r.output)[-4:] == ["--checkpoint-every-steps", "5", "--checkpoint-every-minutes", "3"]


def test_usage_shows_where_trainer_flags_go(bb):
    assert "Usage: bertbatch local [OPTIONS] [-- TRAINER FLAGS...]" in bb("local", "--help").output


# A stand-in for the trainer: prints what bert_train prints (EMF, progress, eval and plain lines).
FAKE_TRAINER = """
import json, os, sys
from bertbatch_contract.metrics import emf_line
from bertbatch_contract.progress import Progress, format_progress
print("loading data")
print(emf_line({"TrainLoss": 0.5}, namespace="BertBatch", dimensions={"RunId": os.environ["RUN_ID"]}))
print(format_progress(Progress(epoch=1, epochs=1, step=3, total_steps=6, loss=0.5, samples_per_second=9.5,
                               eta_seconds=4)))
print("[eval] step 6 epoch 1.00 eval_accuracy 0.5000")
print(emf_line({"EvalAccuracy": 0.5}, namespace="BertBatch", dimensions={"RunId": os.environ["RUN_ID"]}))
sys.exit(int(sys.argv[1]))
"""


def fake_trainer(monkeypatch, exit_code: int = 0) -> None:
    from bertbatch.jobs import preparation_process as local_prepare
    from bertbatch.jobs import trainer_process as local

    monkeypatch.setattr(local, "command", lambda **_: [sys.executable, "-c", FAKE_TRAINER, str(exit_code)])
    monkeypatch.setattr(local_prepare, "run", lambda argv: 0)  # nothing to prepare for a stand-in


def test_exit_code_is_passed_through(bb, monkeypatch, tmp_path):
    fake_trainer(monkeypatch, job.EXIT_BAD_INPUT)
    r = bb("local", "--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", VOCAB, "--run-name", "rc",
           "--output-dir", tmp_path / "out")
    assert r.exit_code == job.EXIT_BAD_INPUT
    assert "exited with code 2" in r.output


def test_emf_lines_go_to_the_run_folder_not_the_terminal(bb, monkeypatch, tmp_path):
    fake_trainer(monkeypatch)
    out = tmp_path / "out"
    r = bb("local", "--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", VOCAB, "--run-name", "emf",
           "--output-dir", out)
    assert r.exit_code == 0, r.output
    assert '"_aws"' not in r.output
    lines = r.stdout.splitlines()
    # without a terminal: the progress line as the trainer wrote it, the other lines unchanged, in order
    assert lines == ["loading data", "[progress] epoch 1/1 step 3/6 loss 0.5000 samples/s 9.5 eta 0:00:04",
                     "[eval] step 6 epoch 1.00 eval_accuracy 0.5000"]
    records = [json.loads(line) for line in (out / "metrics.emf.jsonl").read_text().splitlines()]
    assert [r.get("TrainLoss", r.get("EvalAccuracy")) for r in records] == [0.5, 0.5]
    assert all("_aws" in r and r["RunId"] == "emf" for r in records)  # RUN_ID reached the trainer


def test_a_run_without_emf_lines_writes_no_metrics_file(bb, monkeypatch, tmp_path):
    from bertbatch.jobs import preparation_process as local_prepare
    from bertbatch.jobs import trainer_process as local

    monkeypatch.setattr(local, "command", lambda **_: [sys.executable, "-c", "print('bad input'); raise SystemExit(2)"])
    monkeypatch.setattr(local_prepare, "run", lambda argv: 0)
    r = bb("local", "--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", VOCAB,
           "--output-dir", tmp_path / "out")
    assert r.exit_code == 2 and "bad input" in r.output
    assert not (tmp_path / "out").exists()


def test_a_failed_prepare_stops_before_training(bb, monkeypatch, tmp_path):
    from bertbatch.jobs import preparation_process as local_prepare
    from bertbatch.jobs import trainer_process as local

    monkeypatch.setattr(local, "run", lambda *_, **__: pytest.fail("the trainer must not start"))
    monkeypatch.setattr(local_prepare, "run", lambda argv: job.EXIT_BAD_INPUT)
    r = bb("local", "--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", VOCAB,
           "--output-dir", tmp_path / "out")
    assert r.exit_code == job.EXIT_BAD_INPUT and f"preparing {TRAIN} exited with code 2" in r.output


@pytest.mark.slow
def test_local_trains_a_tiny_model_end_to_end(bb, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the prepared store goes to local-runs/stores/ here
    out, ck = tmp_path / "out", tmp_path / "ck"
    r = bb("local", "--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", VOCAB,
           "--epochs", "1", "--max-steps", "5", "--batch-size", "8", "--max-seq-length", "32",
           "--run-name", "tiny", "--output-dir", out, "--checkpoint-dir", ck)
    assert r.exit_code == 0, r.output
    stores = list((tmp_path / "local-runs" / "stores").glob("train-*/manifest.json"))
    assert len(stores) == 1 and json.loads(stores[0].read_text())["rows"] == 2000
    assert "[progress]" in r.output and '"_aws"' not in r.output  # EMF lines went to the run folder
    emf = [json.loads(line) for line in (out / "metrics.emf.jsonl").read_text().splitlines()]
    assert emf and all("_aws" in record for record in emf)
    metrics = json.loads((out / layout.METRICS_FILE).read_text())
    assert isinstance(metrics, dict) and metrics
    assert any(k.startswith("eval_") for k in metrics), metrics


def test_long_text_reaches_the_store_and_chunk_reads_the_file_whole(bb):
    r = bb("local", *BASE, "--max-seq-length", "32", "--long-text", "head+tail")
    assert r.exit_code == 0, r.output
    prepare_line, train_line = r.output.strip().splitlines()
    assert "--long-text head+tail" in prepare_line and "--long-text head+tail" in train_line
    r = bb("local", *BASE, "--max-seq-length", "32", "--long-text", "chunk")
    assert r.exit_code == 0, r.output
    (train_line,) = r.output.strip().splitlines()  # no prepare: a store holds one row per text
    argv = shlex.split(train_line)
    flags = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert (flags["--train"], flags["--long-text"]) == (TRAIN, "chunk")
