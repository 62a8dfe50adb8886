"""`compare` and `runs --sweep`: runs side by side from S3 and from local output directories,
csv/json, and the --plot chart."""

from __future__ import annotations

import csv
import io
import json

import pytest

from bertbatch.runs import comparison as compare
from bertbatch.runs import metric_chart as plot
from bertbatch_contract import layout

from .helpers import one_line_error


def metrics(run_id: str, accuracies: list[float], steps_per_eval: int = 100) -> dict:
    history = [{"step": steps_per_eval * (i + 1), "epoch": i + 1, "eval_accuracy": a, "eval_f1": a - 0.01,
                "eval_loss": 1 - a} for i, a in enumerate(accuracies)]
    return {"run_id": run_id, "global_step": steps_per_eval * len(accuracies), "train_loss": 0.3,
            "eval_accuracy": accuracies[-1], "eval_f1": accuracies[-1] - 0.01, "eval_loss": 1 - accuracies[-1],
            "train_seconds": 90.0, "history": history}


def put(platform, run_id: str, accuracies: list[float], learning_rate: float) -> None:
    args = {"learning_rate": learning_rate, "epochs": 3, "batch_size": 32}
    platform.put_run(run_id, metrics(run_id, accuracies),
                     {layout.run_prefix(run_id) + layout.TRAINING_ARGS_FILE: json.dumps(args).encode()})


def test_compare_marks_the_best_run_and_shows_what_differs(platform, bb):
    put(platform, "lr-a", [0.80, 0.85], 2e-5)
    put(platform, "lr-b", [0.88, 0.86], 5e-5)  # best over its evaluations: 0.88 at step 100
    r = bb("compare", "lr-a", "lr-b")
    assert r.exit_code == 0, r.output
    header, *rows = r.output.splitlines()
    assert "LEARNING_RATE" in header and "EPOCHS" not in header and "COST" in header
    by_run = {row.split()[0] if not row.startswith("*") else row.split()[1]: row for row in rows[:2]}
    assert by_run["lr-b"].startswith("*") and not by_run["lr-a"].startswith("*")
    assert "2e-5" in by_run["lr-a"] and "5e-5" in by_run["lr-b"]  # as the command line takes them, not 0.0000
    assert "best eval_accuracy: lr-b" in r.output

    records = [json.loads(line) for line in bb("compare", "lr-a", "lr-b", "-o", "json").output.splitlines()]
    assert [(x["run_id"], x["best"]) for x in records] == [("lr-a", False), ("lr-b", True)]
    assert records[1]["best_metric"] == {"metric": "eval_accuracy", "value": 0.88, "step": 100}
    assert records[0]["hyperparameters"] == {"learning_rate": 2e-5}

    # --metric eval_loss: lower is better -> lr-b again (0.12), but as a minimum
    r = bb("compare", "lr-a", "lr-b", "--metric", "eval_loss", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(r.output)))
    assert [row["best"] for row in table] == ["False", "True"]
    assert float(table[1]["best_metric.value"]) == pytest.approx(0.12)
    assert table[0]["hyperparameters.learning_rate"] == "2e-05"


def test_compare_a_local_run_with_a_platform_run(platform, bb, tmp_path):
    put(platform, "on-batch", [0.7], 2e-5)
    local = tmp_path / "local-runs" / "runs" / "laptop"
    local.mkdir(parents=True)
    (local / layout.METRICS_FILE).write_text(json.dumps(metrics("laptop", [0.75])))
    (local / layout.TRAINING_ARGS_FILE).write_text(json.dumps({"learning_rate": 3e-5, "epochs": 3}))
    records = [json.loads(x) for x in bb("compare", "on-batch", str(local), "-o", "json").output.splitlines()]
    assert [(x["run_id"], x["source"], x["best"]) for x in records] == [("on-batch", "s3", False),
                                                                       ("laptop", "local", True)]
    assert records[1]["duration_seconds"] == 90.0 and records[1]["attempts"] is None


def test_compare_json_carries_each_runs_efficiency(platform, bb):
    platform.put_run("gpu", {**metrics("gpu", [0.8]), "tokens_per_second": 5000.0, "mfu": 0.35,
                             "gpu_name": "NVIDIA L4", "gpu_peak_tflops": 121.0, "gpu_memory_peak_mb": 2048.0})
    put(platform, "older", [0.7], 2e-5)  # a metrics.json from before MFU
    records = [json.loads(x) for x in bb("compare", "gpu", "older", "-o", "json").output.splitlines()]
    gpu, older = (r["efficiency"] for r in records)
    assert (gpu["tokens_per_second"], gpu["mfu"], gpu["gpu_name"], gpu["gpu_memory_peak_mb"]) == (
        5000.0, 0.35, "NVIDIA L4", 2048.0)
    assert gpu["mfu_unavailable"] is None and set(older.values()) == {None}


def test_compare_unknown_run_and_bad_plot_path(platform, bb, tmp_path):
    one_line_error(bb("compare", "nope"), "no such run: nope")
    one_line_error(bb("compare", "x", "--plot", str(tmp_path / "chart.svg")), "--plot", ".png")
    one_line_error(bb("compare", "x", "--plot", str(tmp_path / "missing" / "c.png")), "no such directory")


