"""Every model family the platform fine-tunes, as a tiny random model: it trains a few steps,
predicts, and its predictions are the transformers model's own; token type ids reach the models
that have segment embeddings and no other; a fine-tuned checkpoint keeps its class order."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bert_train import modeling
from bert_train.__main__ import main
from bert_train.config import parse_args, resolve_locations
from bert_train.train import read_inputs, run
from bertbatch_contract import job, layout

from .conftest import VOCAB, read_sst2, tiny_args

pytestmark = pytest.mark.slow

LABELS = ["negative", "positive"]
MAX_SEQ_LENGTH = 32
# Two layers, hidden 32: each family trains its few steps in about a second on one core.
LAYERS = dict(num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=64)


@dataclass(frozen=True)
class Family:
    name: str
    config: dict[str, Any]
    segments: bool  # the model is given token type ids for sentence pairs
    tokenizer: str = "wordpiece"  # the tokenizer the model directory ships: "wordpiece" or "albert"


FAMILIES = [
    Family("bert", dict(model_type="bert", max_position_embeddings=64, **LAYERS), segments=True),
    # type_vocab_size 1, as the real checkpoints: pair ids of 1 from a BERT tokenizer do not fit.
    Family("roberta", dict(model_type="roberta", type_vocab_size=1, max_position_embeddings=66, **LAYERS,
                           pad_token_id=0), segments=False),
    Family("distilbert", dict(model_type="distilbert", dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=64), segments=False),
    # The ALBERT tokenizer returns no token type ids unless asked for them.
    Family("albert", dict(model_type="albert", embedding_size=16, max_position_embeddings=64, **LAYERS,
                          pad_token_id=0, bos_token_id=2, eos_token_id=3), segments=True, tokenizer="albert"),
    Family("electra", dict(model_type="electra", embedding_size=16, max_position_embeddings=64, **LAYERS),
           segments=True),
    Family("deberta-v2", dict(model_type="deberta-v2", max_position_embeddings=64, relative_attention=True,
                              pos_att_type=["p2c", "c2p"], position_buckets=16, norm_rel_ebd="layer_norm",
                              share_att_key=True, position_biased_input=False, conv_kernel_size=3,
                              conv_act="gelu", **LAYERS), segments=False),
    Family("deberta-v3", dict(model_type="deberta-v2", max_position_embeddings=64, relative_attention=True,
                              pos_att_type=["p2c", "c2p"], position_buckets=16, norm_rel_ebd="layer_norm",
                              share_att_key=True, position_biased_input=False, type_vocab_size=0, **LAYERS),
           segments=False),
    Family("xlm-roberta", dict(model_type="xlm-roberta", type_vocab_size=1, max_position_embeddings=66, **LAYERS,
                               pad_token_id=0), segments=False),
    Family("modernbert", dict(model_type="modernbert", max_position_embeddings=64, global_attn_every_n_layers=2,
                              local_attention=16, **LAYERS, pad_token_id=0, cls_token_id=101, sep_token_id=102,
                              bos_token_id=101, eos_token_id=102),
           segments=False),
]


def albert_tokenizer():
    """A SentencePiece-style (Unigram) ALBERT tokenizer over the fixture vocab's whole words."""
    from transformers import AlbertTokenizer

    words = [w for w in VOCAB.read_text(encoding="utf-8").split() if w.isalpha() and w.islower()]
    pieces = ([(t, 0.0) for t in ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")]
              + [("\u2581" + w, -5.0) for w in words] + [(c, -10.0) for c in "abcdefghijklmnopqrstuvwxyz"])
    return AlbertTokenizer(vocab=pieces)


def model_dir(root: Path, family: Family, *, labels: list[str] | None = None) -> Path:
    """A model directory as a hub download has it: config, random weights and the tokenizer it ships
    (`labels`: a checkpoint fine-tuned on them, in that order; None: a base model's default labels)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertTokenizerFast

    wordpiece = family.tokenizer == "wordpiece"
    tokenizer = BertTokenizerFast(vocab=str(VOCAB), do_lower_case=True) if wordpiece else albert_tokenizer()
    values = dict(family.config)
    config = AutoConfig.for_model(values.pop("model_type"), vocab_size=len(tokenizer), **values)
    if labels is not None:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    torch.manual_seed(0)
    directory = root / f"{family.name}-model"
    AutoModelForSequenceClassification.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def pair_rows(count: int) -> list[dict[str, str]]:
    rows = read_sst2("train.tsv")[:count]
    return [{"premise": r["sentence"], "hypothesis": rows[-i - 1]["sentence"], "gold": LABELS[int(r["label"])]}
            for i, r in enumerate(rows)]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pair_args(tmp_path: Path, model: Path, **overrides: Any) -> list[str]:
    """Training flags for a few steps on sentence pairs with string labels."""
    train = write_jsonl(tmp_path / "data" / "train.jsonl", pair_rows(16))
    dev = write_jsonl(tmp_path / "data" / "dev.jsonl", pair_rows(8))
    values: dict[str, Any] = dict(model=model, vocab=None, text_column="premise", text_pair_column="hypothesis",
                                  label_column="gold", max_seq_length=MAX_SEQ_LENGTH, batch_size=4, max_steps=3,
                                  precision="fp32")
    values.update(overrides)
    return tiny_args(train, dev, tmp_path / "out", tmp_path / "ckpt", **values)


def pair_config(tmp_path: Path, model: Path, **overrides: Any):
    return parse_args(pair_args(tmp_path, model, **overrides))


def reference_probabilities(run_dir: Path, rows: list[dict[str, str]], segments: bool) -> list[list[float]]:
    """The transformers model and tokenizer of the run's output, one row at a time, token type ids
    given exactly when the family has segment embeddings."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model = AutoModelForSequenceClassification.from_pretrained(run_dir).eval()
    out = []
    with torch.no_grad():
        for r in rows:
            enc = tokenizer(r["premise"], r["hypothesis"], truncation=True, max_length=MAX_SEQ_LENGTH,
                            return_token_type_ids=segments, return_tensors="pt")
            out.append(model(**enc).logits.softmax(-1)[0].tolist())
    return out


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_family_trains_and_predicts_what_the_transformers_model_computes(family, tmp_path):
    config = pair_config(tmp_path, model_dir(tmp_path, family))
    result = run(config)
    assert result.exit_code == job.EXIT_OK and result.global_step == 3
    assert 0 <= result.metrics["eval_accuracy"] <= 1

    rows = pair_rows(12)
    predictions = tmp_path / "predictions"
    rows_file = write_jsonl(tmp_path / "rows.jsonl", rows)
    # the pair column and max length come from the run's training_args.json
    assert main(["predict", "--model", str(tmp_path / "out"), "--input", str(rows_file), "--output", str(predictions),
                 "--text-column", "premise", "--batch-size", "5", "--precision", "fp32"]) == job.EXIT_OK
    got = [json.loads(line) for line in (predictions / layout.prediction_part(0)).read_text().splitlines()]
    expected = reference_probabilities(tmp_path / "out", rows, family.segments)
    for line, probabilities in zip(got, expected, strict=True):
        got_probabilities = [line["probabilities"][label] for label in LABELS]
        assert got_probabilities == pytest.approx(probabilities, abs=1e-5)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_training_pairs_carry_token_types_only_for_models_with_segment_embeddings(family, tmp_path):
    config = pair_config(tmp_path, model_dir(tmp_path, family))
    inputs = read_inputs(config, resolve_locations(config))
    for enc in (inputs.train_enc, inputs.eval_enc):
        assert enc is not None
        if family.segments:
            assert enc.token_type_ids is not None and {1} <= {t for row in enc.token_type_ids for t in row}
        else:
            assert enc.token_type_ids is None


def three_segment_tokenizer():
    """A tokenizer whose pair template gives the second text token type 2."""
    from tokenizers.processors import TemplateProcessing
    from transformers import BertTokenizerFast, PreTrainedTokenizerFast

    backend = BertTokenizerFast(vocab=str(VOCAB), do_lower_case=True).backend_tokenizer
    backend.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:2 [SEP]:2",
                                                special_tokens=[("[CLS]", 101), ("[SEP]", 102)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]")


def test_pair_token_types_beyond_the_models_segments_are_refused_before_training(tmp_path, capsys):
    bert = FAMILIES[0]
    model = model_dir(tmp_path, bert)
    three_segment_tokenizer().save_pretrained(model)
    assert main(pair_args(tmp_path, model)) == job.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("the tokenizer gives sentence pairs token type id 2 but the model has type_vocab_size 2 "
                            "(ids 0-1)"), err
    assert not (tmp_path / "out").exists() and not (tmp_path / "ckpt").exists()
    # Single texts have no second segment: the same model trains on them.
    single = pair_config(tmp_path, model, text_pair_column=None, output_uri=tmp_path / "single")
    assert run(single).exit_code == job.EXIT_OK


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.name in ("bert", "roberta", "albert")],
                         ids=lambda f: f.name)
