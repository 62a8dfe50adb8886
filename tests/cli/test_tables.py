"""Every table fits 80 columns: cells wrap between words, low-priority columns are dropped (and
named under the table), and no instance name, number or id is broken (`bertbatch.ui.terminal`)."""

from __future__ import annotations

import json

import pytest

from bertbatch.ui import terminal

from .helpers import FIRST, SECOND, put_local_run, submit

# The platform's jobs cannot reach the internet: the default model must be staged to submit.
pytestmark = pytest.mark.usefixtures("default_model_staged")

WIDTH = 80


def fits(result, width: int = WIDTH, *, plain: bool = True) -> str:
    """The output, after checking the command worked and that no line is wider than `width`
    (`plain`: the text a pipe gets, without trailing spaces either)."""
    assert result.exit_code == 0, result.output
    too_wide = [line for line in result.output.splitlines() if len(line) > width]
    assert too_wide == [], "\n".join(too_wide)
    assert not plain or all(line == line.rstrip() for line in result.output.splitlines())
    return result.output


def dropped(output: str) -> list[str]:
    """The columns the line under the table names (wrapped or not)."""
    text = " ".join(output.split())
    assert "Not shown at" in text, output
    named = text.split("columns: ", 1)[1].split(" (a wider terminal", 1)[0]
    return named.split(", ")


# --- the fitting itself -----------------------------------------------------------------------------
def test_a_table_that_fits_keeps_its_natural_widths():
    fitted = terminal.fit(("A", "B"), [["x", "y"]], 80, drop=("B",))
    assert (fitted.columns, fitted.widths, fitted.dropped) == ([0, 1], None, [])
    assert terminal.fit(("A", "B"), [["x" * 500, "y"]], None).widths is None  # a pipe: no limit


def test_cells_wrap_between_words_before_any_column_is_dropped():
    headers, rows = ("NAME", "DETAIL"), [["check-one", "the queue is VALID and ENABLED " * 4]]
    fitted = terminal.fit(headers, rows, 40, drop=("DETAIL",))
    assert fitted.dropped == [] and fitted.widths is not None and sum(fitted.widths) + 2 <= 40
    wrapped = terminal.wrap_cell(rows[0][1], fitted.widths[1])
    assert all(len(line) <= fitted.widths[1] for line in wrapped.splitlines())
    assert wrapped.split() == rows[0][1].split()  # every word whole


def test_columns_go_in_the_callers_order_only_as_far_as_needed():
    headers = ("ID", "LOW", "MID", "HIGH")
    rows = [["i" * 20, "l" * 20, "m" * 20, "h" * 20]]
    fitted = terminal.fit(headers, rows, 50, drop=("NOT-A-COLUMN", "LOW", "MID", "HIGH"))
    assert fitted.dropped == ["LOW", "MID"] and fitted.columns == [0, 3]
    # A wide column dropped late makes room for a narrow one dropped earlier: it comes back.
    rows = [["i" * 20, "l" * 5, "m" * 40, "h" * 20]]
    fitted = terminal.fit(headers, rows, 50, drop=("LOW", "MID", "HIGH"))
    assert fitted.dropped == ["MID"] and fitted.columns == [0, 1, 3]


def test_headers_break_after_an_underscore_values_never_inside_a_word():
    assert terminal.wrap_cell("EVAL_ACCURACY", 8) == "EVAL_\nACCURACY"
    assert terminal.wrap_cell("1x A10G", 5) == "1x\nA10G"
    # The last resort, a word wider than the whole table: after '/', then anywhere.
    assert terminal.wrap_cell("s3://bucket/runs/a/model.safetensors", 20).splitlines() == [
        "s3://bucket/runs/a/", "model.safetensors"]
    assert terminal.wrap_cell("s3://a-bucket-name-too-long-for-any-line/x", 12).splitlines() == [
        "s3://a-bucke", "t-name-too-l", "ong-for-any-", "line/x"]


# --- every table command at 80 columns --------------------------------------------------------------
def test_estimate_fits_80_columns(bb):
    out = fits(bb("estimate", "--rows", "67000", "--epochs", "3", "--offline", width=WIDTH))
    for value in ("p4d.24xlarge", "g5.12xlarge", "g6e.xlarge", "2,700,288", "55.040", "on-demand", "8x A100"):
        assert value in out, value
    assert dropped(out) == ["FIGURE"]
    assert "Would choose: g6.xlarge spot on queue spot-first" in out
    wide = bb("estimate", "--rows", "67000", "--epochs", "3", "--offline", width=200).output
    assert "FIGURE" in wide and "Not shown" not in wide


