"""Bad input gets one `Error:` line, a non-zero exit and submits nothing (issue "Reliability")."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest

from bertbatch.core import input_checks as params
from bertbatch_contract import job as job_env

from .helpers import one_line_error

# The platform's jobs cannot reach the internet: the default model must be staged to submit.
pytestmark = pytest.mark.usefixtures("default_model_staged")


@pytest.fixture
def inputs(platform):
    """A deployment with both default inputs, so only the checks under test can stop a submit."""
    platform.put_dataset("datasets/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    return platform


def dry_run_grid(bb, grid) -> list[dict[str, str]]:
    r = bb("submit", "--grid", grid, "--dry-run")
    assert r.exit_code == 0, r.output
    env = {e["name"]: e["value"] for e in json.loads(r.output)["containerOverrides"]["environment"]}
    return json.loads(env[job_env.ENV_GRID])


def test_non_utf8_grid_is_refused(inputs, bb, submit_spy, tmp_path):
    grid = tmp_path / "sweep.csv"
    grid.write_bytes("learning_rate,text_column\n2e-5,caf\u00e9\n3e-5,x\n".encode("latin-1"))
    one_line_error(bb("submit", "--grid", grid), f"--grid {grid}: not UTF-8 text (byte 0xe9 at offset")
    assert submit_spy == []


@pytest.mark.parametrize("name", ["sweep.csv", "sweep.json"])
def test_bom_prefixed_grid_is_read_as_if_it_had_none(inputs, bb, tmp_path, name):
    grid = tmp_path / name
    text = ("learning_rate,batch_size\n2e-5,16\n3e-5,32\n" if name.endswith(".csv")
            else json.dumps([{"learning_rate": "2e-5", "batch_size": 16}, {"learning_rate": "3e-5", "batch_size": 32}]))
    grid.write_bytes(b"\xef\xbb\xbf" + text.encode())  # what Excel's "CSV UTF-8" writes
    assert dry_run_grid(bb, grid) == [{"learning_rate": "2e-5", "batch_size": "16"},
                                      {"learning_rate": "3e-5", "batch_size": "32"}]


def test_grid_over_the_array_limit_fails_before_building_combinations(inputs, bb, submit_spy, tmp_path,
                                                                    monkeypatch):
    grid = tmp_path / "huge.json"
    grid.write_text(json.dumps({f"p{i}": list(range(10)) for i in range(10)}))  # 10^10 combinations
    built = []  # params' own reference to itertools, not the module every other test uses
    spy = SimpleNamespace(product=lambda *a: built.append(a) or itertools.product(*a))
    monkeypatch.setattr(params, "itertools", spy)
    one_line_error(bb("submit", "--grid", grid), "10,000,000,000 rows", "10,000 children")
    assert built == []  # refused from the counts, not after enumerating 10^10 rows
    assert submit_spy == []


@pytest.mark.parametrize("rows", [10_001])
def test_grid_list_over_the_array_limit(inputs, bb, submit_spy, tmp_path, rows):
    grid = tmp_path / "many.csv"
    grid.write_text("epochs\n" + "2\n" * rows)
    one_line_error(bb("submit", "--grid", grid), f"{rows:,} rows")
    assert submit_spy == []


@pytest.mark.parametrize(("args", "fragment"), [
    (["--timeout", ""], "--timeout '': use seconds"),
    (["--run-name", ""], "--run-name '': use 1-100 letters"),
    (["--array", "10001"], "--array 10001: must be between 2 and 10000"),
    (["--wait", "--poll", "0"], "--poll 0.0: must be a number > 0"),
    (["--wait", "--poll", "nan"], "--poll nan: must be a number > 0"),
    (["--wait", "--fallback-grace", "-1"], "--fallback-grace -1.0: must be a number >= 0"),
])
def test_submit_refuses_empty_and_out_of_range_values(inputs, bb, submit_spy, args, fragment):
    one_line_error(bb("submit", *args), fragment)
    assert submit_spy == []


@pytest.mark.parametrize("poll", ["-1", "0", "inf"])
def test_watch_and_logs_refuse_a_poll_that_is_not_positive(platform, bb, poll):
    one_line_error(bb("watch", "some-job", "--poll", poll), f"--poll {float(poll)}: must be a number > 0")
    one_line_error(bb("logs", "some-job", "--follow", "--poll", poll), "--poll")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--max-hours", "nan"], "--max-hours nan: must be a number > 0"),
    (["--max-hours", "inf"], "--max-hours inf"),
    (["--max-hours", "-2"], "--max-hours -2.0"),
    (["--spot-overhead", "nan"], "--spot-overhead nan: must be a number >= 0"),
    (["--spot-overhead", "inf"], "--spot-overhead inf"),
    (["--spot-overhead", "-0.1"], "--spot-overhead -0.1"),
])
def test_estimate_refuses_nan_inf_and_negative_numbers(bb, args, fragment):
    one_line_error(bb("estimate", "--rows", "1000", *args), fragment)


@pytest.mark.parametrize("rows", ["-5", "0"])
def test_estimate_refuses_non_positive_rows(bb, rows):
    one_line_error(bb("estimate", "--rows", rows), f"--rows {rows}: must be >= 1")
