"""Problem types: multi-label and regression data train, evaluate and predict end to end; labels
read per type with one-line errors; the metrics checked against numbers worked out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bert_train import data, tasks
from bert_train.__main__ import main
from bert_train.config import BadInput
from bert_train.prepare import main as prepare
from bert_train.tasks import MULTI_LABEL, REGRESSION, SINGLE_LABEL, Task
from bertbatch_contract import hyperparameters, job, layout
from bertbatch_contract import tasks as contract
from bertbatch_contract.hyperparameters import InvalidHyperparameter

from .conftest import VOCAB, read_sst2, tiny_args, write_tsv

# --- labels ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "separator", "text"), [
    (["toxic", "insult"], ",", '["insult", "toxic"]'),  # sorted
    (["toxic", "toxic", 3], ",", '["3", "toxic"]'),  # de-duplicated, integers as text
    ([], ",", "[]"),  # a row with no label
    ("toxic, insult", ",", '["insult", "toxic"]'),  # a CSV field, split and stripped
    ("toxic|insult", "|", '["insult", "toxic"]'),
    ("", ",", "[]"),
])
def test_multi_label_values_become_one_canonical_text(value, separator, text):
    assert contract.label_text(value, MULTI_LABEL, separator) == text
    assert contract.label_list(text) == sorted({str(x).strip() for x in (value if isinstance(value, list) else
                                                                          value.split(separator) if value else [])})


@pytest.mark.parametrize(("value", "problem_type", "message"), [
    (["toxic", "insult"], SINGLE_LABEL, "got a list ['toxic', 'insult']; for several labels a row pass "
                                        "--problem-type multi_label_classification"),
    (0.5, SINGLE_LABEL, "got 0.5; for numeric targets pass --problem-type regression"),
    (None, MULTI_LABEL, "empty label field"),
    (["ok", ""], MULTI_LABEL, "each label must be a non-empty string or an integer (got '' in ['ok', ''])"),
    ([True], MULTI_LABEL, "each label must be a non-empty string or an integer"),
    ("high", REGRESSION, "label must be a number (got 'high')"),
    ("nan", REGRESSION, "label must be a finite number"),
    ([1.0], REGRESSION, "label must be a number"),
])
def test_a_label_the_problem_type_cannot_read_is_refused_in_words(value, problem_type, message):
    with pytest.raises(contract.LabelError, match=_escape(message)):
        contract.label_text(value, problem_type, ",")


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_regression_values_read_from_json_numbers_and_csv_strings():
    assert [contract.label_text(v, REGRESSION, ",") for v in (3, 0.25, " -1.5 ", "2e-1")] == ["3.0", "0.25", "-1.5",
                                                                                            "0.2"]


def test_targets_per_problem_type():
    assert Task(SINGLE_LABEL, ("neg", "pos")).target("pos") == 1
    multi = Task(MULTI_LABEL, ("insult", "threat", "toxic"))
    assert multi.target('["insult", "toxic"]') == (1.0, 0.0, 1.0) and multi.target("[]") == (0.0, 0.0, 0.0)
    assert multi.target_array(['["threat"]', "[]"]).tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert Task(REGRESSION, ()).target_array(["0.5", "-2.0"]).tolist() == [0.5, -2.0]
    assert multi.unknown(['["insult"]', '["spam", "toxic"]']) == "spam"


def test_balanced_class_weights():
    counts = {"a": 6, "b": 2}
    # scikit-learn's 'balanced': rows / (classes * count)
    assert tasks.balanced_weights(SINGLE_LABEL, ["a", "b"], counts, 8) == (8 / 12, 8 / 4)
    # BCE's pos_weight: negatives / positives per label; a label never seen weighs 1
    assert tasks.balanced_weights(MULTI_LABEL, ["a", "b", "c"], counts, 10) == (4 / 6, 8 / 2, 1.0)


def test_losses_per_problem_type_and_class_weights():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]])
    single = Task(SINGLE_LABEL, ("a", "b"), class_weights=(1.0, 3.0))
    labels = torch.tensor([0, 1, 1])
    expected = torch.nn.functional.cross_entropy(logits, labels, reduction="none") * torch.tensor([1.0, 3.0, 3.0])
    assert float(single.loss(logits, labels)) == pytest.approx(float(expected.sum() / 7))  # weighted mean
    multi = Task(MULTI_LABEL, ("a", "b"), class_weights=(2.0, 1.0))
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    p = torch.sigmoid(logits)
    pos_weight = torch.tensor([2.0, 1.0])
    manual = -(pos_weight * targets * torch.log(p) + (1 - targets) * torch.log(1 - p)).mean()
    assert float(multi.loss(logits, targets)) == pytest.approx(float(manual), rel=1e-5)
    regression = Task(REGRESSION, ())
    assert float(regression.loss(torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 2.0]))) == pytest.approx(1.0)


# --- metrics, against numbers worked out by hand ------------------------------------------------------


def test_single_label_metrics_per_class_and_the_confusion_matrix():
    task = Task(SINGLE_LABEL, ("a", "b", "c"))
    truth = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    logits = np.eye(3)[predicted]
    result = tasks.evaluate(task, logits, truth, loss=0.25)
    assert result.details["confusion_matrix"]["counts"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    per_class = result.details["per_class"]
    assert per_class["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert per_class["b"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8), "support": 2}
    assert per_class["c"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert result.scalars == {"eval_accuracy": pytest.approx(4 / 6), "eval_f1": pytest.approx((0.5 + 0.8 + 2 / 3) / 3),
                              "eval_loss": 0.25}


def test_multi_label_metrics_and_thresholds_tuned_per_label():
    task = Task(MULTI_LABEL, ("x", "y"))
    # x is positive when its probability is >= 0.3 (0.5 misses one); y is predicted right at 0.5.
    probabilities = np.array([[0.35, 0.9], [0.8, 0.1], [0.2, 0.7], [0.1, 0.2]])
    truth = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=np.float32)
    logits = np.log(probabilities / (1 - probabilities))
    result = tasks.evaluate(task, logits, truth, loss=0.5)
    # at 0.5: x has tp 1, fn 1 (f1 2/3); y has tp 2 (f1 1); micro: tp 3, fn 1 -> 6/7
    assert result.scalars == {"eval_micro_f1": pytest.approx(6 / 7), "eval_f1": pytest.approx((2 / 3 + 1) / 2),
                              "eval_accuracy": 0.75, "eval_loss": 0.5}
    assert 0.2 < result.details["thresholds"]["x"] <= 0.35 and result.details["thresholds"]["y"] == 0.5
    assert result.details["tuned"] == {"eval_micro_f1": 1.0, "eval_f1": 1.0, "eval_accuracy": 1.0}
    assert result.details["per_label"]["x"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}


def test_a_label_without_positives_keeps_the_default_threshold():
    thresholds = tasks.tune_thresholds(np.array([[0.9], [0.1]]), np.array([[False], [False]]))
    assert thresholds.tolist() == [0.5]


def test_regression_metrics_with_ties_in_the_ranks():
    predicted = np.array([1.0, 2.0, 2.0, 4.0])
    truth = np.array([1.0, 3.0, 2.0, 5.0])
    result = tasks.evaluate(Task(REGRESSION, ()), predicted[:, None], truth, loss=0.5)
    assert result.scalars["eval_mse"] == pytest.approx((0 + 1 + 0 + 1) / 4)
    assert result.scalars["eval_mae"] == pytest.approx(0.5)
    assert result.scalars["eval_pearson"] == pytest.approx(np.corrcoef(predicted, truth)[0, 1])
    # ranks: predicted (1, 2.5, 2.5, 4), truth (1, 3, 2, 4)
    assert result.scalars["eval_spearman"] == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4], [1, 3, 2, 4])[0, 1])
    assert tasks.evaluate(Task(REGRESSION, ()), np.ones((3, 1)), truth[:3], loss=0.0).scalars["eval_pearson"] == 0.0


# --- the table: settings that depend on the problem type ---------------------------------------------


@pytest.mark.parametrize(("values", "message"), [
    ({"problem_type": REGRESSION, "early_stopping_metric": "eval_accuracy"},
     "--early-stopping-metric eval_accuracy: a regression run reports eval_loss, eval_mse"),
    ({"early_stopping_metric": "eval_mse"}, "--early-stopping-metric eval_mse: a single_label_classification run"),
    ({"problem_type": REGRESSION, "class_weights": "balanced"}, "--class-weights balanced: a regression run has no"),
    ({"problem_type": "multi"}, "--problem-type multi: must be one of single_label_classification"),
])
def test_settings_that_do_not_fit_the_problem_type_are_refused(values, message):
    with pytest.raises(InvalidHyperparameter, match=_escape(message)):
        hyperparameters.validate(values)


def test_the_default_metric_follows_the_problem_type():
    assert [hyperparameters.metric_of(p, None) for p in contract.PROBLEM_TYPES] == [
        "eval_accuracy", "eval_micro_f1", "eval_loss"]
    assert hyperparameters.metric_of(REGRESSION, "eval_spearman") == "eval_spearman"


# --- end to end ---------------------------------------------------------------------------------------


def _multi_labels(row: dict) -> list[str]:
    words = row["sentence"].split()
    return (["positive"] if int(row["label"]) == 1 else []) + (["long"] if len(words) > 18 else [])


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def multi_label_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("multi")
    train = [{"sentence": r["sentence"], "label": _multi_labels(r)} for r in read_sst2("train.tsv")[:256]]
    dev = [{"sentence": r["sentence"], "label": _multi_labels(r)} for r in read_sst2("dev.tsv")[:64]]
    return _write_jsonl(d / "train.jsonl", train), _write_jsonl(d / "dev.jsonl", dev)


@pytest.fixture(scope="module")
def regression_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("regression")

    def score(r: dict) -> str:
        return f"{int(r['label']) * 4 + len(r['sentence'].split()) / 20:.3f}"

    train = [{"sentence": r["sentence"], "label": score(r)} for r in read_sst2("train.tsv")[:256]]
    dev = [{"sentence": r["sentence"], "label": score(r)} for r in read_sst2("dev.tsv")[:64]]
    return write_tsv(d / "train.tsv", train), write_tsv(d / "dev.tsv", dev)


def _train(train: Path, dev: Path, out: Path, **overrides) -> dict:
    args = tiny_args(train, dev, out, out.parent / "ckpt", **{"epochs": 2, "batch_size": 16, **overrides})
    assert main(args) == job.EXIT_OK
    return json.loads((out / layout.METRICS_FILE).read_text())


def _predict(model: Path, rows: Path, out: Path) -> list[dict]:
    assert main(["predict", "--model", str(model), "--input", str(rows), "--output", str(out),
                 "--precision", "fp32"]) == job.EXIT_OK
    return [json.loads(line) for line in (out / layout.prediction_part(0)).read_text().splitlines()]


def _model_outputs(model: Path, texts: list[str]) -> torch.Tensor:
    """The saved model run directly by transformers: the reference."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    net = AutoModelForSequenceClassification.from_pretrained(model).eval()
    with torch.no_grad():
        return torch.cat([net(**tokenizer(t, truncation=True, max_length=64, return_tensors="pt")).logits
                          for t in texts])


