"""DDP through torchrun on the CPU (gloo): two processes with half the per-device batch train the
same global batches and end where one process ends."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from bert_train.modeling import TINY_BERT
from bert_train.train import run

from .conftest import final_metrics, read_sst2, stored_file, subprocess_env, tiny_args, tiny_config, write_tsv

pytestmark = pytest.mark.slow


def test_torchrun_two_processes_match_one(small_data, tmp_path):
    """...and publish the same best evaluation's weights (every rank takes part in loading them)."""
    import subprocess

    from safetensors.torch import load_file

    # Without dropout the two runs compute the same function; only float summation order differs.
    cfg = tmp_path / "tiny-nodropout.json"
    cfg.write_text(json.dumps({"model_type": "bert", **TINY_BERT, "hidden_dropout_prob": 0.0,
                               "attention_probs_dropout_prob": 0.0}))
    # At this rate the evaluation at step 10 of 5, 10, ..., 30 is the only one above chance accuracy.
    common = dict(model=f"random:{cfg}", epochs=1, learning_rate=1e-3, eval_steps=5)
    # 161 eval rows: the ranks get 81 and 80, so they must still agree on the eval loop's length
    train, _ = small_data
    dev = write_tsv(tmp_path / "dev161.tsv", read_sst2("dev.tsv")[:161])

    single = run(tiny_config(train, dev, tmp_path / "one", tmp_path / "ckpt-one", batch_size=16, **common))
    assert single.exit_code == 0

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "bert_train",
           *tiny_args(train, dev, tmp_path / "two", tmp_path / "ckpt-two", batch_size=8, **common)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = final_metrics(tmp_path / "one"), final_metrics(tmp_path / "two")
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["global_batch_size"] == two["global_batch_size"] == 16
    assert two["global_step"] == one["global_step"] == 30
    assert two["train_loss"] == pytest.approx(one["train_loss"], abs=1e-3)
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], abs=1e-3)
    assert two["eval_accuracy"] == pytest.approx(one["eval_accuracy"], abs=2 / 161)
    assert "[progress]" in proc.stdout and proc.stdout.count("step 30/30") == 1  # rank 0 only
    assert one["published"]["step"] == two["published"]["step"] == 10
    published = load_file(str(tmp_path / "two" / "model.safetensors"))
    stored = load_file(str(stored_file(tmp_path / "ckpt-two", 10, "model.safetensors")))
    assert published and all(torch.equal(tensor, stored[name]) for name, tensor in published.items())


def test_gradient_accumulation_matches_the_bigger_batch(small_data, tmp_path):
    """2 micro-batches of 8 take the same optimizer steps as one batch of 16."""
    cfg = tmp_path / "tiny-nodropout.json"
    cfg.write_text(json.dumps({"model_type": "bert", **TINY_BERT, "hidden_dropout_prob": 0.0,
                               "attention_probs_dropout_prob": 0.0}))
    common = dict(model=f"random:{cfg}", max_steps=12, learning_rate=3e-3)
    big = run(tiny_config(*small_data, tmp_path / "big", tmp_path / "c1", batch_size=16, **common))
    acc = run(tiny_config(*small_data, tmp_path / "acc", tmp_path / "c2", batch_size=8,
                          gradient_accumulation_steps=2, **common))
    assert big.global_step == acc.global_step == 12
    assert acc.metrics["global_batch_size"] == 16
    assert acc.metrics["train_loss"] == pytest.approx(big.metrics["train_loss"], abs=1e-4)
    assert acc.metrics["eval_loss"] == pytest.approx(big.metrics["eval_loss"], abs=1e-4)
