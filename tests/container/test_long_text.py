"""Long inputs: the model's own position limit, head+tail truncation, truncation counts, and
chunked documents (windows pooled per document) in training, evaluation and predict."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from bert_train import data, long_text, modeling
from bert_train.__main__ import main
from bert_train.long_text import Fit
from bert_train.tasks import SINGLE_LABEL, Task
from bert_train.tokenize_pool import Tokenize
from bertbatch_contract import job

from .conftest import VOCAB, final_metrics, read_sst2, tiny_args, write_tsv

ONE_CLASS = Task(SINGLE_LABEL, ("0",))  # the targets do not matter here

LONG = " ".join(str(n) for n in range(100, 140))  # 40 numbers, one WordPiece token each


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    tok, _ = modeling.build_tokenizer("random:tiny", str(VOCAB), str(tmp_path_factory.mktemp("cache")))
    return tok


def _examples(texts, pairs=None):
    return [data.Example(text=t, pair=pairs[i] if pairs else None, label="0", line=i + 2) for i, t in enumerate(texts)]


def _sentences(n=40):
    return [r["sentence"] for r in read_sst2("train.tsv")[:n]]


def test_max_seq_length_beyond_512_reaches_the_models_own_limit(small_data, tmp_path, capsys):
    code = main(tiny_args(*small_data, tmp_path / "out", tmp_path / "ckpt", max_seq_length=1024))
    err = capsys.readouterr().err.strip()
    assert code == job.EXIT_BAD_INPUT
    assert err == ("bert_train: error: --max-seq-length 1024 exceeds the model's 128 positions "
                   "(max_position_embeddings of random:tiny); use --max-seq-length 128 or less, with "
                   "--long-text head+tail or chunk for longer texts")
    assert not (tmp_path / "out").exists() and not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("pairs", [False, True])
def test_truncate_is_the_tokenizers_own_truncation_and_counts_the_long_rows(tokenizer, pairs):
    texts = _sentences()
    second = list(reversed(texts)) if pairs else None
    enc = data.encode(_examples(texts, second), tokenizer, ONE_CLASS, 16)
    expected = tokenizer(texts, second, truncation=True, max_length=16)
    untruncated = tokenizer(texts, second)["input_ids"]
    assert enc.input_ids == expected["input_ids"]
    if pairs:
        assert enc.token_type_ids == expected["token_type_ids"]
    assert enc.truncated == sum(len(ids) > 16 for ids in untruncated) > 0


def test_head_tail_keeps_a_quarter_of_the_budget_from_the_start_and_the_rest_from_the_end(tokenizer):
    enc = data.encode(_examples([LONG, "short"]), tokenizer, ONE_CLASS, Fit(18, "head+tail"))
    words = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    assert len(words) == 40
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert enc.input_ids[0] == [cls, *words[:4], *words[-12:], sep]  # budget 16: 4 head + 12 tail
    assert enc.input_ids[1] == tokenizer("short")["input_ids"]
    assert enc.truncated == 1


@pytest.mark.parametrize(("mode", "pairs"), [("truncate", False), ("truncate", True), ("head+tail", False)])
def test_a_store_tokenizes_as_the_in_memory_path_does(tokenizer, mode, pairs):
    texts = [*_sentences(), LONG]
    second = list(reversed(texts)) if pairs else None
    enc = data.encode(_examples(texts, second), tokenizer, ONE_CLASS, Fit(20, mode))
    with Tokenize(tokenizer, 20, workers=1, mode=mode) as tok:
        (batch,) = list(tok.map([(texts, second)]))
    rows = [batch.ids[a:b].tolist() for a, b in zip(batch.offsets[:-1], batch.offsets[1:], strict=True)]
    assert rows == enc.input_ids
    assert batch.truncated == enc.truncated > 0
    if pairs:
        assert [batch.types[a:b].tolist() for a, b in zip(batch.offsets[:-1], batch.offsets[1:], strict=True)] \
            == enc.token_type_ids


def test_chunk_cuts_overlapping_windows_that_cover_the_text(tokenizer):
    enc = data.encode(_examples(["short", LONG]), tokenizer, ONE_CLASS, Fit(18, "chunk", overlap=4))
    words = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    # 16 text tokens a window, moving on by 12: 0-15, 12-27, 24-39
    assert enc.window_starts == [0, 1, 4]
    assert enc.input_ids[1:] == [[cls, *words[a:a + 16], sep] for a in (0, 12, 24)]
    assert enc.lengths == [3, 54] and len(enc) == 2 and enc.truncated == 1
    assert Fit.build(24, "chunk", None) == Fit(24, "chunk", 6)  # default overlap: a quarter of the length
    assert Fit.build(24, None, None).mode == "truncate"


def test_overlap_and_pairs_are_checked_where_both_are_known():
    from bertbatch_contract import hyperparameters as hp

    with pytest.raises(hp.InvalidHyperparameter, match=r"^--chunk-overlap 64: must be less than half of "
                       r"--max-seq-length 128$"):
        hp.validate({"long_text": "chunk", "chunk_overlap": 64, "max_seq_length": 128})
    with pytest.raises(hp.InvalidHyperparameter, match=r"^--long-text head\+tail: needs single texts"):
        hp.validate({"long_text": "head+tail", "text_pair_column": "s2"})
    assert hp.validate({"long_text": "truncate", "chunk_overlap": 64, "max_seq_length": 100})["long_text"] == "truncate"


@pytest.mark.parametrize("unpadded", [False, True])
def test_a_chunked_batch_pools_each_documents_windows(tokenizer, unpadded):
    torch.manual_seed(0)
    model = modeling.build_model("random:tiny", ["a", "b"], len(tokenizer)).eval()
    runner = modeling.UnpaddedBert(model).eval() if unpadded else modeling.PaddedBert(model).eval()
    enc = data.encode(_examples([LONG, "short", LONG[:60]]), tokenizer, Task(SINGLE_LABEL, ("a", "0")),
                      Fit(18, "chunk", overlap=4))
    batch = (data.collate_unpadded(enc, [2, 0, 1]) if unpadded
             else data.collate(enc, [2, 0, 1], tokenizer.pad_token_id))
    assert batch["labels"].tolist() == [1, 1, 1]
    labels, window_doc = batch.pop("labels"), batch.pop(long_text.WINDOW_DOC)
    with torch.no_grad():
        pooled = long_text.pool_logits(runner(**batch).logits, window_doc, len(labels))
        alone = [model(input_ids=torch.tensor([ids])).logits[0] for ids in enc.input_ids]
    for position, doc in enumerate([2, 0, 1]):
        windows = alone[enc.window_starts[doc]:enc.window_starts[doc + 1]]
        assert torch.allclose(pooled[position], torch.stack(windows).mean(0), atol=1e-5)


def _long_data(tmp_path):
    """SST-2 rows, every fourth one made long (the sentence, then 40 numbers)."""
    rows = read_sst2("train.tsv")[:160]
    for i in range(0, len(rows), 4):
        rows[i] = {**rows[i], "sentence": rows[i]["sentence"] + " " + LONG}
    return (write_tsv(tmp_path / "data" / "train.tsv", rows[:128]),
            write_tsv(tmp_path / "data" / "dev.tsv", rows[128:]))


def _too_long(tokenizer, path, limit):
    texts = [line.split("\t")[0] for line in path.read_text().splitlines()[1:]]
    return sum(len(ids) > limit for ids in tokenizer(texts)["input_ids"])


@pytest.mark.parametrize("mode", ["head+tail", "chunk"])
def test_a_run_records_its_long_text_setting_and_counts_truncated_rows(tokenizer, tmp_path, caplog, mode):
    train, dev = _long_data(tmp_path)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="bert_train"):
        code = main(tiny_args(train, dev, out, tmp_path / "ckpt", max_seq_length=24, long_text=mode,
                              chunk_overlap=4 if mode == "chunk" else None, epochs=1, batch_size=8))
    assert code == job.EXIT_OK
    m = final_metrics(out)
    counts = {"train": _too_long(tokenizer, train, 24), "eval": _too_long(tokenizer, dev, 24)}
    assert m["truncated_rows"] == counts and counts["train"] >= 32
    assert m["eval_loss"] is not None and m["train_loss"] > 0
    args = json.loads((out / "training_args.json").read_text())
    assert (args["long_text"], args["max_seq_length"]) == (mode, 24)
    assert f"train: {counts['train']} of 128 rows longer than --max-seq-length 24: " in caplog.text


def test_predict_takes_the_runs_long_text_setting_and_warns_about_another():
    from bertbatch_contract import prediction

    trained = {"max_seq_length": 32, "long_text": "chunk", "chunk_overlap": 8}
    values, warnings = prediction.from_training({}, trained)
    assert (values["long_text"], values["chunk_overlap"], warnings) == ("chunk", 8, [])
    values, warnings = prediction.from_training({"long_text": "head+tail"}, trained)
    assert values["long_text"] == "head+tail"
    assert warnings == ["--long-text head+tail: the model was trained with chunk (training_args.json); "
                        "scoring with head+tail"]


def test_a_store_records_head_tail_and_its_count_and_training_asks_for_the_same(tokenizer, tmp_path, capsys):
    from bert_train.prepare import main as prepare

    train, dev = _long_data(tmp_path)
    store = tmp_path / "store"
    common = ["--input", str(train), "--model", "random:tiny", "--vocab", str(VOCAB), "--max-seq-length", "24",
              "--workers", "1"]
    assert prepare([*common, "--output", str(store), "--long-text", "head+tail"]) == job.EXIT_OK
    manifest = json.loads((store / "manifest.json").read_text())
    assert (manifest["long_text"], manifest["truncated_rows"]) == ("head+tail", _too_long(tokenizer, train, 24))
    assert prepare([*common, "--output", str(tmp_path / "chunked"), "--long-text", "chunk"]) == job.EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == ("bert_train: error: --long-text chunk: must be one of truncate, "
                                               "head+tail")
    assert not (tmp_path / "chunked").exists()

    def refused(mode: str) -> str:
        args = tiny_args(store, dev, tmp_path / "out", tmp_path / "ckpt", max_seq_length=24, long_text=mode)
        assert main(args) == job.EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and not (tmp_path / "out").exists()
        return err[0]

    assert refused("truncate").endswith("prepared with --long-text head+tail, not truncate; pass that or prepare "
                                        "it again")
    assert refused("chunk") == (f"bert_train: error: --long-text chunk: not supported with a tokenized store "
                                f"({store} holds one row per text); train from the data files, or prepare the "
                                "store with --long-text head+tail")
    out = tmp_path / "trained"
    args = tiny_args(store, dev, out, tmp_path / "ckpt2", max_seq_length=24, long_text="head+tail", max_steps=2,
                     batch_size=8)
    assert main(args) == job.EXIT_OK
    assert final_metrics(out)["truncated_rows"] == {"train": manifest["truncated_rows"],
                                                    "eval": _too_long(tokenizer, dev, 24)}


def test_predict_scores_a_chunked_row_by_its_pooled_windows_and_counts_it(tokenizer, tmp_path):
    from bert_train import outputs

    torch.manual_seed(3)
    run_dir = tmp_path / "run"
    model = modeling.build_model("random:tiny", ["a", "b"], len(tokenizer)).eval()
    outputs.write_local(run_dir, model=model, tokenizer=tokenizer, task=Task(SINGLE_LABEL, ("a", "b")),
                        run_id="r", metrics={},
                        config={"max_seq_length": 18, "long_text": "chunk", "chunk_overlap": 4})
    rows = write_tsv(tmp_path / "rows.tsv", [{"sentence": "short"}, {"sentence": LONG}], columns=("sentence",))
    out = tmp_path / "predictions"
    assert main(["predict", "--model", str(run_dir), "--input", str(rows), "--output", str(out),
                 "--precision", "fp32"]) == job.EXIT_OK
    lines = [json.loads(line) for line in (out / "part-00000.jsonl").read_text().splitlines()]
    assert [line.get("truncated", False) for line in lines] == [False, True]
    windows = data.encode(_examples([LONG]), tokenizer, ONE_CLASS, Fit(18, "chunk", 4)).input_ids
    with torch.no_grad():
        expected = torch.stack([model(input_ids=torch.tensor([w])).logits[0] for w in windows]).mean(0).softmax(-1)
    assert [lines[1]["probabilities"][x] for x in ("a", "b")] == pytest.approx(expected.tolist(), abs=1e-5)
    assert json.loads((out / "part-00000.manifest.json").read_text())["truncated_rows"] == 1
    assert json.loads((out / "manifest.json").read_text())["truncated_rows"] == 1
