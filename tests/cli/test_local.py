"""bertbatch local: the trainer's command line, path checks, and a tiny model end to end."""

from __future__ import annotations

import json
import shlex
import sys

import pytest

from bert_train import contract

from .conftest import FIXTURES
from .helpers import one_line_error

TRAIN = str(FIXTURES / "sst2" / "train.tsv")
DEV = str(FIXTURES / "sst2" / "dev.tsv")
VOCAB = str(FIXTURES / "vocab.txt")


def test_dry_run_builds_the_trainer_command(bb, tmp_path):
    r = bb("local", "--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", VOCAB,
           "--epochs", "1", "--learning-rate", "1e-4", "--batch-size", "8", "--max-seq-length", "32",
           "--run-name", "loc", "--output-dir", tmp_path / "out", "--checkpoint-dir", tmp_path / "ck",
           "--max-steps", "5", "--seed", "7", "--dry-run", "--", "--precision", "fp32")
    assert r.exit_code == 0, r.output
    argv = shlex.split(r.output.strip())
    assert argv[:3] == [sys.executable, "-m", "bert_train"]
    flags = dict(zip(argv[3::2], argv[4::2]))
    assert flags == {
        "--train": TRAIN, "--eval": DEV, "--model": "random:tiny", "--epochs": "1", "--learning-rate": "1e-4",
        "--batch-size": "8", "--max-seq-length": "32", "--vocab": VOCAB, "--run-id": "loc",
        "--output-uri": str(tmp_path / "out"), "--checkpoint-uri": str(tmp_path / "ck"), "--max-steps": "5",
        "--seed": "7", "--precision": "fp32",
    }
    # the hyperparameter flags are the contract's
    assert {contract.JOB_PARAMETERS[k] for k in ("model", "epochs", "learning_rate", "batch_size", "max_seq_length")} <= set(flags)


def test_default_locations_mirror_the_bucket_layout(bb):
    r = bb("local", "--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", VOCAB, "--run-name", "x", "--dry-run")
    flags = dict(zip(shlex.split(r.output)[3::2], shlex.split(r.output)[4::2]))
    assert flags["--output-uri"].replace("\\", "/") == "local-runs/runs/x"
    assert flags["--checkpoint-uri"].replace("\\", "/") == "local-runs/checkpoints/x"


@pytest.mark.parametrize(("args", "fragment"), [
    (["--train", "missing.tsv", "--eval", DEV], "--train missing.tsv: no such file"),
    (["--train", TRAIN, "--eval", "nope/dev.tsv"], "--eval nope/dev.tsv: no such file"),
    (["--train", "s3://b/k.tsv", "--eval", DEV], "takes local paths"),
    (["--train", TRAIN, "--eval", DEV, "--model", "random:tiny"], "needs --vocab"),
    (["--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", "no-vocab.txt"], "--vocab no-vocab.txt: no such file"),
    (["--train", TRAIN, "--eval", DEV, "--model", "./no-model-dir"], "--model ./no-model-dir: no such directory"),
    (["--train", TRAIN, "--eval", DEV, "--epochs", "0"], "--epochs 0"),
    (["--train", TRAIN, "--eval", DEV, "--max-steps", "0"], "--max-steps 0"),
])
def test_local_errors(bb, args, fragment):
    one_line_error(bb("local", *args), fragment)


def test_exit_code_is_passed_through(bb, monkeypatch):
    from bertbatch import local

    seen = {}

    def fake_call(argv, env):
        seen["argv"], seen["env"] = argv, env
        return contract.EXIT_BAD_INPUT

    monkeypatch.setattr(local.subprocess, "call", fake_call)
    r = bb("local", "--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", VOCAB, "--run-name", "rc")
    assert r.exit_code == contract.EXIT_BAD_INPUT
    assert seen["env"][contract.ENV_RUN_ID] == "rc"
    assert "exited with code 2" in r.output


@pytest.mark.slow
def test_local_trains_a_tiny_model_end_to_end(bb, tmp_path):
    out, ck = tmp_path / "out", tmp_path / "ck"
    r = bb("local", "--train", TRAIN, "--eval", DEV, "--model", "random:tiny", "--vocab", VOCAB,
           "--epochs", "1", "--max-steps", "5", "--batch-size", "8", "--max-seq-length", "32",
           "--run-name", "tiny", "--output-dir", out, "--checkpoint-dir", ck)
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / contract.METRICS_FILE).read_text())
    assert isinstance(metrics, dict) and metrics
    assert any(k.startswith("eval_") for k in metrics), metrics
