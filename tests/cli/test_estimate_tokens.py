"""estimate --data: the rows' tokens, counted with the job's tokenizer, instead of --max-seq-length
tokens a row. Expected values are computed here with the container's tokenizer
(transformers' BertTokenizerFast over the same vocab, every row of the file), not taken from
the code under test."""

from __future__ import annotations

import csv
import json

import pytest

from bertbatch_contract import layout

from .conftest import FIXTURES
from .helpers import one_line_error

TRAIN = FIXTURES / "sst2" / "train.tsv"
VOCAB = FIXTURES / "vocab.txt"
PADDING = 0.05
# 12,800 tokens/s on one GPU, no startup and no Spot overhead: hours are tokens / rate alone.
THROUGHPUT = {
    "format": 2,
    "gpus": {"T1": {"tokens_per_second": 12800, "derived_estimate": True},
             "T2": {"tokens_per_second": 25600, "derived_estimate": False, "source": "a-result.json, 2026-12-02"}},
    "padding": {"share": PADDING, "source": "a test figure"},
    "assumptions": {"multi_gpu_efficiency": 1.0, "startup_minutes": 0, "spot_interruption_overhead": 0},
}
PRICES = {
    "as_of": "2026-01-01", "region": "test-region-1",
    "instances": {"one.x": {"gpu": "T1", "gpus": 1, "on_demand": 2.0, "spot": 1.0},
                  "two.x": {"gpu": "T2", "gpus": 1, "on_demand": 4.0, "spot": 3.0}},
}


@pytest.fixture
def tables(tmp_path):
    t, p = tmp_path / "throughput.json", tmp_path / "prices.json"
    t.write_text(json.dumps(THROUGHPUT))
    p.write_text(json.dumps(PRICES))
    return ["--throughput", str(t), "--prices", str(p)]


def container_mean_tokens(texts: list[str], pairs: list[str] | None = None, max_length: int = 128) -> float:
    """Mean tokens a row as the container's tokenizer makes them (bert_train.data.encode)."""
    from transformers.models.bert.tokenization_bert import BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab=str(VOCAB), do_lower_case=True)
    ids = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False)["input_ids"]
    return sum(map(len, ids)) / len(ids)


def sentences() -> list[str]:
    with TRAIN.open(newline="", encoding="utf-8") as fh:
        return [row["sentence"] for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)]


