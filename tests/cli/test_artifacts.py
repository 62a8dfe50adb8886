"""artifacts and runs against a moto artifacts bucket."""

from __future__ import annotations

import json

from .helpers import one_line_error


def test_artifacts_lists_outputs_and_checkpoints(platform, bb):
    platform.put_run("r1", {"eval_accuracy": 0.91}, {
        "runs/r1/model/model.safetensors": b"x" * 2048,
        "checkpoints/r1/step-100/state.pt": b"y" * 10,
        "runs/r10/metrics.json": b"{}",  # another run sharing the prefix
    })
    r = bb("artifacts", "r1")
    assert r.exit_code == 0, r.output
    uris = [line.split()[0] for line in r.output.splitlines()[1:]]
    b = platform.artifacts_bucket
    assert sorted(uris) == sorted([
        f"s3://{b}/runs/r1/metrics.json", f"s3://{b}/runs/r1/model/model.safetensors",
        f"s3://{b}/checkpoints/r1/step-100/state.pt",
    ])
    assert "2.0 KiB" in r.output


def test_artifacts_download(platform, bb, tmp_path):
    platform.put_run("r2", {"eval_accuracy": 0.5}, {
        "runs/r2/model/config.json": b'{"a": 1}',
        "checkpoints/r2/step-1/state.pt": b"ckpt",
    })
    r = bb("artifacts", "r2", "--download", tmp_path / "out")
    assert r.exit_code == 0, r.output
    root = tmp_path / "out" / "r2"
    assert json.loads((root / "metrics.json").read_text()) == {"eval_accuracy": 0.5}
    assert (root / "model" / "config.json").read_bytes() == b'{"a": 1}'
    assert not (root / "checkpoints").exists()
    assert "Downloaded 2 file(s)" in r.output

    r = bb("artifacts", "r2", "--download", tmp_path / "out2", "--checkpoints")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out2" / "r2" / "checkpoints" / "step-1" / "state.pt").read_bytes() == b"ckpt"


def test_artifacts_in_progress_run_has_only_checkpoints(platform, bb):
    platform.put_run("r3", None, {"checkpoints/r3/step-1/state.pt": b"c"})
    r = bb("artifacts", "r3")
    assert r.exit_code == 0, r.output
    assert "checkpoints/r3/step-1/state.pt" in r.output


def test_artifacts_unknown_run(platform, bb):
    one_line_error(bb("artifacts", "nope"), "no such run: nope")


def test_runs_table_with_final_metrics(platform, bb):
    platform.put_run("alpha", {"eval_accuracy": 0.9123456, "eval_f1": 0.9, "train_loss": 0.25, "epochs": 3,
                               "steps": 900})
    # the trainer's own key names; missing keys are tolerated
    platform.put_run("beta", {"eval_accuracy": 0.8, "global_step": 12, "epochs_completed": 0.5, "best": {"step": 3}})
    platform.put_run("gamma", None, {"runs/gamma/progress.txt": b"..."})  # still running
    r = bb("runs")
    assert r.exit_code == 0, r.output
    header, *rows = r.output.splitlines()
    assert header.split()[:5] == ["RUN", "ID", "STATE", "TEAM", "EVAL_ACCURACY"]
    by_id = {row.split()[0]: row.split() for row in rows}
    assert set(by_id) == {"alpha", "beta", "gamma"}
    cols = header.replace("RUN ID", "RUN_ID").replace("FINISHED (UTC)", "FINISHED").split()
    alpha = dict(zip(cols, by_id["alpha"], strict=False))
    assert alpha["STATE"] == "finished"
    assert alpha["TEAM"] == "-"  # no Batch job of the run is listed: no team known
    assert alpha["EVAL_ACCURACY"] == "0.9123" and alpha["EVAL_F1"] == "0.9000"
    assert alpha["TRAIN_LOSS"] == "0.2500" and alpha["EPOCHS"] == "3" and alpha["STEPS"] == "900"
    assert alpha["EVAL_LOSS"] == "-"
    beta = dict(zip(cols, by_id["beta"], strict=False))
    assert beta["STEPS"] == "12" and beta["EPOCHS"] == "0.5000" and beta["EVAL_F1"] == "-"
    gamma = dict(zip(cols, by_id["gamma"], strict=False))
    assert gamma["STATE"] == "running" and gamma["EVAL_ACCURACY"] == "-"


def test_runs_json(platform, bb):
    platform.put_run("alpha", {"eval_accuracy": 0.9})
    platform.put_run("beta", None, {"runs/beta/progress.txt": b"..."})  # still running
    for flag in (["-o", "json"], ["--json"]):  # --json: the older spelling of -o json
        r = bb("runs", *flag)
        assert r.exit_code == 0, r.output
        by_id = {run["run_id"]: run for run in map(json.loads, r.output.splitlines())}  # JSON lines
        assert by_id["alpha"]["state"] == "finished" and by_id["alpha"]["metrics"] == {"eval_accuracy": 0.9}
        assert by_id["alpha"]["finished"].endswith("Z")
        assert by_id["beta"] == {"run_id": "beta", "state": "running", "finished": None, "metrics": None, "cost": None,
                                 "team": None}


def test_runs_empty(platform, bb):
    r = bb("runs")
    assert r.exit_code == 0
    assert r.output.startswith("No runs under s3://")


def test_runs_not_deployed(aws, bb):
    one_line_error(bb("runs"), "not deployed for profile 'dev'")
