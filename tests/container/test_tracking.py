"""MLflow tracking (bert_train.tracking) through the real MLflow client (mlflow-skinny, as in the
image). mlflow-skinny has no tracking server (that is in the full `mlflow`), so the runs go to
an MLflow file store; a server that is down or never answers is a real socket on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bert_train import tracking
from bert_train.train import run
from bertbatch_contract import job, tags

from .conftest import final_metrics, sigterm_at, subprocess_env, tiny_args, tiny_config

pytestmark = pytest.mark.slow

EVAL_KEYS = ("eval_accuracy", "eval_f1", "eval_loss")
TRAIN_KEYS = ("train_loss", "samples_per_second", "tokens_per_second", "learning_rate")


@pytest.fixture(autouse=True)
def _mlflow_env(monkeypatch):
    """No tracking URI unless a test sets one; MLflow's settings restored after each test (the
    tracker sets its defaults in os.environ)."""
    monkeypatch.delenv(job.ENV_MLFLOW_TRACKING_URI, raising=False)
    monkeypatch.delenv(job.ENV_MLFLOW_EXPERIMENT_NAME, raising=False)
    monkeypatch.delenv(job.ENV_MLFLOW_LOG_MODEL, raising=False)
    for name, value in tracking.MLFLOW_DEFAULTS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def file_store(tmp_path, monkeypatch) -> str:
    """A real MLflow store in a directory, set as the job's tracking URI."""
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv(job.ENV_MLFLOW_TRACKING_URI, uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow refuses file stores otherwise
    return uri


def mlflow_runs(uri: str, experiment: str = job.DEFAULT_MLFLOW_EXPERIMENT) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {uri}"
    return client.search_runs([found.experiment_id])


def history(uri: str, mlflow_run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    points = MlflowClient(tracking_uri=uri).get_metric_history(mlflow_run_id, key)
    return sorted((m.step, m.value) for m in points)


def artifact_names(uri: str, mlflow_run_id: str) -> set[str]:
    from mlflow import MlflowClient

    return {Path(f.path).name for f in MlflowClient(tracking_uri=uri).list_artifacts(mlflow_run_id, "model")}


def test_a_run_logs_its_parameters_metrics_at_each_logging_step_and_evaluation_and_its_model(
        small_data, tmp_path, file_store, monkeypatch):
    monkeypatch.setenv(job.ENV_MLFLOW_EXPERIMENT_NAME, "sst2-tiny")
    monkeypatch.setenv(job.ENV_MLFLOW_LOG_MODEL, "true")
    out = tmp_path / "out"
    result = run(tiny_config(*small_data, out, tmp_path / "ckpt", logging_steps=10, run_id="tracked-run"))
    assert result.exit_code == 0 and result.global_step == 60  # 30 steps per epoch, 2 epochs

    (mlflow_run,) = mlflow_runs(file_store, "sst2-tiny")
    assert mlflow_run.info.run_name == "tracked-run" and mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags[tags.TAG_RUN_ID] == "tracked-run"
    settings = json.loads((out / "training_args.json").read_text())
    assert mlflow_run.data.params == {k: str(v) for k, v in settings.items()}

    mid = mlflow_run.info.run_id
    for key in TRAIN_KEYS:
        assert [step for step, _ in history(file_store, mid, key)] == [10, 20, 30, 40, 50, 60], key
    m = final_metrics(out)
    assert history(file_store, mid, "train_loss")[-1][1] > 0
    for key in EVAL_KEYS:  # one point per evaluation, the values metrics.json records
        assert history(file_store, mid, key) == [(h["step"], pytest.approx(h[key])) for h in m["history"]], key
    assert [h["step"] for h in m["history"]] == [30, 60]
    assert {p.name for p in out.iterdir()} <= artifact_names(file_store, mid)
    assert {"model.safetensors", "config.json", "metrics.json"} <= artifact_names(file_store, mid)


def test_an_interrupted_and_resumed_run_is_one_mlflow_run_with_both_attempts_metrics(
        small_data, tmp_path, file_store, monkeypatch):
    monkeypatch.setenv(job.ENV_MLFLOW_LOG_MODEL, "true")
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    config = tiny_config(*small_data, out, ckpt, logging_steps=10)

    first = run(config, on_step=sigterm_at(25))
    assert first.exit_code == job.EXIT_INTERRUPTED and first.global_step == 25
    (stopped,) = mlflow_runs(file_store)
    assert stopped.info.status == "KILLED"  # until a retry continues it
    assert [step for step, _ in history(file_store, stopped.info.run_id, "train_loss")] == [10, 20]
    assert not artifact_names(file_store, stopped.info.run_id)  # no model from a stopped attempt

    second = run(config)
    assert second.exit_code == 0 and second.resumed_from_step == 25
    (resumed,) = mlflow_runs(file_store)  # the same run, not a second one
    assert resumed.info.run_id == stopped.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.params == stopped.data.params
    mid = resumed.info.run_id
    assert [step for step, _ in history(file_store, mid, "train_loss")] == [10, 20, 30, 40, 50, 60]
    assert [step for step, _ in history(file_store, mid, "eval_accuracy")] == [30, 60]
    assert "model.safetensors" in artifact_names(file_store, mid)


def test_bad_input_leaves_no_mlflow_run(small_data, tmp_path, file_store):
    from bert_train.config import BadInput

    train, _ = small_data
    missing = tmp_path / "data" / "missing.tsv"
    with pytest.raises(BadInput):
        run(tiny_config(train, missing, tmp_path / "out", tmp_path / "ckpt"))
    assert not (tmp_path / "mlruns").exists()  # the MLflow client was never even made


def test_without_a_tracking_uri_mlflow_is_never_imported(small_data, tmp_path):
    """A whole run in a fresh interpreter, then a look at sys.modules."""
    args = tiny_args(*small_data, tmp_path / "out", tmp_path / "ckpt", max_steps=3, logging_steps=1)
    script = ("import json, sys\n"
              "from bert_train.config import parse_args\n"
              "from bert_train.train import run\n"
              "assert run(parse_args(json.loads(sys.argv[1]))).exit_code == 0\n"
              "print('mlflow imported:', 'mlflow' in sys.modules)\n")
    env = subprocess_env()
    env.pop(job.ENV_MLFLOW_TRACKING_URI, None)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(args)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "mlflow imported: False" in proc.stdout, proc.stderr
    assert (tmp_path / "out" / "metrics.json").exists()  # it did train


def test_only_rank_0_tracks():
    env = {job.ENV_MLFLOW_TRACKING_URI: "http://127.0.0.1:5000"}
    assert tracking.Tracker.from_env(enabled=True, run_id="r", env=env).enabled
    assert not tracking.Tracker.from_env(enabled=False, run_id="r", env=env).enabled
    assert not tracking.Tracker.from_env(enabled=True, run_id="r", env={}).enabled


class HeldServer:
    """A socket on 127.0.0.1 that takes connections and answers none until `release()`: a hung
    tracking server. Released, it closes every connection (the client then fails at once). It
    releases itself after `give_up_seconds`, so a client that blocks on it fails the test
    instead of hanging it."""

    def __init__(self, give_up_seconds: float = 120.0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.released = threading.Event()
        self.first_request = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        self._give_up = threading.Timer(give_up_seconds, self.release)
        self._give_up.daemon = True
        self._give_up.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed by release()
                return
            self.connections.append(conn)
            self.first_request.set()

    def release(self) -> None:
        self._give_up.cancel()
        self.released.set()
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def held_server():
    server = HeldServer()
    yield server
    server.release()


def test_a_server_that_never_answers_does_not_hold_training_up(held_server, monkeypatch, caplog):
    # A request waits for the server as long as it takes: a tracker that called MLflow on the
    # training thread would block in start() until the test released the server, which it does
    # only after every call has returned.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "600")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker = tracking.Tracker(held_server.url, run_id="hung")
    with caplog.at_level(logging.WARNING, "bert_train"):
        tracker.start({"learning_rate": 1e-3})
        for step in range(1, 501):
            tracker.log_metrics(step, {"train_loss": 1.0 / step})
        assert not held_server.released.is_set()
        assert held_server.first_request.wait(60), "the tracker never reached the server"
        assert not tracker.failed  # its first request is still waiting for an answer
        held_server.release()
        tracker.close(tracking.FINISHED, wait_seconds=60)
    assert tracker.failed
    warnings = [r.getMessage() for r in caplog.records if "MLflow" in r.getMessage()]
    assert len(warnings) == 1 and "training goes on without it" in warnings[0], warnings


def test_a_training_run_finishes_while_the_tracking_server_is_down(small_data, tmp_path, monkeypatch, caplog,
                                                                   refused_port):
    down = f"http://user:secret@127.0.0.1:{refused_port}"  # nothing listens there
    monkeypatch.setenv(job.ENV_MLFLOW_TRACKING_URI, down)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with caplog.at_level(logging.WARNING, "bert_train"):
        result = run(tiny_config(*small_data, tmp_path / "out", tmp_path / "ckpt", epochs=1, logging_steps=5))
    assert result.exit_code == 0 and result.global_step == 30
    assert final_metrics(tmp_path / "out")["global_step"] == 30
    warnings = [r.getMessage() for r in caplog.records if "MLflow" in r.getMessage()]
    assert len(warnings) == 1 and "training goes on without it" in warnings[0], warnings
    assert "secret" not in caplog.text  # credentials in the URI are not logged


def test_without_being_asked_no_model_is_uploaded(small_data, tmp_path, file_store):
    result = run(tiny_config(*small_data, tmp_path / "out", tmp_path / "ckpt", epochs=1, logging_steps=10))
    assert result.exit_code == 0
    (mlflow_run,) = mlflow_runs(file_store)
    assert mlflow_run.info.status == "FINISHED" and history(file_store, mlflow_run.info.run_id, "train_loss")
    assert not artifact_names(file_store, mlflow_run.info.run_id)


def _held_tracker(server: HeldServer, joined: list[float], *, log_model: bool = False) -> tracking.Tracker:
    """A tracker whose end-of-run wait returns at once, recording how long it would have waited."""
    return tracking.Tracker(server.url, run_id="held", log_model=log_model,
                            join=lambda thread, seconds: joined.append(seconds))


def test_a_finished_run_waits_a_bounded_time_for_the_metrics_and_counts_the_dropped_ones(
        held_server, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "600")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    joined: list[float] = []
    tracker = _held_tracker(held_server, joined)
    with caplog.at_level(logging.WARNING, "bert_train"):
        tracker.start({"learning_rate": 1e-3})
        for step in range(1, 251):
            tracker.log_metrics(step, {"train_loss": 1.0 / step, "learning_rate": 1e-3})
        tracker.log_model_dir(Path("unused"))  # not asked for: nothing to wait for
        assert held_server.first_request.wait(60), "the tracker never reached the server"
        tracker.close(tracking.FINISHED)
    assert joined == [tracking.METRICS_WAIT_SECONDS]
    assert "500 of 500 metric points not sent" in caplog.text
    held_server.release()


def test_the_model_upload_is_waited_for_when_asked(held_server):
    joined: list[float] = []
    tracker = _held_tracker(held_server, joined, log_model=True)
    tracker.start({})
    tracker.log_model_dir(Path("model"))
    tracker.close(tracking.FINISHED)
    assert joined == [tracking.MODEL_WAIT_SECONDS]
    held_server.release()


def test_metrics_go_up_in_batches(tmp_path, file_store, monkeypatch):
    from mlflow import MlflowClient

    released, batches = threading.Event(), []
    log_batch = MlflowClient.log_batch

    def held_log_batch(client, run_id, metrics=(), params=(), **kwargs):
        if params:  # the run's parameters, the first batch: hold the worker until every point is queued
            released.wait(60)
        if metrics:
            batches.append(len(metrics))
        return log_batch(client, run_id, metrics=metrics, params=params, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", held_log_batch)
    tracker = tracking.Tracker(file_store, run_id="batched")
    tracker.start({"learning_rate": 1e-3})
    for step in range(1, 1251):
        tracker.log_metrics(step, {"train_loss": 1.0 / step, "learning_rate": 1e-3})
    released.set()
    tracker.close(tracking.FINISHED, wait_seconds=60)
    assert batches == [tracking.METRICS_PER_REQUEST, tracking.METRICS_PER_REQUEST, 500]
    (mlflow_run,) = mlflow_runs(file_store)
    assert len(history(file_store, mlflow_run.info.run_id, "train_loss")) == 1250


@pytest.mark.parametrize(("text", "shown"), [
    ("https://user:secret@mlflow.example/ml?token=abc&x=1", "https://***@mlflow.example/ml?token=***&x=***"),
    ("http://h:5000/?sekrit", "http://h:5000/?***"),
    ("Max retries exceeded with url: /?token=abc/api/2.0/mlflow/runs/get?run_id=r1 (Caused by ...)",
     "Max retries exceeded with url: /?token=*** (Caused by ...)"),
    ("HTTPConnectionPool(host='h', port=5000): url: '/x?token=abc'", "HTTPConnectionPool(host='h', port=5000): "
     "url: '/x?token=***'"),
    ("no credentials here? none", "no credentials here? none"),
    ("https://mlflow.example.internal", "https://mlflow.example.internal"),
])
def test_redact_hides_every_credential_of_a_url(text, shown):
    assert tracking.redact(text) == shown


def test_a_token_in_the_tracking_uri_is_never_logged(small_data, tmp_path, monkeypatch, caplog, refused_port):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker = tracking.Tracker(f"http://user:pw1@127.0.0.1:{refused_port}/?token=sekrit&user=alice", run_id="r")
    with caplog.at_level(logging.INFO, "bert_train"):
        tracker.start({"learning_rate": 1e-3})
        tracker.log_metrics(1, {"train_loss": 1.0})
        tracker.close(tracking.FINISHED, wait_seconds=60)
    assert tracker.failed and "MLflow tracking at" in caplog.text
    assert not {"sekrit", "alice", "pw1"} & set(re.split(r"[^A-Za-z0-9]+", caplog.text)), caplog.text