def test_a_tokenized_store_gives_the_model_the_token_types_a_data_file_gives(family, tmp_path):
    from bert_train.prepare import main as prepare

    model = model_dir(tmp_path, family)
    from_file = pair_config(tmp_path, model)
    store = tmp_path / "store"
    assert prepare(["--input", from_file.train, "--output", str(store), "--model", str(model), "--text-column",
                    "premise", "--text-pair-column", "hypothesis", "--label-column", "gold", "--max-seq-length",
                    str(MAX_SEQ_LENGTH), "--workers", "1"]) == 0
    from_store = dataclasses.replace(from_file, train=str(store))
    memory = read_inputs(from_file, resolve_locations(from_file)).train_enc
    streamed = read_inputs(from_store, resolve_locations(from_store))
    assert memory is not None and streamed.store is not None and streamed.token_types == family.segments
    rows = streamed.store.rows_source(streamed.task, token_types=streamed.token_types).all()
    assert rows.input_ids == memory.input_ids
    assert rows.token_type_ids == memory.token_type_ids
    assert (rows.token_type_ids is not None) == family.segments


def test_continuing_a_fine_tuned_checkpoint_keeps_its_class_order(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    bert = FAMILIES[0]
    checkpoint = model_dir(tmp_path, bert, labels=["positive", "negative"])  # not the alphabetical order
    trained = AutoModelForSequenceClassification.from_pretrained(checkpoint)
    model = modeling.build_model(str(checkpoint), LABELS, 0)
    assert model.config.id2label == {0: "positive", 1: "negative"}
    assert torch.equal(model.classifier.weight, trained.classifier.weight)  # class i is still class i

    result = run(pair_config(tmp_path, checkpoint))
    assert result.exit_code == job.EXIT_OK
    assert json.loads((tmp_path / "out" / "label_map.json").read_text())["labels"] == ["positive", "negative"]
    assert json.loads((tmp_path / "out" / "config.json").read_text())["id2label"] == {"0": "positive",
                                                                                       "1": "negative"}


def test_a_checkpoint_fine_tuned_on_other_labels_takes_the_datas_order(tmp_path):
    checkpoint = model_dir(tmp_path, FAMILIES[0], labels=["spam", "ham"])
    model = modeling.build_model(str(checkpoint), LABELS, 0)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    config = pair_config(tmp_path, checkpoint)
    assert read_inputs(config, resolve_locations(config)).labels == LABELS
