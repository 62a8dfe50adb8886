"""Training streams from a prepared store: one order of global batches whatever the number of
ranks, a pure function of (manifest, seed, epoch); resumes continue with the next global batch,
also on another number of ranks; a store tokenized differently or missing a shard is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bert_train import data, stream
from bert_train.batches import StoreBatches
from bert_train.config import BadInput
from bert_train.inputs_store import open_store
from bert_train.modeling import TINY_BERT
from bert_train.prepare import main as prepare
from bert_train.tasks import SINGLE_LABEL, Task
from bert_train.train import run
from bertbatch_contract import job
from bertbatch_contract import store as contract

from .conftest import (
    VOCAB,
    final_metrics,
    read_sst2,
    sigterm_at,
    subprocess_env,
    tiny_args,
    tiny_config,
    write_tsv,
)


def _layout(groups_per_shard=((100, 37), (64,), (90, 90, 11))):
    manifest = {"shards": [{"row_groups": list(g)} for g in groups_per_shard]}
    layout = stream.Layout(manifest)
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=layout.rows)
    return layout, lambda gi: lengths[layout.starts[gi]:layout.starts[gi + 1]], lengths


def _order(layout, lengths_of, **kw):
    args = {"seed": 1, "epoch": 0, "global_batch": 8, "window_batches": 4, "buffer_rows": 64} | kw
    return [rows.tolist() for rows, _ in stream.epoch_batches(layout, lengths_of, **args)]


def test_the_epoch_order_is_a_pure_function_of_seed_and_epoch_and_covers_rows_once():
    layout, lengths_of, lengths = _layout()
    a = _order(layout, lengths_of)
    assert a == _order(layout, lengths_of)
    assert a != _order(layout, lengths_of, epoch=1) and a != _order(layout, lengths_of, seed=2)
    assert len(a) == layout.rows // 8 and all(len(b) == 8 for b in a)
    flat = [r for b in a for r in b]
    assert len(set(flat)) == len(flat) and set(flat) <= set(range(layout.rows))
    # batches are grouped by length: far less padding than the same rows in random batches
    def padding(batches):
        return sum(max(lengths[b]) * len(b) - sum(lengths[b]) for b in batches) / sum(lengths[flat])
    rng = np.random.default_rng(3)
    shuffled = rng.permutation(flat).reshape(-1, 8).tolist()
    assert padding(a) < 0.5 * padding(shuffled)
    # the first batch holds the longest row of the first window
    assert max(lengths[a[0]]) == max(lengths[r] for b in a[:4] for r in b)


def test_the_order_does_not_depend_on_the_window_being_read_again():
    """Skipping k batches and reading on gives exactly the tail (what a resume does)."""
    layout, lengths_of, _ = _layout()
    full = _order(layout, lengths_of, epoch=3)
    for k in (0, 1, 5, len(full) - 1):
        tail = list(stream.epoch_batches(layout, lengths_of, seed=1, epoch=3, global_batch=8, window_batches=4,
                                         buffer_rows=64))[k:]
        assert [r.tolist() for r, _ in tail] == full[k:]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("store")
    rows = read_sst2("train.tsv")[:640]
    for i in range(4):  # four input files: four shards
        write_tsv(d / "data" / f"part-{i}.tsv", rows[i * 160:(i + 1) * 160])
    dev = write_tsv(d / "dev.tsv", read_sst2("dev.tsv")[:160])
    assert prepare(["--input", str(d / "data"), "--output", str(d / "store"), "--model", "random:tiny",
                    "--vocab", str(VOCAB), "--max-seq-length", "64", "--workers", "1"]) == 0
    return d / "store", dev


def test_ranks_take_their_slices_of_the_same_global_batches(store, tmp_path):
    opened = open_store(str(store[0]), str(tmp_path))
    rows = opened.rows_source(Task(SINGLE_LABEL, ("0", "1")))
    one = StoreBatches(rows, global_batch=16, seed=5, megabatch_factor=3)
    whole = list(one.epoch(0, 0, accumulation=1, world_size=1, rank=0))
    assert len(whole) == 640 // 16
    for world, accumulation in ((2, 1), (4, 2)):
        parts = [list(one.epoch(0, 0, accumulation=accumulation, world_size=world, rank=r)) for r in range(world)]
        for step, batch in enumerate(whole):
            assert [p[step].lengths for p in parts] == [batch.lengths] * world  # the same global batch
            for r in range(world):
                for micro in data.split_step_batch(batch.rows, accumulation, world, r):
                    for i in micro:
                        assert parts[r][step].enc.input_ids[i] == batch.enc.input_ids[i]
                        assert parts[r][step].enc.labels[i] == batch.enc.labels[i]
            # a rank holds the tokens of its own slice only
            mine = {i for m in data.split_step_batch(batch.rows, accumulation, world, 1) for i in m}
            assert all(bool(ids) == (i in mine) for i, ids in enumerate(parts[1][step].enc.input_ids))
    # and the tokens are the rows' own: lengths agree with the planned lengths
    assert all(len(ids) == n for b in whole for ids, n in zip(b.enc.input_ids, b.lengths, strict=True))


def test_training_from_a_store_learns_and_a_sigterm_resume_matches(store, tmp_path):
    train, dev = store
    reference = run(tiny_config(train, dev, tmp_path / "ref", tmp_path / "ref-ckpt", learning_rate=2e-3))
    assert reference.exit_code == 0 and reference.global_step == 80
    m = final_metrics(tmp_path / "ref")
    assert m["eval_f1"] > 0.4
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    config = tiny_config(train, dev, out, ckpt, learning_rate=2e-3, checkpoint_every_steps=4)

    first = run(config, on_step=sigterm_at(13))
    assert first.exit_code == job.EXIT_INTERRUPTED and first.global_step == 13
    second = run(config)
    assert second.exit_code == 0 and second.resumed_from_step == 13
    got = final_metrics(out)
    for key in ("eval_loss", "eval_f1", "train_loss", "eval_accuracy"):
        assert got[key] == pytest.approx(m[key], rel=1e-4, abs=1e-5), key


@pytest.mark.slow
def test_two_ranks_stopped_then_one_rank_resumes_with_the_next_global_batch(store, tmp_path):
    train, dev = store
    cfg = tmp_path / "tiny-nodropout.json"
    cfg.write_text(json.dumps({"model_type": "bert", **TINY_BERT, "hidden_dropout_prob": 0.0,
                               "attention_probs_dropout_prob": 0.0}))
    common = dict(model=f"random:{cfg}", epochs=1, learning_rate=3e-3, checkpoint_every_steps=10)
    single = run(tiny_config(train, dev, tmp_path / "one", tmp_path / "ckpt-one", batch_size=16, **common))
    assert single.exit_code == 0 and single.global_step == 40

    ckpt = tmp_path / "ckpt-two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "bert_train",
           *tiny_args(train, dev, tmp_path / "two", ckpt, batch_size=8, **common)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while not list(ckpt.glob("step-000000020/manifest.json")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # SIGKILL: whatever was trained after step 20 is lost
    proc.communicate(timeout=60)
    assert (ckpt / "step-000000020" / "manifest.json").exists()

    resumed = run(tiny_config(train, dev, tmp_path / "two", ckpt, batch_size=16, **common))
    assert resumed.exit_code == 0 and resumed.resumed_from_step in (20, 30) and resumed.global_step == 40
    one, two = final_metrics(tmp_path / "one"), final_metrics(tmp_path / "two")
    assert two["world_size"] == 1 and two["global_batch_size"] == one["global_batch_size"] == 16
    for key in ("train_loss", "eval_loss"):
        assert two[key] == pytest.approx(one[key], abs=1e-3), key


def test_a_store_made_otherwise_or_missing_a_shard_is_refused_before_training(store, tmp_path, capsys):
    train, dev = store
    from bert_train.__main__ import main

    def bad(where=train, **overrides) -> str:
        assert main(tiny_args(where, dev, tmp_path / "out", tmp_path / "ckpt", **overrides)) == job.EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and not (tmp_path / "out").exists() and not (tmp_path / "ckpt").exists()
        return err[0]

    assert "prepared with --max-seq-length 64, not 32" in bad(max_seq_length=32)
    other_vocab = tmp_path / "vocab.txt"
    other_vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]) + "\n")
    assert "prepared with another tokenizer" in bad(vocab=other_vocab)
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(train, copy)
    (copy / contract.shard_name(2, 0)).unlink()
    assert bad(copy) == (f"bert_train: error: {copy / contract.shard_name(2, 0)}: shard missing from the "
                               "store (prepare it again)")


def upload(s3, folder, bucket: str, prefix: str) -> None:
    """Every file of a local store under s3://bucket/prefix, as `prepare` publishes it."""
    for p in folder.rglob("*"):
        if p.is_file():
            s3.put_object(Bucket=bucket, Key=f"{prefix}{p.relative_to(folder)}", Body=p.read_bytes())


