"""Training end to end on the CPU: it learns, writes every output, reports metrics, and a run
stopped by SIGTERM and restarted ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest
import torch

from bert_train.checkpoint import MANIFEST, step_dir
from bert_train.train import run
from bertbatch_contract import job, metrics
from bertbatch_contract.progress import parse_progress

from .conftest import (
    STEP_RE,
    cli,
    emf_records,
    final_metrics,
    read_sst2,
    sigterm_at,
    stored_file,
    tiny_args,
    tiny_config,
    write_tsv,
)

pytestmark = pytest.mark.slow


# A learning rate at which this small run moves off the constant prediction within 80 steps.
RESUME = {"learning_rate": 2e-3}


@pytest.fixture(scope="module")
def resume_data(tmp_path_factory):
    """640 train / 160 dev rows: 40 steps per epoch at batch 16, 80 steps in two epochs."""
    d = tmp_path_factory.mktemp("resume-data")
    return (write_tsv(d / "train.tsv", read_sst2("train.tsv")[:640]),
            write_tsv(d / "dev.tsv", read_sst2("dev.tsv")[:160]))


@pytest.fixture(scope="module")
def reference(resume_data, tmp_path_factory):
    """The uninterrupted run every resumed run must match."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("reference")
    result = run(tiny_config(*resume_data, d / "out", d / "ckpt", **RESUME))
    assert result.exit_code == 0 and result.global_step == 80
    m = final_metrics(d / "out")
    assert m["eval_f1"] > 0.4  # not a constant predictor (0.32), so matching it means something
    return m


def assert_same_run(m: dict, ref: dict) -> None:
    assert m["global_step"] == ref["global_step"]
    assert m["eval_accuracy"] == pytest.approx(ref["eval_accuracy"], abs=0.007)  # at most one example
    for key in ("eval_loss", "eval_f1", "train_loss"):
        assert m[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-5), key
    assert [h["step"] for h in m["history"]] == [h["step"] for h in ref["history"]]
    for h, r in zip(m["history"], ref["history"], strict=True):
        assert h["eval_loss"] == pytest.approx(r["eval_loss"], rel=1e-4, abs=1e-5)
        # the train loss of each evaluation window survives the restart too (it lives in the state)
        assert h["train_loss"] == pytest.approx(r["train_loss"], rel=1e-4, abs=1e-5)


