"""EMF and progress parsing, and the progress line watch draws (no AWS)."""

from __future__ import annotations

import json

from bert_train.metrics import EVAL_ACCURACY, GPU_UTILIZATION, TRAIN_LOSS, emf_line
from bert_train.progress import Progress, format_progress
from bertbatch.logs import TrainingState, bar, parse_emf, render
from bertbatch.watch import Display


def test_parse_emf_reads_contract_metrics_only():
    line = emf_line({TRAIN_LOSS.name: 0.25, EVAL_ACCURACY.name: 0.75}, namespace="N", dimensions={"Profile": "p"})
    assert parse_emf(line) == {TRAIN_LOSS.name: 0.25, EVAL_ACCURACY.name: 0.75}
    record = json.loads(line)
    record["_aws"]["CloudWatchMetrics"][0]["Metrics"].append({"Name": "Other", "Unit": "None"})
    record["Other"] = 1.0
    assert parse_emf(json.dumps(record)) == {TRAIN_LOSS.name: 0.25, EVAL_ACCURACY.name: 0.75}


def test_parse_emf_ignores_other_lines():
    assert parse_emf("plain text") is None
    assert parse_emf('{"no_aws": 1}') is None
    assert parse_emf('{"_aws": broken') is None


def test_state_and_render():
    state = TrainingState()
    assert not state.feed("loading")
    assert state.feed("2026-11-21 INFO " + format_progress(
        Progress(epoch=2, epochs=4, step=25, total_steps=100, loss=1.5, samples_per_second=50.0, eta_seconds=3725)))
    assert state.feed(emf_line({EVAL_ACCURACY.name: 0.8125, GPU_UTILIZATION.name: 97.0}, namespace="N", dimensions={}))
    line = render(state)
    assert line.startswith("epoch 2/4 [#####---------------]  25% step 25/100 loss 1.5000 50.0 samples/s ETA 1:02:05")
    assert line.endswith("| EvalAccuracy 0.8125 GpuUtilization 97")


def test_bar_bounds():
    assert bar(0.0, 4) == "[----]" and bar(1.5, 4) == "[####]" and bar(0.5, 4) == "[##--]"


def test_display_redraws_in_place_on_a_terminal(capsys):
    d = Display(tty=True)
    d.progress("epoch 1/2 long line")
    d.progress("epoch 1/2 long line")  # unchanged: not drawn again
    d.progress("epoch 2/2")
    d.event("SUCCEEDED")
    out = capsys.readouterr().out
    assert out.startswith("\repoch 1/2 long line\repoch 2/2" + " " * 10 + "\n")  # padded over the old line
    assert out.count("epoch 1/2") == 1 and out.endswith(" SUCCEEDED\n")
