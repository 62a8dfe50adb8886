"""EMF and progress parsing, and the progress line watch draws (no AWS)."""

from __future__ import annotations

import json

from bertbatch.jobs.job_follower import Display
from bertbatch.jobs.log_streams import TrainingState, bar, parse_emf, render
from bertbatch_contract.metrics import EVAL_ACCURACY, GPU_UTILIZATION, TRAIN_LOSS, emf_line
from bertbatch_contract.progress import Progress, format_progress


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


def progress(step: int) -> Progress:
    return Progress(epoch=1, epochs=2, step=step, total_steps=10, loss=0.25, samples_per_second=12.5, eta_seconds=65)


def test_display_prints_plain_lines_without_a_terminal(capsys):
    d = Display(live=False)
    state = TrainingState(progress=progress(5))
    d.progress(state)
    d.progress(state)  # unchanged: not printed again
    d.event("SUCCEEDED")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("epoch 1/2 [##########----------]  50% step 5/10 loss 0.2500")
    assert len(out) == 2 and out[1].endswith(" SUCCEEDED") and "\x1b" not in "".join(out)


def test_display_draws_a_live_bar_on_a_terminal(monkeypatch):
    import io

    from rich.console import Console

    from bertbatch.ui import terminal

    screen = io.StringIO()
    monkeypatch.setattr(terminal, "console", lambda err=False: Console(
        file=screen, force_terminal=True, width=120, color_system=None, markup=False))
    d = Display(live=True)
    d.progress(TrainingState(progress=progress(4), metrics={EVAL_ACCURACY.name: 0.75}))
    d.event("RUNNING -> SUCCEEDED")
    d.end()
    text = screen.getvalue()
    assert "\x1b[" in text  # redrawn in place (cursor movements), not printed line after line
    for shown in ("epoch 1/2", "4/10", "loss 0.2500", "12.5 samples/s", "ETA 0:01:05", "EvalAccuracy 0.75",
                  "RUNNING -> SUCCEEDED"):
        assert shown in text, shown