def test_estimate_with_placeability_fits_80_columns(platform, bb):
    out = fits(bb("estimate", "--rows", "67349", width=WIDTH))
    assert "training.gpu_instance_types" in out and "p5.48xlarge" in out and "PLACEABLE" in out
    assert dropped(out)[0] == "FIGURE"


def test_compare_fits_80_columns(tmp_path, monkeypatch, bb):
    monkeypatch.chdir(tmp_path)
    put_local_run(FIRST, 0.8123, 2e-5)
    put_local_run(SECOND, 0.85, 5e-5)
    out = fits(bb("compare", FIRST, SECOND, "--local", width=WIDTH))
    for value in (FIRST, SECOND, "2e-5", "5e-5", "0.8123", "0.8500"):
        assert value in out, value
    assert "ATTEMPTS" in dropped(out) and "LEARNING_RATE" not in dropped(out)
    assert f"best eval_accuracy: {SECOND}" in out


def test_runs_and_models_fit_80_columns(tmp_path, monkeypatch, bb):
    monkeypatch.chdir(tmp_path)
    put_local_run(FIRST, 0.8123, 2e-5)
    put_local_run(SECOND, 0.85, 5e-5)
    for run_id, alias in ((FIRST, "production"), (SECOND, "staging")):
        assert bb("promote", run_id, "--name", "sst2-sentiment", "--alias", alias, "--local").exit_code == 0
    out = fits(bb("runs", "--local", width=WIDTH))
    assert FIRST in out and "0.8123" in out and "EPOCHS" in dropped(out)
    out = fits(bb("models", "list", "--local", width=WIDTH))
    assert "sst2-sentiment" in out and "production=1," in out
    out = fits(bb("models", "show", "sst2-sentiment", "--local", width=WIDTH))
    assert FIRST in out and "0.8123" in out and "production" in out


def test_list_and_artifacts_fit_80_columns(platform, bb):
    job_id = submit(platform, bb, "--run-name", "sst2-a")
    out = fits(bb("list", "--state", "SUCCEEDED", width=WIDTH))
    assert job_id in out and "sst2-a" in out and "SUCCEEDED" in out
    assert dropped(out) == ["QUEUE"]  # STOPPED went first, then came back once QUEUE had gone
    # A generated run name and a job id do not fit side by side: the name goes, the times come back.
    long_id = submit(platform, bb, "--run-name", "bert-base-uncased-20261121-190500-3fa2")
    out = fits(bb("list", "--state", "SUCCEEDED", width=WIDTH))
    assert job_id in out and long_id in out and dropped(out) == ["QUEUE", "NAME"], out
    platform.put_run("a-run-with-a-long-name-for-eighty-columns", {"eval_accuracy": 0.5})
    out = fits(bb("artifacts", "a-run-with-a-long-name-for-eighty-columns", width=WIDTH))
    assert "metrics.json" in out  # a URI wider than the terminal breaks after a '/'
    records = [json.loads(line) for line in bb("artifacts", "a-run-with-a-long-name-for-eighty-columns",
                                                "-o", "json").output.splitlines()]
    assert records and all(len(r["uri"]) > WIDTH for r in records)


def test_on_a_terminal_the_table_fits_it_too(tmp_path, monkeypatch, bb):
    monkeypatch.chdir(tmp_path)
    put_local_run(FIRST, 0.8123, 2e-5)
    put_local_run(SECOND, 0.85, 5e-5)
    monkeypatch.setattr(terminal, "is_terminal", lambda *, err=False: True)
    out = fits(bb("compare", FIRST, SECOND, "--local", width=WIDTH), plain=False)  # rich pads a terminal's lines
    assert FIRST in out and "5e-5" in out and "ATTEMPTS" in dropped(out)


@pytest.mark.parametrize("width", [60, 100])
def test_estimate_fits_other_widths(bb, width):
    out = fits(bb("estimate", "--rows", "67000", "--offline", width=width), width)
    assert "p4d.24xlarge" in out and "55.040" in out