def test_learns_sst2_and_writes_every_output(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(job.ENV_METRICS_NAMESPACE, "BertBatchTest")
    monkeypatch.setenv(job.ENV_PROFILE, "ci")
    monkeypatch.setenv(job.ENV_IMAGE, "bert-batch-training:test")
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    write_tsv(train, read_sst2("train.tsv"))
    write_tsv(dev, read_sst2("dev.tsv"))
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    result = run(tiny_config(train, dev, out, ckpt, logging_steps=25, checkpoint_every_steps=100))
    stdout = capsys.readouterr().out

    assert result.exit_code == 0 and result.global_step == 2 * (2000 // 16)
    m = final_metrics(out)
    assert m["eval_accuracy"] > 0.65, m["history"]  # chance is 0.5 on this balanced sample
    assert m["eval_f1"] > 0.6
    assert m["history"][-1]["eval_loss"] < m["history"][0]["eval_loss"] + 0.2
    assert {p.name for p in out.iterdir()} >= {
        "model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "label_map.json",
        "metrics.json", "training_args.json", "README.md"}
    assert json.loads((out / "label_map.json").read_text())["labels"] == ["0", "1"]
    args = json.loads((out / "training_args.json").read_text())
    assert args["learning_rate"] == 1e-3 and args["run_id"] == "test-run" and args["global_batch_size"] == 16
    card = (out / "README.md").read_text()
    assert "test-run" in card and f"{m['eval_accuracy']:.4f}" in card and str(train) in card
    assert "bert-batch-training:test" in card and "| learning_rate | 0.001 |" in card
    # length-grouped dynamic padding: few computed tokens are padding
    assert 0 <= result.padding_fraction < 0.10  # SST-2 phrases are short: one token is ~8%
    assert result.samples_per_second > 0 and result.tokens_per_second > result.samples_per_second
    # no MFU on a CPU, and the record says why; the model's FLOPs/s are still there
    assert (m["mfu"], m["gpu_name"], m["gpu_memory_peak_mb"]) == (None, None, None)
    assert m["mfu_unavailable"].startswith("trained on CPU") and m["model_tflops_per_second"] > 0
    # checkpoints at 100 and 200, and at 125, the first evaluation (always the best so far); keep-checkpoints
    # defaults to 2
    assert sorted(p.name for p in ckpt.iterdir()) == [step_dir(125), step_dir(200)]
    assert len(result.checkpoint_seconds) == 3

    # the saved model is the trained one: reloading it reproduces the eval accuracy
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    rows = read_sst2("dev.tsv")
    with torch.no_grad():
        enc = tok([r["sentence"] for r in rows], truncation=True, max_length=64, padding=True, return_tensors="pt")
        pred = model(**enc).logits.argmax(-1)
    acc = (pred == torch.tensor([int(r["label"]) for r in rows])).float().mean().item()
    assert acc == pytest.approx(m["eval_accuracy"], abs=0.006)
    assert model.config.id2label == {0: "0", 1: "1"}

    # EMF: every container metric except the GPU ones (no GPU here, and none are faked)
    records = emf_records(stdout)
    names = {mm["Name"] for r in records for mm in r["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {x.name for x in metrics.CONTAINER_METRICS} - {"GpuUtilization", "GpuMemoryUsed",
                                                                    "ModelFlopsUtilization"}
    for r in records:
        block = r["_aws"]["CloudWatchMetrics"][0]
        assert block["Namespace"] == "BertBatchTest"
        assert block["Dimensions"] == [["Profile"], ["Profile", "RunId"]]
        assert (r["Profile"], r["RunId"]) == ("ci", "test-run")
    evals = [r["EvalAccuracy"] for r in records if "EvalAccuracy" in r]
    assert evals == [h["eval_accuracy"] for h in m["history"]]
    # progress lines a person (and `bertbatch watch`) can read
    progress = [parse_progress(line) for line in stdout.splitlines() if line.startswith("[progress]")]
    assert [p.step for p in progress] == list(range(25, 251, 25))
    assert progress[-1].total_steps == 250 and progress[-1].eta_seconds == 0 and progress[-1].epochs == 2


def test_sigterm_then_restart_matches_an_uninterrupted_run(resume_data, reference, tmp_path):
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    args = tiny_args(*resume_data, out, ckpt, logging_steps=1, **RESUME)

    proc = cli(args)
    seen = 0
    for line in proc.stdout:  # wait until training is really under way, then stop it like Batch does
        m = STEP_RE.match(line)
        if m and int(m.group(1)) >= 10:
            seen = int(m.group(1))
            proc.send_signal(signal.SIGTERM)
            break
    stdout, stderr = proc.communicate(timeout=120)
    assert seen, stderr
    assert proc.returncode == job.EXIT_INTERRUPTED, stderr
    stopped = sorted(ckpt.iterdir())
    assert len(stopped) == 1 and (stopped[0] / MANIFEST).exists()
    stopped_at = int(stopped[0].name.split("-")[1])
    assert seen <= stopped_at < 80
    assert not out.exists()  # no half model
    # How long it took is the checkpoint benchmark's to measure (bench/checkpoint.py), not a test's.
    assert re.search(r"SIGTERM -> exit in [0-9.]+ s", stderr), stderr

    proc = cli(args)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    assert f"resumed from {step_dir(stopped_at)}" in stderr
    assert [r["Resumed"] for r in emf_records(stdout) if "Resumed" in r] == [1.0]
    first_step = int(STEP_RE.search(stdout).group(1))
    assert first_step == stopped_at + 1  # continues where it stopped, no step repeated
    m = final_metrics(out)
    assert m["resumed_from_step"] == stopped_at
    assert_same_run(m, reference)


def test_corrupt_newest_checkpoint_is_skipped(resume_data, reference, tmp_path, caplog):
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    config = tiny_config(*resume_data, out, ckpt, checkpoint_every_steps=4, keep_checkpoints=3, **RESUME)

    first = run(config, on_step=sigterm_at(10))
    assert first.exit_code == job.EXIT_INTERRUPTED and first.global_step == 10
    assert first.sigterm_to_exit_seconds is not None
    assert sorted(p.name for p in ckpt.iterdir()) == [step_dir(4), step_dir(8), step_dir(10)]
    weights = stored_file(ckpt, 10, "model.safetensors")
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # a flipped byte in the newest checkpoint
    weights.write_bytes(bytes(blob))

    with caplog.at_level("INFO", "bert_train"):
        second = run(config)
    assert "skipping checkpoint step-000000010: corrupt" in caplog.text
    assert second.exit_code == 0 and second.resumed_from_step == 8
    assert_same_run(final_metrics(out), reference)


def test_early_stopping_stops_when_the_metric_stops_improving(small_data, tmp_path):
    # At a learning rate of 1e-9 the predictions never change, so accuracy cannot improve.
    result = run(tiny_config(*small_data, tmp_path / "out", tmp_path / "ckpt", epochs=5, learning_rate=1e-9,
                             early_stopping_metric="eval_accuracy", early_stopping_patience=1))
    m = result.metrics
    assert m["early_stopped"] is True
    assert result.global_step == 2 * 30 < result.total_steps == 5 * 30
    assert [h["step"] for h in m["history"]] == [30, 60]
    assert m["best"] == {"metric": "eval_accuracy", "value": m["history"][0]["eval_accuracy"], "step": 30}
    assert (tmp_path / "out" / "metrics.json").exists()


def test_eval_steps_evaluates_every_n_steps_and_at_the_last_step(small_data, tmp_path):
    # 30 steps per epoch: without --eval-steps the first evaluation would be at step 30
    result = run(tiny_config(*small_data, tmp_path / "out", tmp_path / "ckpt", max_steps=25, eval_steps=10))
    assert [h["step"] for h in result.metrics["history"]] == [10, 20, 25]
    assert json.loads((tmp_path / "out" / "training_args.json").read_text())["eval_steps"] == 10


def test_eval_steps_lets_early_stopping_stop_inside_the_first_epoch(small_data, tmp_path):
    result = run(tiny_config(*small_data, tmp_path / "out", tmp_path / "ckpt", learning_rate=1e-9, eval_steps=5,
                             early_stopping_metric="eval_accuracy", early_stopping_patience=2))
    assert result.metrics["early_stopped"] is True
    assert [h["step"] for h in result.metrics["history"]] == [5, 10, 15]
    assert result.global_step == 15 < 30


def _scripted_eval_loss(monkeypatch, losses: list[float]) -> None:
    """Each evaluation runs for real, then reports the next of `losses` as its eval_loss: which
    evaluation is the best is the test's choice, not the tiny model's. (The pass over the eval set
    after the last step, for the published model's details, comes after the scripted ones.)"""
    from bert_train import train

    real = train.evaluate

    def evaluate(*args, **kwargs):
        result = real(*args, **kwargs)
        if result is not None and losses:
            result.scalars["eval_loss"] = losses.pop(0)
        return result

    monkeypatch.setattr(train, "evaluate", evaluate)


def _assert_published_weights_are_the_checkpoints(out, ckpt, step: int) -> None:
    from safetensors.torch import load_file

    published = load_file(str(out / "model.safetensors"))
    stored = load_file(str(stored_file(ckpt, step, "model.safetensors")))
    assert published and set(published) <= set(stored)
    for name, tensor in published.items():
        assert torch.equal(tensor, stored[name]), name


# Evaluations at steps 10, 20, 30 and 40: the one at 20 is the best by eval_loss.
BEST_AT_20 = [0.70, 0.693, 0.702, 0.71]
BEST = {"max_steps": 40, "eval_steps": 10, "early_stopping_metric": "eval_loss", "keep_checkpoints": 1}


def test_the_best_evaluation_is_published_not_the_last(small_data, tmp_path, monkeypatch):
    _scripted_eval_loss(monkeypatch, list(BEST_AT_20))
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    result = run(tiny_config(*small_data, out, ckpt, **BEST))
    assert result.exit_code == 0 and result.global_step == 40
    # a checkpoint at each evaluation that improved (10, 20), none at those that did not
    assert len(result.checkpoint_seconds) == 2
    assert sorted(p.name for p in ckpt.iterdir()) == [step_dir(20)]
    _assert_published_weights_are_the_checkpoints(out, ckpt, 20)
    m = final_metrics(out)
    assert m["published"] == {"step": 20, "reason": "best eval_loss 0.6930 at step 20 of 40",
                              "metric": "eval_loss", "value": 0.693}
    best = m["history"][1]
    assert (m["eval_loss"], m["eval_accuracy"], m["eval_f1"]) == (0.693, best["eval_accuracy"], best["eval_f1"])
    assert [h["eval_loss"] for h in m["history"]] == BEST_AT_20  # the last evaluation stays in the history
    assert "best eval_loss 0.6930 at step 20 of 40" in (out / "README.md").read_text()


def test_an_interrupted_run_resumes_and_still_publishes_the_best(small_data, tmp_path, monkeypatch):
    _scripted_eval_loss(monkeypatch, list(BEST_AT_20))  # shared by both attempts, in evaluation order
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    config = tiny_config(*small_data, out, ckpt, checkpoint_every_steps=4, **BEST)

    first = run(config, on_step=sigterm_at(25))
    assert first.exit_code == job.EXIT_INTERRUPTED and first.global_step == 25
    # keep 1: the newest, and the best (20), which no newer checkpoint pushes out
    assert sorted(p.name for p in ckpt.iterdir()) == [step_dir(20), step_dir(25)]
    second = run(config)
    assert second.exit_code == 0 and second.resumed_from_step == 25
    assert sorted(p.name for p in ckpt.iterdir()) == [step_dir(20), step_dir(36)]
    _assert_published_weights_are_the_checkpoints(out, ckpt, 20)
    m = final_metrics(out)
    assert m["published"]["step"] == 20 and m["eval_loss"] == 0.693
    assert [h["step"] for h in m["history"]] == [10, 20, 30, 40]


def test_an_unreadable_best_checkpoint_publishes_the_last_step_and_says_why(small_data, tmp_path, monkeypatch):
    _scripted_eval_loss(monkeypatch, list(BEST_AT_20))
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    config = tiny_config(*small_data, out, ckpt, **BEST)

    assert run(config, on_step=sigterm_at(25)).exit_code == job.EXIT_INTERRUPTED
    stored_file(ckpt, 20, "model.safetensors").write_bytes(b"not the weights")
    assert run(config).exit_code == 0
    m = final_metrics(out)
    assert m["published"]["step"] == 40 and m["published"]["metric"] is None
    assert re.fullmatch(r"the last step, 40 of 40: the checkpoint of the best evaluation, step 20, could not be "
                        r"read \(corrupt \(attempt-\S+/model.safetensors has 15 bytes, manifest says \d+\)\)",
                        m["published"]["reason"]), m["published"]["reason"]
    assert m["eval_loss"] == 0.71 and m["best"] == {"metric": "eval_loss", "value": 0.693, "step": 20}


def test_time_based_checkpoints_and_sentence_pairs_with_string_labels(tmp_path):
    rows = read_sst2("train.tsv")[:200]
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    names = {"0": "negative", "1": "positive"}
    train.write_text("".join(json.dumps({"premise": r["sentence"], "hypothesis": rows[-i - 1]["sentence"],
                                         "gold": names[r["label"]]}) + "\n" for i, r in enumerate(rows)))
    dev.write_text(train.read_text())
    ckpt = tmp_path / "ckpt"
    # a checkpoint every step through the minutes trigger alone (the step trigger is far away)
    result = run(tiny_config(train, dev, tmp_path / "out", ckpt, text_column="premise", text_pair_column="hypothesis",
                             label_column="gold", max_steps=5, checkpoint_every_steps=1000,
                             checkpoint_every_minutes=1e-9, keep_checkpoints=2))
    assert result.exit_code == 0 and result.global_step == 5
    assert len(result.checkpoint_seconds) == 4  # steps 1-4; the end of the run writes the model instead
    assert sorted(p.name for p in ckpt.iterdir()) == [step_dir(3), step_dir(4)]
    labels = json.loads((tmp_path / "out" / "label_map.json").read_text())
    assert labels["labels"] == ["negative", "positive"]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert "hypothesis" in (tmp_path / "out" / "README.md").read_text()


def test_precision_choices_on_cpu(small_data, tmp_path, capsys, monkeypatch):
    import torch

    from bert_train import runtime
    from bert_train.__main__ import main
    from bert_train.runtime import choose_precision, cpu_has_native_bf16

    result = run(tiny_config(*small_data, tmp_path / "out", tmp_path / "ckpt", max_steps=3, precision="bf16"))
    assert result.metrics["precision"] == "bf16"  # bf16 autocast works on CPU when asked for
    assert 0 < result.metrics["train_loss"] < 5 and 0 <= result.metrics["eval_accuracy"] <= 1
    auto = run(tiny_config(*small_data, tmp_path / "out2", tmp_path / "ckpt2", max_steps=1))
    assert auto.metrics["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")  # auto on CPU
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert choose_precision("auto", torch.device("cpu")) == "fp32"  # emulated bf16 would be slower
    assert choose_precision("fp32", torch.device("cpu")) == "fp32"
    code = main(tiny_args(*small_data, tmp_path / "out3", tmp_path / "ckpt3", precision="fp16"))
    assert code == job.EXIT_BAD_INPUT
    assert "--precision fp16 needs a GPU" in capsys.readouterr().err
    assert not (tmp_path / "out3").exists()


def test_without_an_eval_set_it_trains_and_skips_evaluation(small_data, tmp_path):
    train, _ = small_data
    result = run(tiny_config(train, None, tmp_path / "out", tmp_path / "ckpt", max_steps=3))
    m = final_metrics(tmp_path / "out")
    assert result.exit_code == 0 and m["global_step"] == 3
    assert m["eval_accuracy"] is None and m["history"] == [] and m["train_loss"] > 0
    assert m["published"] == {"step": 3, "reason": "the last step, 3 of 3: no evaluation data",
                              "metric": None, "value": None}
    assert "| train_loss |" in (tmp_path / "out" / "README.md").read_text()


def _poisoned_step(monkeypatch, at_step: int, *, loss: bool):
    """Make optimizer step `at_step` go wrong: its loss NaN (`loss`), or a weight NaN after it."""
    from bert_train import train

    real, taken = train.train_step, []

    def train_step(t, batch):
        step_loss = real(t, batch)
        taken.append(1)
        if len(taken) == at_step:
            if loss:
                return torch.tensor(float("nan"))
            with torch.no_grad():
                next(t.parts.model.parameters()).view(-1)[0] = float("inf")
        return step_loss

    monkeypatch.setattr(train, "train_step", train_step)


def test_non_finite_loss_stops_the_run_and_publishes_nothing(small_data, tmp_path, capsys, monkeypatch):
    from bert_train.__main__ import main

    _poisoned_step(monkeypatch, 3, loss=True)
    out = tmp_path / "out"
    code = main(tiny_args(*small_data, out, tmp_path / "ckpt"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("bert_train: error: the training loss is nan at step 3: stopped, no model published")
    assert not out.exists()


def test_non_finite_weights_are_never_checkpointed(small_data, tmp_path, monkeypatch):
    from bert_train.errors import Diverged

    _poisoned_step(monkeypatch, 8, loss=False)  # step 8's loss is fine, the weights after it are not
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    with pytest.raises(Diverged, match=r"is NaN or infinite at step 8: no checkpoint written"):
        run(tiny_config(*small_data, out, ckpt, checkpoint_every_steps=4, keep_checkpoints=1))
    assert sorted(p.name for p in ckpt.iterdir()) == [step_dir(4)]  # the good one is still there
    assert not out.exists()


# Loaded by a training subprocess (on its PYTHONPATH): every S3 request for a key containing
# $STALL_KEY parts stalls for good after touching $STALL_MARKER, so the test can SIGKILL the
# process while that checkpoint is being uploaded.
STALL_HOOK = '''
import os, pathlib, time
import botocore.session

_create_client = botocore.session.Session.create_client

def _stall(request, **_):
    if all(part in request.url for part in os.environ["STALL_KEY"].split(",")):
        pathlib.Path(os.environ["STALL_MARKER"]).touch()
        time.sleep(600)

def create_client(self, *args, **kwargs):
    client = _create_client(self, *args, **kwargs)
    client.meta.events.register("before-send.s3", _stall)
    return client

botocore.session.Session.create_client = create_client
'''


def test_sigkill_during_an_upload_then_restart_matches_an_uninterrupted_run(resume_data, reference, tmp_path,
                                                                             moto_s3):
    import boto3

    from .conftest import subprocess_env

    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket="artifacts")
    args = tiny_args(*resume_data, tmp_path / "out", "s3://artifacts/checkpoints/kill-run", logging_steps=1,
                     checkpoint_every_steps=4, keep_checkpoints=2, **RESUME)
    s3_env = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                         "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN")}
    hook_dir, marker = tmp_path / "hook", tmp_path / "uploading"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(STALL_HOOK)
    env = subprocess_env({**s3_env, "STALL_KEY": "step-000000012/,optimizer.pt", "STALL_MARKER": str(marker)})
    env["PYTHONPATH"] = os.pathsep.join([str(hook_dir), env["PYTHONPATH"]])
    proc = cli(args, env=env)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "no upload of step 12 seen"
    proc.kill()  # SIGKILL: the weights of step 12 are up, its optimizer state is half-way, no manifest
    proc.communicate(timeout=60)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="artifacts").get("Contents", [])]
    assert any("step-000000012/" in k and k.endswith("model.safetensors") for k in keys)
    assert "checkpoints/kill-run/step-000000012/manifest.json" not in keys

    proc = cli(args, env=subprocess_env(s3_env))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"skipping checkpoint {step_dir(12)}: incomplete (no manifest)" in stderr
    assert f"resumed from {step_dir(8)}" in stderr
    m = final_metrics(tmp_path / "out")
    assert m["resumed_from_step"] == 8
    assert_same_run(m, reference)


