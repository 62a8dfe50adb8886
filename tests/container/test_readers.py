"""Inputs as users keep them: one file, a folder or an S3 prefix of shards; JSONL/CSV/TSV, each
plain, gzip or zstd compressed, and Parquet; read as streams, every bad row named by shard and line."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from bert_train import data, sources
from bert_train.config import BadInput

ROWS = [{"sentence": f"row {i}", "label": i % 2} for i in range(5)]


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def _tsv(rows) -> bytes:
    return ("sentence\tlabel\n" + "".join(f"{r['sentence']}\t{r['label']}\n" for r in rows)).encode()


def _csv(rows) -> bytes:
    return ("sentence,label\r\n" + "".join(f"\"{r['sentence']}\",{r['label']}\r\n" for r in rows)).encode()


ENCODERS = {".jsonl": _jsonl, ".tsv": _tsv, ".csv": _csv}
COMPRESSORS = {"": lambda b: b, ".gz": gzip.compress, ".zst": lambda b: zstandard.ZstdCompressor().compress(b)}


def _write(path, rows) -> None:
    name = path.name.lower()
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
        return
    compress, stem = next(((c, name[: -len(e)]) for e, c in COMPRESSORS.items() if e and name.endswith(e)),
                          (COMPRESSORS[""], name))
    encoder = ENCODERS["." + stem.rsplit(".", 1)[1]]
    path.write_bytes(compress(encoder(rows)))


def _read(uri) -> list[tuple[str, str, int]]:
    return [(e.text, e.label, e.line) for e in data.read_examples(str(uri), "sentence", "label")]


@pytest.mark.parametrize("name", [f"train{fmt}{comp}" for fmt in ENCODERS for comp in COMPRESSORS]
                         + ["train.parquet", "TRAIN.JSONL.GZ"])
def test_every_format_and_compression_reads_the_same_rows(tmp_path, name):
    _write(tmp_path / name, ROWS)
    got = _read(tmp_path / name)
    assert [(t, lab) for t, lab, _ in got] == [(r["sentence"], str(r["label"])) for r in ROWS]
    first_line = 1 if "JSONL" in name.upper() or name.endswith(".parquet") else 2
    assert [n for _, _, n in got] == list(range(first_line, first_line + len(ROWS)))


def test_jsonl_lines_end_at_newline_only(tmp_path):
    texts = ["a\u2028b", "c\u2029d", "e\u0085f", "g\rh", "i\x0bj\x0ck\x1cl"]
    path = tmp_path / "train.jsonl"
    path.write_bytes(_jsonl([{"sentence": t, "label": i % 2} for i, t in enumerate(texts)]))
    assert [t for t, _, _ in _read(path)] == texts
    # the CLI's reader of text heads agrees (tables.rows)
    from bertbatch_contract import tables

    assert [r["sentence"] for _, r in tables.rows(path.read_text(), "jsonl", ["sentence"])] == texts


def test_a_folder_of_shards_is_read_in_name_order_skipping_markers(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    _write(folder / "part-1.jsonl.gz", ROWS[2:])
    _write(folder / "part-0.tsv", ROWS[:2])
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-0.tsv.crc").write_text("x")
    (folder / "README.md").write_text("not data")
    _write(folder / "sub" / "part-2.parquet", ROWS[:1])
    got = data.read_examples(str(folder), "sentence", "label")
    assert [e.text for e in got] == [r["sentence"] for r in ROWS + ROWS[:1]]
    assert [e.file.rsplit("/", 1)[1] for e in got] == ["part-0.tsv"] * 2 + ["part-1.jsonl.gz"] * 3 + ["part-2.parquet"]
    listed = sources.list_sources(str(folder))
    assert [s.size for s in listed] == [(folder / s.uri.split("data/", 1)[1]).stat().st_size for s in listed]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("part-1.jsonl", b'{"sentence": "a", "label": 1}\n{"sentence": \n', "part-1.jsonl line 2: malformed JSON"),
    ("part-1.jsonl.gz", gzip.compress(mtime=0, data=b'{"sentence": "a", "label": 1}\n\n{"label": 1}\n'),
     "part-1.jsonl.gz line 3: missing column 'sentence'"),
    ("part-1.tsv.zst", zstandard.ZstdCompressor().compress(b"sentence\tlabel\na\t1\nb\n"),
     "part-1.tsv.zst line 3: expected 2 fields, found 1"),
    ("part-1.csv.gz", b"not gzip at all", "part-1.csv.gz: cannot decompress (gzip: "),
    ("part-1.jsonl", b"\n \n", "part-1.jsonl: file is empty"),
    ("part-1.jsonl", b'{"sentence": "a", "label": 1}\n\xff\n', "part-1.jsonl line 2: not UTF-8 text"),
    ("part-1.parquet", b"PAR1 broken", "part-1.parquet: not a Parquet file"),
])
def test_a_bad_shard_is_named_with_its_line(tmp_path, name, content, message):
    folder = tmp_path / "data"
    folder.mkdir()
    _write(folder / "part-0.jsonl", ROWS)
    (folder / name).write_bytes(content)
    with pytest.raises(BadInput) as exc:
        data.read_examples(str(folder), "sentence", "label")
    assert str(exc.value).startswith(f"{folder / name}"), str(exc.value)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_parquet_missing_column_and_bad_values(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "a", "label": 1}]), path)
    with pytest.raises(BadInput, match=r"t.parquet: missing column 'sentence' \(columns: text, label\)"):
        _read(path)
    pq.write_table(pa.Table.from_pylist([{"sentence": "a", "label": 1}, {"sentence": None, "label": 0}]), path)
    with pytest.raises(BadInput, match=r"t.parquet line 2: column 'sentence' is empty"):
        _read(path)


@pytest.mark.parametrize(("where", "message"), [
    ("nothing-here", "nothing-here: file not found"),
    ("empty-dir", r"empty-dir: no data files \(expected names ending in .jsonl"),
    ("train.txt", "train.txt: unknown file type"),
])
def test_locations_without_data(tmp_path, where, message):
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "empty-dir" / "notes.txt").write_text("x")
    (tmp_path / "train.txt").write_text("x")
    with pytest.raises(BadInput, match=message):
        _read(tmp_path / where)


def test_an_s3_prefix_of_shards(tmp_path):
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data")
        for i, (ext, chunk) in enumerate([(".jsonl.zst", ROWS[:3]), (".csv.gz", ROWS[3:])]):
            local = tmp_path / f"part-{i}{ext}"
            _write(local, chunk)
            s3.put_object(Bucket="data", Key=f"datasets/big/part-{i}{ext}", Body=local.read_bytes())
        local = tmp_path / "p.parquet"
        _write(local, ROWS)
        s3.put_object(Bucket="data", Key="datasets/big/part-2.parquet", Body=local.read_bytes())
        s3.put_object(Bucket="data", Key="datasets/big/_SUCCESS", Body=b"")
        got = data.read_examples("s3://data/datasets/big", "sentence", "label")
        assert [e.text for e in got] == [r["sentence"] for r in ROWS + ROWS]
        listed = sources.list_sources("s3://data/datasets/big/")
        assert [s.uri for s in listed] == [f"s3://data/datasets/big/part-{i}{ext}" for i, ext in
                                           enumerate([".jsonl.zst", ".csv.gz", ".parquet"])]
        assert all(s.version and s.size > 0 for s in listed)
        s3.put_object(Bucket="data", Key="datasets/big/part-3.jsonl", Body=b'{"sentence": 1.5, "label": []}\n')
        with pytest.raises(BadInput, match=r"^s3://data/datasets/big/part-3.jsonl line 1: label must be"):
            data.read_examples("s3://data/datasets/big", "sentence", "label")
        with pytest.raises(BadInput, match=r"^s3://data/datasets/none: no data files"):
            data.read_examples("s3://data/datasets/none", "sentence", "label")


@pytest.mark.parametrize("name", [f"t{fmt}{comp}" for fmt in ENCODERS for comp in COMPRESSORS] + ["t.parquet"])
def test_counting_rows_agrees_with_reading_them(tmp_path, name):
    from bert_train import readers

    rows = ROWS + [{"sentence": "with a\u2028separator", "label": 1}]
    _write(tmp_path / name, rows)
    assert readers.count_rows(str(tmp_path / name)) == len(list(readers.rows(str(tmp_path / name), ["sentence"])))
    assert readers.count_rows(str(tmp_path / name)) == len(rows)