def test_plot_draws_one_line_per_run(platform, bb, tmp_path):
    put(platform, "p-a", [0.8, 0.85, 0.86], 2e-5)
    put(platform, "p-b", [0.7, 0.9], 5e-5)
    out = tmp_path / "curves.png"
    r = bb("compare", "p-a", "p-b", "--plot", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000
    loaded = [compare.Run("p-a", "s3", metrics("p-a", [0.8, 0.85, 0.86]), {}),
              compare.Run("p-b", "s3", metrics("p-b", [0.7, 0.9]), {})]
    fig = plot.figure(loaded, "eval_accuracy")
    (axes,) = fig.axes  # no train-loss history in metrics.json yet: one axes
    assert [line.get_label() for line in axes.get_lines()] == ["p-a", "p-b"]
    assert list(axes.get_lines()[0].get_xdata()) == [100, 200, 300]
    loaded[0].metrics["train_history"] = [{"step": 10, "train_loss": 0.6}, {"step": 20, "train_loss": 0.5}]
    assert len(plot.figure(loaded, "eval_accuracy").axes) == 2


def test_the_train_loss_curve_comes_from_the_evaluation_records():
    """The trainer records the mean train loss of each evaluation window in the history."""
    record = metrics("p-a", [0.8, 0.85])
    for h, loss in zip(record["history"], [0.65, 0.4], strict=True):
        h["train_loss"] = loss
    fig = plot.figure([compare.Run("p-a", "s3", record, {})], "eval_accuracy")
    eval_axes, train_axes = fig.axes
    assert list(train_axes.get_lines()[0].get_ydata()) == [0.65, 0.4]
    assert list(train_axes.get_lines()[0].get_xdata()) == list(eval_axes.get_lines()[0].get_xdata())


def test_runs_sweep_compares_the_children(platform, bb):
    put(platform, "sweep1-0", [0.81], 2e-5)
    put(platform, "sweep1-1", [0.84], 3e-5)
    put(platform, "sweep10-0", [0.99], 3e-5)  # another sweep whose id starts the same
    r = bb("runs", "--sweep", "sweep1", "-o", "json")
    assert r.exit_code == 0, r.output
    records = [json.loads(x) for x in r.output.splitlines()]
    assert [(x["run_id"], x["best"]) for x in records] == [("sweep1-0", False), ("sweep1-1", True)]
    one_line_error(bb("runs", "--sweep", "nosuch"), "--sweep nosuch: no children")
    one_line_error(bb("runs", "-o", "csv"), "only with --sweep")


def _local_run(root, run_id: str, metrics: dict):
    directory = root / run_id
    directory.mkdir(parents=True)
    (directory / layout.METRICS_FILE).write_text(json.dumps({"run_id": run_id, **metrics}))
    return str(directory)


def test_per_class_shows_each_runs_classes_and_confusion_matrix(platform, bb, tmp_path):
    single = _local_run(tmp_path, "sentiment", {
        "problem_type": "single_label_classification", "eval_accuracy": 0.75, "history": [],
        "per_class": {"neg": {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1},
                      "pos": {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3}},
        "confusion_matrix": {"labels": ["neg", "pos"], "counts": [[1, 0], [1, 2]]}})
    multi = _local_run(tmp_path, "moderation", {
        "problem_type": "multi_label_classification", "eval_accuracy": 0.5, "history": [],
        "per_label": {"toxic": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 10}}})
    r = bb("compare", single, multi, "--per-class")
    assert r.exit_code == 0, r.output
    text = r.output.split("sentiment: per class")[1]
    neg_row = next(line for line in text.splitlines() if line.startswith("neg"))
    assert neg_row.split() == ["neg", "0.5000", "1.0000", "0.6667", "1", "1", "0"]
    assert "-> neg" in text and "-> pos" in text
    assert "moderation: per label, at its tuned threshold" in r.output and "toxic" in r.output.split("moderation")[-1]
    records = [json.loads(x) for x in bb("compare", single, multi, "-o", "json").output.splitlines()]
    assert records[0]["confusion_matrix"]["counts"] == [[1, 0], [1, 2]] and records[1]["confusion_matrix"] is None
    assert records[1]["per_class"]["toxic"]["f1"] == 0.85 and records[1]["problem_type"] == "multi_label_classification"
    assert "per class" not in bb("compare", single, multi).output  # only when asked


def test_regression_runs_are_best_at_the_lowest_error(platform, bb, tmp_path):
    runs = [_local_run(tmp_path, name, {"problem_type": "regression", "eval_mse": mse,
                                        "history": [{"step": 10, "eval_mse": mse, "eval_pearson": 1 - mse}]})
            for name, mse in (("reg-a", 0.4), ("reg-b", 0.2))]
    assert "best eval_mse: reg-b" in bb("compare", *runs, "--metric", "eval_mse").output
    assert "best eval_pearson: reg-b" in bb("compare", *runs, "--metric", "eval_pearson").output