def test_two_overlapping_attempts_then_a_third_matches_an_uninterrupted_run(resume_data, reference, tmp_path):
    """A Batch retry and the On-Demand resubmission of one run at once: both write the same steps
    into one checkpoint location; one is SIGKILLed, the other stopped by SIGTERM; a third attempt
    resumes from what they left and ends where an uninterrupted run ends."""
    import threading

    ckpt = tmp_path / "ckpt"
    args = tiny_args(*resume_data, tmp_path / "out", ckpt, logging_steps=1, checkpoint_every_steps=2,
                     keep_checkpoints=2, **RESUME)
    first, second = cli(args), cli(args)
    outcome: dict[str, tuple[int, str]] = {}

    def stop_at(name: str, proc, step: int, sig: signal.Signals) -> None:
        for line in proc.stdout:
            m = STEP_RE.match(line)
            if m and int(m.group(1)) >= step:
                proc.send_signal(sig)
                break
        _, stderr = proc.communicate(timeout=120)
        outcome[name] = (proc.returncode, stderr)

    threads = [threading.Thread(target=stop_at, args=("first", first, 13, signal.SIGKILL)),
               threading.Thread(target=stop_at, args=("second", second, 17, signal.SIGTERM))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=180)
    assert outcome["first"][0] == -signal.SIGKILL, outcome["first"][1]
    assert outcome["second"][0] == job.EXIT_INTERRUPTED, outcome["second"][1]

    proc = cli(args)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "cannot load" not in stderr and "corrupt" not in stderr, stderr
    m = final_metrics(tmp_path / "out")
    assert m["resumed_from_step"] is not None and m["resumed_from_step"] >= 12
    assert_same_run(m, reference)


def test_with_the_background_prefetch_an_interrupted_run_resumes_exactly(resume_data, reference, tmp_path,
                                                                           monkeypatch):
    """The CUDA path's batch prefetch (a thread collating ahead of the step), forced on here: the
    stopped and resumed run takes exactly the steps of the uninterrupted run without it."""
    from bert_train import train

    monkeypatch.setattr(train, "prefetch_in_background", lambda device: True)
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    config = tiny_config(*resume_data, out, ckpt, checkpoint_every_steps=4, **RESUME)

    first = run(config, on_step=sigterm_at(10))
    assert first.exit_code == job.EXIT_INTERRUPTED and first.global_step == 10
    second = run(config)
    assert second.exit_code == 0 and second.resumed_from_step == 10
    assert_same_run(final_metrics(out), reference)