def test_an_s3_store(store, tmp_path):
    import boto3
    from moto import mock_aws

    train, dev = store
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="stores")
        upload(s3, train, "stores", "x/")
        local = run(tiny_config(train, dev, tmp_path / "a", tmp_path / "ca", max_steps=6))
        remote = run(tiny_config("s3://stores/x", dev, tmp_path / "b", tmp_path / "cb", max_steps=6))
        assert local.metrics["train_loss"] == remote.metrics["train_loss"]
        s3.delete_object(Bucket="stores", Key=f"x/{contract.shard_name(1, 0)}")
        with pytest.raises(BadInput, match=r"s3://stores/x/shards/in-000001-0000.parquet: shard missing"):
            run(tiny_config("s3://stores/x", dev, tmp_path / "c", tmp_path / "cc", max_steps=6))


def test_an_s3_store_under_the_data_bucket_is_read_from_fsx_when_the_mount_holds_all_of_it(
        store, tmp_path, monkeypatch):
    """Stores live under datasets/prepared/, which FSx mirrors: a job reads the shards in place
    on the mount instead of downloading them, unless the mount lacks a shard (import lag) or holds
    another version of the store."""
    import shutil

    import boto3
    from moto import mock_aws

    train, _ = store
    uri = "s3://data/datasets/prepared/sst2"
    mount = tmp_path / "fsx"
    mirror = mount / "datasets" / "prepared" / "sst2"
    shutil.copytree(train, mirror)
    monkeypatch.setenv(job.ENV_FSX_MOUNT, str(mount))
    monkeypatch.setenv(job.ENV_DATA_URI, "s3://data/datasets")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data")
        upload(s3, train, "data", "datasets/prepared/sst2/")
        assert open_store(uri, str(tmp_path / "w1")).reader.uri == str(mirror)

        (mirror / contract.shard_name(2, 0)).unlink()  # not imported yet
        assert open_store(uri, str(tmp_path / "w2")).reader.uri == uri
        shutil.copy(train / contract.shard_name(2, 0), mirror / contract.shard_name(2, 0))
        manifest = json.loads((mirror / contract.MANIFEST).read_text())
        (mirror / contract.MANIFEST).write_text(json.dumps({**manifest, "rows": manifest["rows"] + 1}))  # other store
        assert open_store(uri, str(tmp_path / "w3")).reader.uri == uri
