"""Optional MLflow tracking: the run's parameters, its metrics and its final model directory, in
one MLflow run named after the run id.

Off unless $MLFLOW_TRACKING_URI is set, and then `mlflow` is never imported; on rank 0 only.
Every method returns at once: the MLflow client works on a background thread from a bounded
queue, with MLflow's HTTP timeout and retries bounded, so a tracking server that is down or slow
never holds training up. Metric points wait in a bounded list and go up together, up to
METRICS_PER_REQUEST per log_batch request. Its first failure is logged once, as a warning, and
tracking stops for the rest of the attempt; training goes on. At the end the trainer waits a
bounded time (METRICS_WAIT_SECONDS; MODEL_WAIT_SECONDS when the job asked for the model to be
uploaded too) and logs how many metric points never reached the server.

Every line that shows the tracking URI or MLflow's error (which has the URL in it) goes through
`redact`: no user:password@ and no query parameter value is logged.

A resumed attempt (a Batch retry, the On-Demand resubmission) continues the same MLflow run: it
finds the run in the experiment by its tag `tags.TAG_RUN_ID` = run id. Metrics are logged at the
global step, so both attempts' points form one series.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bertbatch_contract import job, tags

log = logging.getLogger("bert_train")

# MLflow's own settings, applied unless the job sets them: one request waits at most 10 s and is
# retried twice (instead of 120 s and 7 retries, minutes of backoff), no usage telemetry leaves
# the VPC, and MLflow's INFO lines stay out of the job's log.
MLFLOW_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
MAX_PENDING = 1000  # queued calls (the run's start, metric flushes, the model, the end); past that dropped
MAX_PENDING_METRICS = 100_000  # metric points waiting to go up; past that new ones are dropped (and counted)
# At the end of a finished run, the wait for the metric backlog and the run's status: a slow
# server must not keep a finished job alive (and billed) for long. Points still queued then are
# dropped, and the log says how many.
METRICS_WAIT_SECONDS = 30.0
MODEL_WAIT_SECONDS = 300.0  # the same, when the job asked for the model upload (job.ENV_MLFLOW_LOG_MODEL)
STOP_WAIT_SECONDS = 10.0  # after SIGTERM or an error: part of the time Batch allows before SIGKILL
PARAMS_PER_REQUEST = 100  # MLflow's limits for log_batch
METRICS_PER_REQUEST = 1000
FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"  # MLflow run statuses

_Call = Callable[[Any], None]  # one client call, given the MlflowClient
_Point = tuple[str, float, int, int]  # metric name, value, timestamp (ms), step
_USERINFO = re.compile(r"//[^/@\s'\"]+@")  # user:password@ in a URL
_QUERY = re.compile(r"(?<=[^\s?])\?([^\s'\"<>#]+)")  # ?a=1&b=2 after a path (absolute URL or not)


def redact(text: str) -> str:
    """`text` (a URI, or a message with URLs in it) with every credential a URL can carry hidden:
    user:password@ becomes ***@, and the value of every query parameter ***."""
    text = _USERINFO.sub("//***@", text)
    return _QUERY.sub(lambda m: "?" + "&".join(_hide_value(p) for p in m.group(1).split("&")), text)


def _hide_value(parameter: str) -> str:
    name, equals, _ = parameter.partition("=")
    return f"{name}=***" if equals else "***"


class Tracker:
    """`start(params)`, then `log_metrics(step, values)` and `log_model_dir(path)`, then
    `close(status)`. Disabled (every method does nothing) without a tracking URI."""

    def __init__(self, tracking_uri: str | None, *, run_id: str, experiment: str = job.DEFAULT_MLFLOW_EXPERIMENT,
                 extra_tags: Mapping[str, str] | None = None, log_model: bool = False,
                 join: Callable[[threading.Thread, float], None] | None = None) -> None:
        self.tracking_uri = tracking_uri or None
        self.run_id = run_id
        self.experiment = experiment
        self.extra_tags = dict(extra_tags or {})
        self.log_model = log_model  # upload the model directory (and wait longer for it at the end)
        self.mlflow_run_id: str | None = None  # set by the worker once the MLflow run exists
        self.continued = False  # the MLflow run was made by an earlier attempt
        self._queue: queue.Queue[_Call | None] = queue.Queue(maxsize=MAX_PENDING)
        self._thread: threading.Thread | None = None
        self._join = join or threading.Thread.join  # how close() waits for the worker (tests: no wait)
        self._failed = threading.Event()
        self._dropped = False
        self._metrics = _MetricBacklog()
        self._model_queued = False

    @classmethod
    def from_env(cls, *, enabled: bool, run_id: str, env: Mapping[str, str] | None = None) -> Tracker:
        """The job's tracker: on when `enabled` (rank 0) and $MLFLOW_TRACKING_URI is set."""
        env = os.environ if env is None else env
        uri = env.get(job.ENV_MLFLOW_TRACKING_URI, "").strip()
        experiment = env.get(job.ENV_MLFLOW_EXPERIMENT_NAME, "").strip() or job.DEFAULT_MLFLOW_EXPERIMENT
        extra = {key: env[name] for key, name in (("bert-batch:profile", job.ENV_PROFILE),
                                                  ("bert-batch:image", job.ENV_IMAGE)) if env.get(name)}
        log_model = env.get(job.ENV_MLFLOW_LOG_MODEL, "").strip().lower() == "true"
        return cls(uri if enabled else None, run_id=run_id, experiment=experiment, extra_tags=extra,
                   log_model=log_model)

    @property
    def enabled(self) -> bool:
        return self.tracking_uri is not None

    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    # --- what the trainer calls -------------------------------------------------------------

    def start(self, params: Mapping[str, object]) -> None:
        """Find or create the MLflow run, then log `params` it does not have yet (a parameter
        cannot change in MLflow; a resumed attempt keeps the first attempt's values)."""
        if not self.enabled or self._thread is not None:
            return
        for name, value in MLFLOW_DEFAULTS.items():
            os.environ.setdefault(name, value)
        self._thread = threading.Thread(target=self._work, name="mlflow-tracking", daemon=True)
        self._thread.start()
        text = {k: str(v) for k, v in params.items()}
        self._submit(lambda client: self._open(client, text))

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        """Metrics at a global step, timestamped now (not when the worker gets to them); they go
        up with the others waiting, in one request."""
        if not values or self._thread is None:
            return
        stamp = int(time.time() * 1000)
        if self._metrics.add([(k, float(v), stamp, step) for k, v in values.items()]) and not self.failed:
            self._put(self._send_metrics)  # the first point since the last flush: one flush for all of them

    def log_model_dir(self, path: Path) -> None:
        """Every file under `path`, as the run's artifacts under `model/`, if the job asked for it
        (log_model). The directory must stay until `close` returns."""
        if self.log_model and self._thread is not None:
            self._model_queued = True
            self._submit(lambda client: client.log_artifacts(self.mlflow_run_id, str(path), artifact_path="model"))

    def close(self, status: str, *, wait_seconds: float | None = None) -> None:
        """End the MLflow run with `status` (FINISHED, KILLED for an interrupted attempt that a
        retry continues, FAILED) and wait up to `wait_seconds` (default: MODEL_WAIT_SECONDS with a
        model upload queued, else METRICS_WAIT_SECONDS) for what is queued; log how many metric
        points did not reach the server. Idempotent."""
        if self._thread is None:
            return
        if wait_seconds is None:
            wait_seconds = MODEL_WAIT_SECONDS if self._model_queued else METRICS_WAIT_SECONDS
        self._submit(lambda client: client.set_terminated(self.mlflow_run_id, status=status))
        self._put(None)
        self._join(self._thread, wait_seconds)
        busy = self._thread.is_alive()
        self._thread = None
        unsent, total = self._metrics.unsent(), self._metrics.total
        if busy:
            log.warning("MLflow tracking: still busy after %.0f s at the end of the run; not waiting longer "
                        "(%d of %d metric points not sent)", wait_seconds, unsent, total)
        elif unsent and self.failed:  # its failure was the warning
            log.info("MLflow tracking: %d of %d metric points not sent (it stopped at its failure)", unsent, total)
        elif unsent:
            log.warning("MLflow tracking: %d of %d metric points not sent (more than %d waiting)", unsent, total,
                        MAX_PENDING_METRICS)

    # --- the worker thread ---------------------------------------------------------------------

    def _submit(self, call: _Call) -> None:
        if self._thread is not None and not self.failed:
            self._put(call)

    def _put(self, item: _Call | None) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            if not self._dropped:
                self._dropped = True
                log.warning("MLflow tracking at %s is not keeping up; dropping what it cannot take",
                            redact(self.tracking_uri or ""))

    def _work(self) -> None:
        client = None
        while (call := self._queue.get()) is not None:
            if self.failed:
                continue  # drain: nothing more is sent after the first failure
            try:
                if client is None:
                    from mlflow import MlflowClient  # only here: never imported without a URI

                    client = MlflowClient(tracking_uri=self.tracking_uri)
                call(client)
            except Exception as exc:  # whatever the server or the client raises, training goes on
                self._failed.set()
                reason = redact(" ".join(str(exc).split()))[:300]  # MLflow's message has the URL
                log.warning("MLflow tracking at %s failed (%s: %s); training goes on without it",
                            redact(self.tracking_uri or ""), type(exc).__name__, reason)

    def _open(self, client: Any, params: dict[str, str]) -> None:
        from mlflow.entities import Param, RunStatus

        experiment = client.get_experiment_by_name(self.experiment)
        experiment_id = experiment.experiment_id if experiment else self._create_experiment(client)
        # Run ids are [A-Za-z0-9_-] (bertbatch_contract.runs): safe inside the quotes.
        found = client.search_runs([experiment_id], filter_string=f"tags.`{tags.TAG_RUN_ID}` = '{self.run_id}'",
                                   max_results=1, order_by=["attributes.start_time ASC"])
        known: dict[str, str] = {}
        if found:
            run = found[0]
            self.mlflow_run_id, self.continued, known = run.info.run_id, True, dict(run.data.params)
            client.update_run(run.info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            log.info("MLflow tracking: continuing run %s (%s) in experiment %s", self.run_id, run.info.run_id,
                     self.experiment)
        else:
            run = client.create_run(experiment_id, run_name=self.run_id,
                                    tags={tags.TAG_RUN_ID: self.run_id, **self.extra_tags})
            self.mlflow_run_id = run.info.run_id
            log.info("MLflow tracking: run %s (%s) in experiment %s at %s", self.run_id, run.info.run_id,
                     self.experiment, redact(self.tracking_uri or ""))
        new = [Param(k, v) for k, v in params.items() if k not in known]
        for i in range(0, len(new), PARAMS_PER_REQUEST):
            client.log_batch(self.mlflow_run_id, params=new[i : i + PARAMS_PER_REQUEST])

    def _create_experiment(self, client: Any) -> str:
        from mlflow.exceptions import MlflowException

        try:
            return str(client.create_experiment(self.experiment))
        except MlflowException:  # another attempt created it meanwhile
            experiment = client.get_experiment_by_name(self.experiment)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    def _send_metrics(self, client: Any) -> None:
        """Every point waiting, METRICS_PER_REQUEST to a request."""
        from mlflow.entities import Metric

        points = self._metrics.take()
        for i in range(0, len(points), METRICS_PER_REQUEST):
            chunk = points[i : i + METRICS_PER_REQUEST]
            client.log_batch(self.mlflow_run_id, metrics=[Metric(*point) for point in chunk])
            self._metrics.sent += len(chunk)


class _MetricBacklog:
    """Metric points waiting for the worker, at most MAX_PENDING_METRICS; counts what was logged
    and what reached the server, so the end of the run can say how many were dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._points: list[_Point] = []
        self.total = 0  # every point logged, dropped or not
        self.sent = 0  # points the server took (the worker's count)

    def add(self, points: list[_Point]) -> bool:
        """Queue `points` (or drop them when full); True if a flush must be queued for them."""
        with self._lock:
            self.total += len(points)
            if len(self._points) + len(points) > MAX_PENDING_METRICS:
                return False
            first = not self._points
            self._points.extend(points)
            return first

    def take(self) -> list[_Point]:
        with self._lock:
            points, self._points = self._points, []
            return points

    def unsent(self) -> int:
        return self.total - self.sent