def test_multi_label_trains_tunes_thresholds_and_predicts_every_row(multi_label_data, tmp_path):
    train, dev = multi_label_data
    out = tmp_path / "out"
    metrics = _train(train, dev, out, problem_type=MULTI_LABEL, class_weights="balanced")
    assert metrics["problem_type"] == MULTI_LABEL
    for name in contract.METRICS[MULTI_LABEL]:
        assert isinstance(metrics[name], float), name
    assert set(metrics["per_label"]) == {"long", "positive"} and set(metrics["thresholds"]) == {"long", "positive"}
    assert metrics["best"]["metric"] == "eval_micro_f1"
    assert all(name in record for record in metrics["history"] for name in contract.METRICS[MULTI_LABEL])
    label_map = json.loads((out / layout.LABEL_MAP_FILE).read_text())
    assert label_map["problem_type"] == MULTI_LABEL and label_map["thresholds"] == metrics["thresholds"]
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == MULTI_LABEL  # transformers reads the outputs as sigmoid too

    rows = [json.loads(line) for line in dev.read_text().splitlines()]
    got = _predict(out, dev, tmp_path / "pred")
    assert [g["row"] for g in got] == list(range(len(rows)))
    expected = torch.sigmoid(_model_outputs(out, [r["sentence"] for r in rows]))
    labels = label_map["labels"]
    for g, p in zip(got, expected, strict=True):
        assert [g["probabilities"][x] for x in labels] == pytest.approx(p.tolist(), abs=1e-5)
        assert g["labels"] == [x for x, q in zip(labels, p.tolist(), strict=True) if q >= label_map["thresholds"][x]]


