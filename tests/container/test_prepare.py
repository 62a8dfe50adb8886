"""`python -m bert_train prepare`: a dataset tokenized once into a Parquet store with a manifest,
as a map over input files (array children) and a merge; nothing rewritten when nothing changed."""

from __future__ import annotations

import gzip
import json
import os

import pyarrow.parquet as pq
import pytest

from bert_train.prepare import main
from bertbatch_contract import job
from bertbatch_contract import store as contract

from .conftest import VOCAB, read_sst2, write_tsv


def _prepare(inp, out, *extra: str, **env: str) -> int:
    for k, v in env.items():
        os.environ[k] = v
    try:
        return main(["--input", str(inp), "--output", str(out), "--model", "random:tiny", "--vocab", str(VOCAB),
                     "--max-seq-length", "32", "--workers", "1", *extra])
    finally:
        for k in env:
            del os.environ[k]


def _dataset(tmp_path, files=4, rows=30):
    sst = read_sst2("train.tsv")
    folder = tmp_path / "data"
    for i in range(files):
        write_tsv(folder / f"part-{i}.tsv", sst[i * rows:(i + 1) * rows])
    return folder, sst[: files * rows]


def _tokenizer():
    from transformers.models.bert.tokenization_bert import BertTokenizerFast

    return BertTokenizerFast(vocab=str(VOCAB), do_lower_case=True)


def _store_rows(store) -> list[tuple[list[int], str]]:
    manifest = json.loads((store / contract.MANIFEST).read_text())
    out = []
    for shard in manifest["shards"]:
        table = pq.read_table(store / shard["file"])
        out += list(zip(table.column("input_ids").to_pylist(), table.column("label").to_pylist(), strict=True))
    return out


def test_a_folder_becomes_a_store_with_a_manifest(tmp_path):
    folder, rows = _dataset(tmp_path)
    store = tmp_path / "store"
    assert _prepare(folder, store) == 0
    manifest = json.loads((store / contract.MANIFEST).read_text())
    expected = _tokenizer()([r["sentence"] for r in rows], truncation=True, max_length=32)["input_ids"]
    got = _store_rows(store)
    assert [ids for ids, _ in got] == expected
    assert [label for _, label in got] == [str(r["label"]) for r in rows]
    assert manifest["rows"] == len(rows) and manifest["tokens"] == sum(map(len, expected))
    assert manifest["labels"] == ["0", "1"] and manifest["max_seq_length"] == 32
    assert set(manifest["used_token_ids"]) == {i for ids in expected for i in ids} | set(_tokenizer().all_special_ids)
    assert [s["source"] for s in manifest["shards"]] == [0, 1, 2, 3]
    assert all(sum(s["row_groups"]) == s["rows"] for s in manifest["shards"])
    assert [s["uri"] for s in manifest["sources"]] == [str(folder / f"part-{i}.tsv") for i in range(4)]
    assert all(s["size"] > 0 and s["version"] for s in manifest["sources"])
    assert len(manifest["tokenizer"]["fingerprint"]) == 64
    assert not [p for p in store.iterdir() if p.name.startswith(".staging")]


def test_array_children_map_over_files_and_the_last_one_merges(tmp_path, caplog):
    folder, _ = _dataset(tmp_path, files=5)
    single, arrayed = tmp_path / "single", tmp_path / "arrayed"
    assert _prepare(folder, single) == 0
    for index in (2, 0):
        assert _prepare(folder, arrayed, AWS_BATCH_JOB_ARRAY_SIZE="3", AWS_BATCH_JOB_ARRAY_INDEX=str(index)) == 0
        assert not (arrayed / contract.MANIFEST).exists()
    partial = json.loads((arrayed / contract.partial_name(2, 3)).read_text())
    assert partial["files"] == [3, 5] and [s["source"] for s in partial["shards"]] == [3, 4]
    assert _prepare(folder, arrayed, "--merge") == 2  # flags say 1 child: child 0 of 1 has no partial
    assert _prepare(folder, arrayed, "--num-children", "3", "--child-index", "1") == 0
    assert (arrayed / contract.MANIFEST).exists()
    assert _store_rows(arrayed) == _store_rows(single)
    merged, alone = (json.loads((p / contract.MANIFEST).read_text()) for p in (arrayed, single))
    for key in ("rows", "tokens", "labels", "used_token_ids", "shards", "key", "sources"):
        assert merged[key] == alone[key], key
    # an explicit merge of a complete store rewrites nothing
    before = (arrayed / contract.MANIFEST).stat().st_mtime_ns
    assert _prepare(folder, arrayed, "--merge", "--num-children", "3") == 0
    assert (arrayed / contract.MANIFEST).stat().st_mtime_ns == before


