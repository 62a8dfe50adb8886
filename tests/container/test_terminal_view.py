"""The trainer run by hand on a terminal: a progress bar for the person, EMF lines in a file."""

from __future__ import annotations

import io
import json

from bert_train.telemetry import EMF_FILE, Telemetry
from bertbatch_contract import job, metrics
from bertbatch_contract.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


PROGRESS = Progress(epoch=1, epochs=3, step=40, total_steps=120, loss=0.5432, samples_per_second=312.4,
                    eta_seconds=133)


def _emit(telemetry: Telemetry) -> None:
    telemetry.progress(PROGRESS)
    telemetry.metrics({metrics.TRAIN_LOSS.name: 0.5432})
    telemetry.line("[eval] step 40 epoch 1.00 eval_accuracy 0.8125")
    telemetry.close()


def test_on_a_terminal_outside_batch_the_person_sees_a_bar_and_no_emf(tmp_path):
    screen = FakeTerminal()
    telemetry = Telemetry(enabled=True, namespace="BertBatch", profile="local", run_id="r1", stream=screen,
                          local_output_dir=str(tmp_path / "out"), env={})
    _emit(telemetry)
    shown = screen.getvalue()
    assert "_aws" not in shown and "[progress]" not in shown
    assert "step 40/120" in shown and "loss 0.5432" in shown and "312.4 samples/s" in shown
    assert "[eval] step 40" in shown
    records = [json.loads(line) for line in (tmp_path / "out" / EMF_FILE).read_text().splitlines()]
    assert [r[metrics.TRAIN_LOSS.name] for r in records] == [0.5432]
    assert records[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "BertBatch"


def test_on_a_terminal_with_s3_output_the_emf_lines_are_dropped():
    screen = FakeTerminal()
    _emit(Telemetry(enabled=True, namespace="BertBatch", profile="local", run_id="r1", stream=screen,
                    local_output_dir=None, env={}))
    assert "_aws" not in screen.getvalue()


def test_under_batch_emf_and_progress_lines_stay_on_stdout_even_on_a_terminal(tmp_path):
    screen = FakeTerminal()
    telemetry = Telemetry(enabled=True, namespace="BertBatch", profile="dev", run_id="r1", stream=screen,
                          local_output_dir=str(tmp_path), env={job.ENV_BATCH_JOB_ID: "job-1"})
    _emit(telemetry)
    lines = screen.getvalue().splitlines()
    assert lines[0].startswith("[progress] epoch 1/3 step 40/120")
    assert json.loads(lines[1])[metrics.TRAIN_LOSS.name] == 0.5432
    assert not (tmp_path / EMF_FILE).exists()


def test_without_a_terminal_nothing_changes(tmp_path):
    pipe = io.StringIO()
    _emit(Telemetry(enabled=True, namespace="BertBatch", profile="local", run_id="r1", stream=pipe,
                    local_output_dir=str(tmp_path), env={}))
    assert pipe.getvalue().splitlines()[0].startswith("[progress]")
    assert not (tmp_path / EMF_FILE).exists()