def test_regression_trains_and_predicts_the_value(regression_data, tmp_path):
    train, dev = regression_data
    out = tmp_path / "out"
    metrics = _train(train, dev, out, problem_type=REGRESSION)
    assert metrics["problem_type"] == REGRESSION and metrics["eval_accuracy"] is None
    assert metrics["eval_mse"] == pytest.approx(metrics["eval_loss"], rel=1e-4)
    assert all(math.isfinite(metrics[name]) for name in contract.METRICS[REGRESSION])
    assert metrics["best"]["metric"] == "eval_loss" and metrics["history"][-1]["eval_mse"] == metrics["eval_mse"]
    rows = [line.split("\t")[0] for line in dev.read_text().splitlines()[1:]]
    got = _predict(out, dev, tmp_path / "pred")
    expected = _model_outputs(out, rows).view(-1)
    assert [g["value"] for g in got] == pytest.approx(expected.tolist(), abs=1e-4)
    truth = [float(line.split("\t")[1]) for line in dev.read_text().splitlines()[1:]]
    assert np.mean((np.array([g["value"] for g in got]) - truth) ** 2) == pytest.approx(metrics["eval_mse"], rel=1e-3)


def test_single_label_metrics_json_has_per_class_numbers_and_the_confusion_matrix(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", read_sst2("train.tsv")[:128])
    dev = write_tsv(tmp_path / "dev.tsv", read_sst2("dev.tsv")[:48])
    metrics = _train(train, dev, tmp_path / "out", epochs=1)
    counts = metrics["confusion_matrix"]["counts"]
    assert metrics["confusion_matrix"]["labels"] == ["0", "1"] and sum(map(sum, counts)) == 48
    assert metrics["eval_accuracy"] == pytest.approx((counts[0][0] + counts[1][1]) / 48)
    assert {x["support"] for x in metrics["per_class"].values()} == {sum(counts[0]), sum(counts[1])}


def test_a_multi_label_store_trains_like_the_file(multi_label_data, tmp_path):
    train, dev = multi_label_data
    store = tmp_path / "store"
    assert prepare(["--input", str(train), "--output", str(store), "--model", "random:tiny", "--vocab", str(VOCAB),
                    "--max-seq-length", "64", "--workers", "1", "--problem-type", MULTI_LABEL]) == 0
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["problem_type"] == MULTI_LABEL and manifest["labels"] == ["long", "positive"]
    from_file = _train(train, dev, tmp_path / "file", problem_type=MULTI_LABEL, epochs=1)
    from_store = _train(store, dev, tmp_path / "store-run", problem_type=MULTI_LABEL, epochs=1)
    assert from_store["per_label"].keys() == from_file["per_label"].keys()
    assert from_store["eval_loss"] == pytest.approx(from_file["eval_loss"], rel=0.2)  # same data, another order


def test_a_store_prepared_for_another_problem_type_is_refused(multi_label_data, tmp_path, capsys):
    train, dev = multi_label_data
    store = tmp_path / "store"
    assert prepare(["--input", str(train), "--output", str(store), "--model", "random:tiny", "--vocab", str(VOCAB),
                    "--max-seq-length", "64", "--workers", "1", "--problem-type", MULTI_LABEL]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(tiny_args(store, dev, out, tmp_path / "ckpt")) == job.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prepared with --problem-type multi_label_classification" in err[0]
    assert not out.exists()


@pytest.mark.parametrize(("problem_type", "text", "message"), [
    (MULTI_LABEL, '{"sentence": "a", "label": ["x"]}\n{"sentence": "b", "label": ["y", null]}\n',
     "train.jsonl line 2: each label must be a non-empty string or an integer (got None in ['y', None])"),
    (SINGLE_LABEL, '{"sentence": "a", "label": "x"}\n{"sentence": "b", "label": ["x", "y"]}\n',
     "train.jsonl line 2: label must be a string or an integer (got a list"),
    (REGRESSION, '{"sentence": "a", "label": 1.5}\n{"sentence": "b", "label": "lots"}\n',
     "train.jsonl line 2: label must be a number (got 'lots')"),
])
def test_a_bad_label_is_one_line_naming_the_file_and_line(problem_type, text, message, tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    train.write_text(text)
    out = tmp_path / "out"
    assert main(tiny_args(train, "", out, tmp_path / "ckpt", problem_type=problem_type)) == job.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_eval_labels_unknown_to_training_are_refused_per_label():
    task = Task(MULTI_LABEL, ("x", "y"))
    data.check_eval_labels([data.Example("a", None, '["x"]', 2)], task, "dev.jsonl")
    with pytest.raises(BadInput, match=r"dev.jsonl line 7: label 'z' does not appear in the training data"):
        data.check_eval_labels([data.Example("a", None, '["x", "z"]', 7)], task, "dev.jsonl")


def test_chunked_long_texts_train_with_the_tasks_loss_on_pooled_logits(regression_data, tmp_path):
    train, dev = regression_data
    metrics = _train(train, dev, tmp_path / "out", problem_type=REGRESSION, long_text="chunk", max_seq_length=16,
                     chunk_overlap=4, epochs=1)
    assert metrics["truncated_rows"]["train"] > 0  # rows split into windows
    assert metrics["eval_mse"] == pytest.approx(metrics["eval_loss"], rel=1e-4)  # MSE, not cross-entropy
    assert all(math.isfinite(metrics[name]) for name in contract.METRICS[REGRESSION])