def estimate_json(bb, *args: str) -> tuple[dict, dict]:
    r = bb("estimate", "-o", "json", *args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    return data, {(o["instance_type"], o["pricing"]): o for o in data["options"]}


def test_the_token_estimate_is_lower_by_the_ratio_the_real_tokens_imply(bb, tables):
    rows = sentences()
    mean = container_mean_tokens(rows)
    computed = mean / (1 - PADDING)
    data, opts = estimate_json(bb, *tables, "--offline", "--data", str(TRAIN), "--tokenizer", str(VOCAB),
                               "--epochs", "3")
    _, padded = estimate_json(bb, *tables, "--offline", "--rows", str(len(rows)), "--epochs", "3")

    tokens = data["tokens"]
    assert tokens["source"] == "sample" and tokens["fallback"] is None
    assert tokens["rows_sampled"] == len(rows) == data["rows"] and tokens["whole_file"] is True
    assert tokens["mean_tokens_per_row"] == pytest.approx(mean)
    assert tokens["padding_share"] == PADDING and tokens["padding_source"] == "a test figure"
    assert tokens["computed_tokens_per_row"] == pytest.approx(computed)
    assert str(VOCAB) in tokens["tokenizer"]
    one = opts[("one.x", "on-demand")]
    # hours = rows x computed tokens x epochs / tokens/s
    assert one["hours"] == pytest.approx(len(rows) * computed * 3 / 12800 / 3600)
    assert one["samples_per_second"] == pytest.approx(12800 / computed)
    for key, option in opts.items():
        assert option["cost"] < padded[key]["cost"]
        assert option["cost"] / padded[key]["cost"] == pytest.approx(computed / 128)
    assert mean < 20  # SST-2 sentences are short: about a tenth of 128


def test_the_table_says_where_the_tokens_and_the_figures_came_from(bb, tables):
    # Wide enough that the tokens line, which names the vocab file's path, is not wrapped
    # (wrapping has its own tests: tests/cli/test_tables.py).
    r = bb("estimate", *tables, "--offline", "--data", str(TRAIN), "--tokenizer", str(VOCAB), width=4000)
    assert r.exit_code == 0, r.output
    mean = container_mean_tokens(sentences())
    tokens_line = next(line for line in r.output.splitlines() if line.startswith("Tokens:"))
    assert f"all 2,000 rows tokenized with WordPiece vocab {VOCAB}" in tokens_line
    assert f"{mean:.1f} tokens a row" in tokens_line and "5.0% padding (a test figure)" in tokens_line
    assert f"{mean / (1 - PADDING):.1f} computed tokens a row" in tokens_line
    assert "Throughput: derived estimates for T1" in r.output
    assert "measured: T2 (a-result.json, 2026-12-02)" in r.output
    cells = (line.lstrip("* ").split() for line in r.output.splitlines())
    figure = {c[0]: c[5] for c in cells if c and c[0] in ("one.x", "two.x")}  # the FIGURE column
    assert figure == {"one.x": "derived", "two.x": "measured"}


def test_pairs_are_tokenized_together_and_truncated_at_max_seq_length(bb, tables, tmp_path):
    rows = sentences()[:300]
    firsts, seconds = rows[:150], rows[150:]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"premise": a, "hypothesis": b, "label": i % 2}) + "\n"
                            for i, (a, b) in enumerate(zip(firsts, seconds, strict=True))))
    data, _ = estimate_json(bb, *tables, "--offline", "--data", str(path), "--tokenizer", str(VOCAB),
                            "--text-column", "premise", "--text-pair-column", "hypothesis", "--max-seq-length", "16")
    expected = container_mean_tokens(firsts, seconds, max_length=16)
    assert data["tokens"]["mean_tokens_per_row"] == pytest.approx(expected)
    assert expected < 16  # some rows were cut at 16, none is longer
    assert data["tokens"]["computed_tokens_per_row"] <= 16


def test_only_the_first_mebibyte_is_sampled_from_a_large_file(bb, tables, tmp_path):
    rows = sentences()
    path = tmp_path / "big.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t1\n" for s in rows * 20))  # about 2.2 MiB
    data, _ = estimate_json(bb, *tables, "--offline", "--data", str(path), "--tokenizer", str(VOCAB))
    assert data["rows"] == 20 * len(rows)
    assert data["tokens"]["rows_sampled"] == len(rows) and data["tokens"]["whole_file"] is False
    assert data["tokens"]["mean_tokens_per_row"] == pytest.approx(container_mean_tokens(rows))


def test_without_a_tokenizer_every_row_is_max_seq_length_and_it_says_why(bb, tables):
    r = bb("estimate", *tables, "--offline", "--data", str(TRAIN))
    assert r.exit_code == 0, r.output
    assert ("Tokens: every row counted as 128 tokens (--max-seq-length), an upper bound: no tokenizer: the model "
            "bert-base-uncased was not looked up (--offline; give --tokenizer FILE).") in r.output
    data, opts = estimate_json(bb, *tables, "--offline", "--data", str(TRAIN))
    assert data["tokens"]["source"] == "max_seq_length" and "--offline" in data["tokens"]["fallback"]
    assert data["tokens"]["computed_tokens_per_row"] == 128 and data["tokens"]["mean_tokens_per_row"] is None
    assert opts[("one.x", "on-demand")]["samples_per_second"] == pytest.approx(100)
    data, _ = estimate_json(bb, *tables, "--offline", "--rows", "2000")
    assert data["tokens"]["fallback"] == "--rows given, no --data rows to tokenize"


def put_tokenizer_model(platform, name: str, files: dict[str, bytes]) -> str:
    """A staged model with these files and its manifest (what `models import` leaves)."""
    prefix = layout.model_prefix(name)
    for path, body in files.items():
        platform.s3.put_object(Bucket=platform.artifacts_bucket, Key=prefix + path, Body=body)
    manifest = {"format": layout.MODEL_MANIFEST_FORMAT, "name": name, "source": "test",
                "created": "2026-12-01T00:00:00Z",
                "files": [{"path": p, "size": len(b), "sha256": "0" * 64} for p, b in files.items()]}
    platform.s3.put_object(Bucket=platform.artifacts_bucket, Key=layout.model_manifest_key(name),
                           Body=json.dumps(manifest).encode())
    return f"s3://{platform.artifacts_bucket}/{prefix}"


