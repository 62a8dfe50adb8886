"""Optional MLflow tracking: the run's parameters, its metrics and its final model directory, in
one MLflow run named after the run id.

Off unless $MLFLOW_TRACKING_URI is set, and then `mlflow` is never imported; on rank 0 only.
Every method returns at once: the MLflow client works on a background thread from a bounded
queue, with MLflow's HTTP timeout and retries bounded, so a tracking server that is down or slow
never holds training up. Its first failure is logged once, as a warning, and tracking stops for
the rest of the attempt; training goes on.

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
from urllib.parse import urlsplit

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
MAX_PENDING = 1000  # queued calls; past that new ones are dropped rather than wait
FINAL_WAIT_SECONDS = 300.0  # at the end: the model directory upload
STOP_WAIT_SECONDS = 10.0  # after SIGTERM or an error: part of the time Batch allows before SIGKILL
PARAMS_PER_REQUEST = 100  # MLflow's limit for log_batch
FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"  # MLflow run statuses

_Call = Callable[[Any], None]  # one client call, given the MlflowClient
_USERINFO = re.compile(r"//[^/@\s]*@")  # user:password@ in a URL


def redacted(uri: str) -> str:
    """The URI without credentials or query, for log lines."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else uri


class Tracker:
    """`start(params)`, then `log_metrics(step, values)` and `log_model_dir(path)`, then
    `close(status)`. Disabled (every method does nothing) without a tracking URI."""

    def __init__(self, tracking_uri: str | None, *, run_id: str, experiment: str = job.DEFAULT_MLFLOW_EXPERIMENT,
                 extra_tags: Mapping[str, str] | None = None) -> None:
        self.tracking_uri = tracking_uri or None
        self.run_id = run_id
        self.experiment = experiment
        self.extra_tags = dict(extra_tags or {})
        self.mlflow_run_id: str | None = None  # set by the worker once the MLflow run exists
        self.continued = False  # the MLflow run was made by an earlier attempt
        self._queue: queue.Queue[_Call | None] = queue.Queue(maxsize=MAX_PENDING)
        self._thread: threading.Thread | None = None
        self._failed = threading.Event()
        self._dropped = False

    @classmethod
    def from_env(cls, *, enabled: bool, run_id: str, env: Mapping[str, str] | None = None) -> Tracker:
        """The job's tracker: on when `enabled` (rank 0) and $MLFLOW_TRACKING_URI is set."""
        env = os.environ if env is None else env
        uri = env.get(job.ENV_MLFLOW_TRACKING_URI, "").strip()
        experiment = env.get(job.ENV_MLFLOW_EXPERIMENT_NAME, "").strip() or job.DEFAULT_MLFLOW_EXPERIMENT
        extra = {key: env[name] for key, name in (("bert-batch:profile", job.ENV_PROFILE),
                                                  ("bert-batch:image", job.ENV_IMAGE)) if env.get(name)}
        return cls(uri if enabled else None, run_id=run_id, experiment=experiment, extra_tags=extra)

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
        """Metrics at a global step, timestamped now (not when the worker gets to them)."""
        if not values:
            return
        stamp = int(time.time() * 1000)
        points = {k: float(v) for k, v in values.items()}
        self._submit(lambda client: self._log_metrics(client, step, stamp, points))

    def log_model_dir(self, path: Path) -> None:
        """Every file under `path`, as the run's artifacts under `model/`. The directory must
        stay until `close` returns."""
        self._submit(lambda client: client.log_artifacts(self.mlflow_run_id, str(path), artifact_path="model"))

    def close(self, status: str, *, wait_seconds: float) -> None:
        """End the MLflow run with `status` (FINISHED, KILLED for an interrupted attempt that a
        retry continues, FAILED) and wait up to `wait_seconds` for what is queued. Idempotent."""
        if self._thread is None:
            return
        self._submit(lambda client: client.set_terminated(self.mlflow_run_id, status=status))
        self._put(None)
        self._thread.join(wait_seconds)
        if self._thread.is_alive():
            log.warning("MLflow tracking: still busy after %.0f s at the end of the run; not waiting longer",
                        wait_seconds)
        self._thread = None

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
                            redacted(self.tracking_uri or ""))

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
                reason = _USERINFO.sub("//", " ".join(str(exc).split()))[:300]  # MLflow's message has the URL
                log.warning("MLflow tracking at %s failed (%s: %s); training goes on without it",
                            redacted(self.tracking_uri or ""), type(exc).__name__, reason)

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
                     self.experiment, redacted(self.tracking_uri or ""))
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

    def _log_metrics(self, client: Any, step: int, stamp: int, points: dict[str, float]) -> None:
        from mlflow.entities import Metric

        client.log_batch(self.mlflow_run_id, metrics=[Metric(k, v, stamp, step) for k, v in points.items()])
