"""Fixtures for the training container tests: a tiny random BERT, small SST-2 subsets, a moto
S3 server over real HTTP, and a way to run `python -m bert_train` as a real subprocess.

Everything runs on the CPU with one thread per process (the suite shares two cores), offline.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bertbatch_contract import job
from tests.conftest import start_moto_server

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
CONTAINER_DIR = REPO / "training_container"
VOCAB = FIXTURES / "vocab.txt"

# Environment every test (and every subprocess) runs with: offline, one thread, no job env.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
JOB_ENV = ("RUN_ID", "AWS_BATCH_JOB_ID", "ARTIFACTS_URI", "CHECKPOINT_URI", "CHECKPOINT_EVERY_STEPS",
           "CHECKPOINT_EVERY_MINUTES", "BERT_BATCH_PROFILE", "METRICS_NAMESPACE", "BERT_TRAIN_WORK_DIR",
           "WORLD_SIZE", "RANK", "LOCAL_RANK", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
           "AWS_BATCH_JOB_ARRAY_INDEX", "BERT_BATCH_GRID", "BERT_TRAIN_IMAGE", "FSX_MOUNT_PATH", "DATA_URI",
           "BERT_BATCH_MAX_COST_USD", "BERT_BATCH_PRICES", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
           "MLFLOW_TRACKING_URI", "AWS_BATCH_JOB_NUM_NODES", "PREDICTION_ID", "BERT_BATCH_SHARDS",
           "BERT_BATCH_SHARD_INDEX", "BERT_BATCH_MLFLOW_LOG_MODEL")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    for name in JOB_ENV:
        monkeypatch.delenv(name, raising=False)
    for k, v in OFFLINE_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("BERT_TRAIN_CACHE_DIR", str(tmp_path / "cache"))
    import torch

    torch.set_num_threads(1)
    from bert_train import storage

    storage.make_s3_client.cache_clear()
    yield
    storage.make_s3_client.cache_clear()


def write_tsv(path: Path, rows: list[dict], columns=("sentence", "label")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write("\t".join(columns) + "\n")
        for r in rows:
            f.write("\t".join(str(r[c]) for c in columns) + "\n")
    return path


def read_sst2(name: str) -> list[dict]:
    with open(FIXTURES / "sst2" / name, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture
def small_data(tmp_path) -> tuple[Path, Path]:
    """480 train / 160 dev rows of the SST-2 sample: 30 steps per epoch at batch 16."""
    train = write_tsv(tmp_path / "data" / "train.tsv", read_sst2("train.tsv")[:480])
    dev = write_tsv(tmp_path / "data" / "dev.tsv", read_sst2("dev.tsv")[:160])
    return train, dev


def tiny_args(train, dev, out: Path, ckpt, **overrides) -> list[str]:
    """Command-line flags for a quick, repeatable run of the tiny model."""
    values = {
        "train": train, "eval": dev, "model": "random:tiny", "vocab": VOCAB,
        "output_uri": out, "checkpoint_uri": ckpt, "max_seq_length": 64, "batch_size": 16,
        "epochs": 2, "learning_rate": 1e-3, "warmup_ratio": 0.1, "seed": 7, "logging_steps": 5,
        "checkpoint_every_steps": 1000, "checkpoint_every_minutes": 60, "run_id": "test-run",
    }
    values.update(overrides)
    args = []
    for k, v in values.items():
        if v is not None:
            args += ["--" + k.replace("_", "-"), str(v)]
    return args


def sigterm_at(stop_step: int):
    """An `on_step` callback for `train.run` that sends this process SIGTERM after step `stop_step`."""

    def on_step(step: int) -> None:
        if step == stop_step:
            os.kill(os.getpid(), signal.SIGTERM)

    return on_step


def tiny_config(train, dev, out, ckpt, **overrides):
    from bert_train.config import parse_args

    return parse_args(tiny_args(train, dev, out, ckpt, **overrides))


def subprocess_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in JOB_ENV}
    env.update(OFFLINE_ENV)
    # As in the image: bert_train and bertbatch_contract side by side on the path.
    env["PYTHONPATH"] = os.pathsep.join([str(CONTAINER_DIR), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def cli(args: list[str], **popen) -> subprocess.Popen:
    """Start `python -m bert_train ARGS` as a real process (stdout/stderr piped)."""
    return subprocess.Popen([sys.executable, "-m", "bert_train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=popen.pop("env", subprocess_env()), **popen)


def emf_records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]


@pytest.fixture
def moto_s3(monkeypatch):
    """A moto S3 server on a random port, spoken to over real HTTP; yields the endpoint URL."""
    server, endpoint = start_moto_server()
    # moto keeps its state per process, not per server: start every test from empty buckets
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
    for k, v in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(k, v)
    from bert_train import storage

    storage.make_s3_client.cache_clear()
    try:
        yield endpoint
    finally:
        storage.make_s3_client.cache_clear()
        server.stop()


def final_metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


STEP_RE = re.compile(r"\[progress\] .*step (\d+)/")


def stored_file(root: Path, step: int, name: str) -> Path:
    """Where the published local checkpoint at `step` keeps `name` (its manifest names the key)."""
    from bert_train.checkpoint import MANIFEST, step_dir

    manifest = json.loads((root / step_dir(step) / MANIFEST).read_text())
    return root / step_dir(step) / manifest["files"][name]["key"]


class S3Faults:
    """A fault-injecting stand-in in front of the moto server: a botocore hook on the one S3
    client that answers chosen requests itself, with a 500 or a connection reset, instead of
    sending them. botocore's own retries are off (storage.S3_MAX_ATTEMPTS = 1) so each injected
    fault reaches the code under test at once. Not a Stubber: the other requests must reach moto
    (a Stubber answers every call of its client), the checkpoint store uploads from several threads
    in no fixed order, and a connection reset is not an HTTP answer a Stubber can give."""

    def __init__(self) -> None:
        self.rules: list[dict] = []
        self.hits: list[str] = []  # "Operation key" of every request answered with a fault

    def fail(self, operation: str, key_part: str = "", *, times: int | None = None, kind: str = "500") -> None:
        """Answer `operation` (e.g. "GetObject") on keys containing `key_part` with a fault,
        `times` times (None: every time). kind: "500" (InternalError) or "reset"."""
        self.rules.append({"operation": operation, "key_part": key_part, "times": times, "kind": kind})

    def clear(self) -> None:
        self.rules.clear()

    def _hook(self, request, event_name: str, **_):
        from urllib.parse import unquote, urlsplit

        from botocore.awsrequest import AWSResponse
        from botocore.exceptions import ConnectionClosedError

        operation = event_name.rsplit(".", 1)[-1]
        key = unquote(urlsplit(request.url).path)
        for rule in self.rules:
            if rule["operation"] == operation and rule["key_part"] in key and rule["times"] != 0:
                if rule["times"] is not None:
                    rule["times"] -= 1
                self.hits.append(f"{operation} {key}")
                if rule["kind"] == "reset":
                    raise ConnectionClosedError(endpoint_url=request.url)
                return AWSResponse(request.url, 500, {}, _Body(
                    b"<Error><Code>InternalError</Code><Message>injected fault</Message></Error>"))
        return None


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, *_, **__):
        yield self.data


@pytest.fixture
def s3_faults(moto_s3, monkeypatch) -> S3Faults:
    from bert_train import storage

    monkeypatch.setattr(storage, "S3_MAX_ATTEMPTS", 1)
    storage.make_s3_client.cache_clear()
    faults = S3Faults()
    storage.make_s3_client().meta.events.register("before-send.s3", faults._hook)
    return faults


@pytest.fixture
def s3_stub(monkeypatch):
    """A botocore Stubber on the container's one S3 client: queue the answers S3 gives
    (`add_client_error("create_multipart_upload", "SlowDown", http_status_code=503)`); no request leaves."""
    from botocore.stub import Stubber

    from bert_train import storage

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    storage.make_s3_client.cache_clear()
    with Stubber(storage.make_s3_client()) as stubber:
        yield stubber
    storage.make_s3_client.cache_clear()


# What S3 answers on the start-up write probe, and the exit code that follows: only the user's
# location being wrong (no such bucket, no permission there) is bad input; the rest is retried.
WRITE_PROBE_ANSWERS = [
    ("SlowDown", 503, job.EXIT_STORAGE_UNAVAILABLE),
    ("InternalError", 500, job.EXIT_STORAGE_UNAVAILABLE),
    ("ServiceUnavailable", 503, job.EXIT_STORAGE_UNAVAILABLE),
    ("AccessDenied", 403, job.EXIT_BAD_INPUT),
    ("NoSuchBucket", 404, job.EXIT_BAD_INPUT),
]


class FakeClock:
    """A monotonic clock that moves only when told: `sleep(s)` records the wait and moves it on,
    `advance(s)` stands for time spent elsewhere (an S3 request that takes s seconds to fail)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def slow_s3_failures(clock: FakeClock, seconds: float) -> None:
    """Every PutObject on the one S3 client takes `seconds` of `clock` (before s3_faults answers it)."""
    from bert_train import storage

    storage.make_s3_client().meta.events.register_first("before-send.s3.PutObject",
                                                        lambda **_: clock.advance(seconds))