def test_a_staged_models_tokenizer_is_read_from_s3(platform, bb):
    uri = platform.put_dataset("datasets/sst2/train.tsv", TRAIN.read_bytes())
    prefix = put_tokenizer_model(platform, "tok-model", {"config.json": b"{}", "vocab.txt": VOCAB.read_bytes()})
    args = ("--data", uri, "--instance-type", "g5.xlarge")
    staged, staged_opts = estimate_json(bb, *args, "--model", "tok-model")
    local, local_opts = estimate_json(bb, *args, "--tokenizer", str(VOCAB))
    assert staged["tokens"]["tokenizer"] == prefix + "vocab.txt"
    assert staged["tokens"]["mean_tokens_per_row"] == pytest.approx(container_mean_tokens(sentences()))
    assert staged_opts == local_opts
    # an s3:// model prefix needs no deployment lookup
    by_uri, _ = estimate_json(bb, *args, "--model", prefix, "--offline")
    assert by_uri["tokens"]["tokenizer"] == prefix + "vocab.txt"


def test_a_model_that_is_not_staged_falls_back_and_says_so(platform, bb):
    uri = platform.put_dataset("datasets/sst2/train.tsv", TRAIN.read_bytes())
    data, _ = estimate_json(bb, "--data", uri, "--model", "never-imported", "--instance-type", "g5.xlarge")
    assert data["tokens"]["source"] == "max_seq_length"
    assert "never-imported" in data["tokens"]["fallback"] and "not staged" in data["tokens"]["fallback"]