def test_nothing_is_rewritten_when_nothing_changed_and_only_the_changed_child_reruns(tmp_path):
    folder, rows = _dataset(tmp_path, files=4)
    store = tmp_path / "store"
    for index in range(2):
        assert _prepare(folder, store, "--num-children", "2", "--child-index", str(index)) == 0
    stamps = {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}
    for index in range(2):
        assert _prepare(folder, store, "--num-children", "2", "--child-index", str(index)) == 0
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()} == stamps
    # the last file changes: child 1 (files 2 and 3) must rerun, child 0 still has nothing to do
    write_tsv(folder / "part-3.tsv", rows[:5])
    assert _prepare(folder, store, "--num-children", "2", "--child-index", "0") == 0
    assert (store / contract.partial_name(0, 2)).stat().st_mtime_ns == stamps[store / contract.partial_name(0, 2)]
    assert (store / contract.MANIFEST).stat().st_mtime_ns == stamps[store / contract.MANIFEST]  # child 1 stale
    assert _prepare(folder, store, "--num-children", "2", "--child-index", "1") == 0
    assert json.loads((store / contract.MANIFEST).read_text())["rows"] == 95


def test_a_bad_row_stops_the_child_before_anything_of_it_is_written(tmp_path, capsys):
    folder, _ = _dataset(tmp_path, files=3)
    (folder / "part-1.tsv").write_text("sentence\tlabel\ngood\t1\nmissing a field\n")
    store = tmp_path / "store"
    assert _prepare(folder, store) == job.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bert_train: error: {folder / 'part-1.tsv'} line 3: expected 2 fields, found 1"]
    assert [p for p in store.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(("args", "message"), [
    (["--max-seq-length", "4"], "--max-seq-length 4: must be an integer >= 8"),
    (["--num-children", "2", "--child-index", "2"], "--child-index 2: must be < --num-children 2"),
    (["--text-column", "nope"], "part-0.tsv line 1: missing column 'nope'"),
])
def test_bad_flags_and_columns(tmp_path, capsys, args, message):
    folder, _ = _dataset(tmp_path, files=1)
    assert _prepare(folder, tmp_path / "store", *args) == job.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "store" / contract.MANIFEST).exists()


def test_pairs_compressed_input_and_worker_processes(tmp_path):
    rows = [{"premise": f"a premise {i}", "hypothesis": f"hypothesis number {i}", "label": "yes" if i % 3 else "no"}
            for i in range(50)]
    inp = tmp_path / "pairs.jsonl.gz"
    inp.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    flags = ["--text-column", "premise", "--text-pair-column", "hypothesis"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert _prepare(inp, one, *flags) == 0
    assert main(["--input", str(inp), "--output", str(two), "--model", "random:tiny", "--vocab", str(VOCAB),
                 "--max-seq-length", "32", "--workers", "2", *flags]) == 0
    expected = _tokenizer()([r["premise"] for r in rows], [r["hypothesis"] for r in rows], truncation=True,
                            max_length=32)
    for store in (one, two):
        table = pq.read_table(store / contract.shard_name(0, 0))
        assert table.column("input_ids").to_pylist() == expected["input_ids"]
        assert table.column("token_type_ids").to_pylist() == expected["token_type_ids"]
        assert json.loads((store / contract.MANIFEST).read_text())["labels"] == ["no", "yes"]


def test_an_s3_store_from_an_s3_prefix(tmp_path):
    import boto3
    from moto import mock_aws

    folder, rows = _dataset(tmp_path, files=2)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("data", "stores"):
            s3.create_bucket(Bucket=bucket)
        for p in sorted(folder.iterdir()):
            s3.put_object(Bucket="data", Key=f"datasets/x/{p.name}", Body=p.read_bytes())
        assert _prepare("s3://data/datasets/x/", "s3://stores/x") == 0
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="stores")["Contents"])
        assert keys == ["x/" + contract.MANIFEST, "x/" + contract.partial_name(0, 1),
                        "x/" + contract.shard_name(0, 0), "x/" + contract.shard_name(1, 0)]
        manifest = json.loads(s3.get_object(Bucket="stores", Key="x/manifest.json")["Body"].read())
        assert manifest["rows"] == len(rows)
        assert [s["version"] for s in manifest["sources"]] == [
            s3.head_object(Bucket="data", Key=f"datasets/x/part-{i}.tsv")["ETag"].strip('"') for i in range(2)]


def test_sigterm_stops_the_child_with_the_retried_exit_code_and_nothing_published(tmp_path, capsys, monkeypatch):
    """A Spot reclaim reaches the child as SIGTERM: it exits 75, which the bert-prepare job
    definition retries (a plain SIGTERM death, 143, would fail the child), and leaves no shard or
    partial manifest behind, so the retry starts clean."""
    import signal

    from bert_train import prepare

    folder, _ = _dataset(tmp_path, files=2)
    real = prepare.run_child

    def reclaimed_during_the_work(j, staging):
        partial = real(j, staging)
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises in this thread, right here
        return partial

    monkeypatch.setattr(prepare, "run_child", reclaimed_during_the_work)
    store = tmp_path / "store"
    assert _prepare(folder, store) == job.EXIT_INTERRUPTED
    assert "stopped by SIGTERM" in capsys.readouterr().err
    assert not list(store.rglob("*.parquet")) and not (store / contract.MANIFEST).exists()
    assert signal.getsignal(signal.SIGTERM) is not prepare._interrupt  # the handler is uninstalled