def test_a_model_directory_brings_its_tokenizer(bb, tables, tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "vocab.txt").write_bytes(VOCAB.read_bytes())
    (model / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    data, _ = estimate_json(bb, *tables, "--offline", "--data", str(TRAIN), "--model", str(model))
    assert data["tokens"]["tokenizer"] == f"vocab.txt of {model}"
    assert data["tokens"]["mean_tokens_per_row"] == pytest.approx(container_mean_tokens(sentences()))


def test_a_tokenizer_json_is_read_as_the_model_saved_it(bb, tables, tmp_path):
    from transformers.models.bert.tokenization_bert import BertTokenizerFast

    BertTokenizerFast(vocab=str(VOCAB), do_lower_case=True).save_pretrained(str(tmp_path / "saved"))
    data, _ = estimate_json(bb, *tables, "--offline", "--data", str(TRAIN), "--tokenizer",
                            str(tmp_path / "saved" / "tokenizer.json"))
    assert data["tokens"]["mean_tokens_per_row"] == pytest.approx(container_mean_tokens(sentences()))


@pytest.mark.parametrize(("body", "name", "fragments"), [
    (b"text\tlabel\ngood\t1\n", "t.tsv", ("t.tsv: no column 'sentence' in the header (has: text, label)",)),
    (b'{"sentence": "a", "label": 1}\n{"text": "b", "label": 0}\n', "t.jsonl",
     ("t.jsonl line 2: no column 'sentence' (has: text, label)",)),
    (b"sentence\tlabel\ngood\t1\nbad\n", "t.tsv", ("t.tsv line 3: expected 2 fields, found 1",)),
    (b"sentence,label\n\xff\xfe,1\n", "t.csv", ("t.csv line 2: not UTF-8 text",)),
    (b"sentence\tlabel\n", "t.tsv", ("t.tsv: no data rows",)),
    (b"sentence\tlabel\ngood\t1\n", "t.txt", ("t.txt: unknown file type",)),
])
def test_a_file_the_job_could_not_read_is_one_line_naming_it(bb, tables, tmp_path, body, name, fragments):
    path = tmp_path / name
    path.write_bytes(body)
    one_line_error(bb("estimate", *tables, "--offline", "--data", str(path), "--tokenizer", str(VOCAB)),
                   f"--data {path}", *fragments)


def test_the_column_is_checked_without_a_tokenizer_too(bb, tables, tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes(b"review\tlabel\ngood\t1\n")
    one_line_error(bb("estimate", *tables, "--offline", "--data", str(path)), str(path), "no column 'sentence'")
    data, _ = estimate_json(bb, *tables, "--offline", "--data", str(path), "--text-column", "review")
    assert data["rows"] == 1


def test_a_missing_object_on_s3_is_one_line(platform, bb, tables):
    one_line_error(bb("estimate", *tables, "--offline", "--data", f"s3://{platform.data_bucket}/datasets/none.tsv"),
                   f"--data s3://{platform.data_bucket}/datasets/none.tsv: no such object")


@pytest.mark.parametrize(("vocab", "fragments"), [
    (None, ("no such file",)),
    (b"hello\nworld\n", ("not a WordPiece vocab.txt (lacks [CLS], [SEP], [UNK])",)),
])
def test_a_bad_tokenizer_file_is_one_line_naming_it(bb, tables, tmp_path, vocab, fragments):
    path = tmp_path / "vocab.txt"
    if vocab is not None:
        path.write_bytes(vocab)
    one_line_error(bb("estimate", *tables, "--offline", "--data", str(TRAIN), "--tokenizer", str(path)),
                   f"--tokenizer {path}", *fragments)


def test_a_bad_tokenizer_json_is_one_line(bb, tables, tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text("{}")
    one_line_error(bb("estimate", *tables, "--offline", "--data", str(TRAIN), "--tokenizer", str(path)),
                   f"--tokenizer {path}", "not a tokenizer.json")


def test_a_gzip_file_is_sampled_like_the_plain_one_and_other_formats_are_named(bb, tables, tmp_path):
    import gzip

    plain, _ = estimate_json(bb, *tables, "--offline", "--data", str(TRAIN), "--tokenizer", str(VOCAB))
    packed = tmp_path / "train.tsv.gz"
    packed.write_bytes(gzip.compress(TRAIN.read_bytes()))
    data, _ = estimate_json(bb, *tables, "--offline", "--data", str(packed), "--tokenizer", str(VOCAB))
    assert data["tokens"]["mean_tokens_per_row"] == plain["tokens"]["mean_tokens_per_row"]
    assert data["rows"] == plain["rows"] == 2000
    for name in ("train.parquet", "train.jsonl.zst"):
        (tmp_path / name).write_bytes(b"x")
        one_line_error(bb("estimate", *tables, "--offline", "--data", str(tmp_path / name), "--tokenizer", str(VOCAB)),
                       f"--data {tmp_path / name}: the estimate samples .jsonl, .csv and .tsv files, plain or .gz")


# --- a prepared store: its manifest counted every row ---------------------------------------------
@pytest.fixture
def local_store(bb, tmp_path):
    store_dir = tmp_path / "store"
    r = bb("prepare", "--local", "--input", str(TRAIN), "--model", "random:tiny", "--vocab", str(VOCAB),
           "--max-seq-length", "64", "--workers", "1", "--store", str(store_dir))
    assert r.exit_code == 0, r.output
    return store_dir


def test_a_store_gives_the_rows_and_tokens_of_every_row_without_sampling(bb, tables, local_store):
    data, options = estimate_json(bb, *tables, "--offline", "--data", str(local_store), "--max-seq-length", "64")
    mean = container_mean_tokens(sentences(), max_length=64)  # every row, as the container tokenizes it
    assert data["rows"] == 2000
    assert data["tokens"]["source"] == "store"
    assert data["tokens"]["mean_tokens_per_row"] == pytest.approx(mean)
    assert data["tokens"]["computed_tokens_per_row"] == pytest.approx(mean / (1 - PADDING))
    hours = 2000 * 3 * mean / (1 - PADDING) / 12_800 / 3600  # T1: 12,800 tokens/s, 3 epochs
    assert options[("one.x", "spot")]["hours"] == pytest.approx(hours, rel=1e-3)
    r = bb("estimate", *tables, "--offline", "--data", str(local_store), "--max-seq-length", "64", width=4000)
    assert "Tokens: the store's manifest, all 2,000 rows as random:tiny tokenized them" in r.output


def test_a_store_prepared_for_another_length_is_refused(bb, tables, local_store):
    one_line_error(bb("estimate", *tables, "--offline", "--data", str(local_store)),
                   "the store was prepared with --max-seq-length 64, not 128")
