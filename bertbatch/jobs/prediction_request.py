"""`bertbatch predict`: everything checked before a prediction job is submitted (or run here),
and the SubmitJob request of one job or an array job of shards.

The flags and their checks are `bertbatch_contract.prediction` (the container validates with the
same table). The model is a run id (runs/<run-id>/), NAME@ALIAS or NAME@N (the registry), or an
s3:// prefix / local directory holding a training run's output; the input must exist, not be
empty, and have the text (and id) columns, read from its first bytes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
import click

from bertbatch_contract import discovery, layout, prediction, runs
from bertbatch_contract import job as job_env
from bertbatch_contract.hyperparameters import InvalidHyperparameter, Value

from ..core.aws_clients import error_code
from ..core.errors import BertBatchError
from ..models import registry
from ..models import staging as models
from . import aws_batch as jobs

INPUT_FORMATS = (".jsonl", ".csv", ".tsv")
HEAD_BYTES = 64 * 1024  # enough for a header line and the first JSONL row
# Options of `bertbatch predict` from the contract's table; the CLI sets the shard index (array
# index), the prediction id (generated) and the cache itself.
CLI_OPTIONS = tuple(row for row in prediction.OPTIONS if row.name not in ("shard_index", "prediction_id", "cache_dir"))


def validate(values: Mapping[str, object]) -> dict[str, Value]:
    """The options checked by the contract (one line naming the flag)."""
    try:
        return prediction.validate(values)
    except InvalidHyperparameter as exc:
        raise BertBatchError(str(exc)) from None


def read_training_args(uri: str, s3: Any = None) -> dict[str, Any]:
    """The run's training_args.json beside the model (s3:// prefix read with `s3`, or a
    directory); {} when it has none (a model trained elsewhere)."""
    if uri.startswith("s3://"):
        bucket, key = jobs.parse_s3_uri(layout.join(uri, layout.TRAINING_ARGS_FILE))
        body = registry.S3Store(s3, bucket).read(key)
    else:
        body = registry.DirectoryStore(Path(uri)).read(layout.TRAINING_ARGS_FILE)
    try:
        trained = json.loads(body) if body else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # the container reads it the same way: unreadable = not there
    return trained if isinstance(trained, dict) else {}


def as_trained(values: Mapping[str, Value], trained: Mapping[str, Any]) -> dict[str, Value]:
    """`values` with the run's sequence length and pair column where not given
    (`prediction.from_training`); its warnings go to stderr, a conflict is one line."""
    try:
        resolved, warnings = prediction.from_training(values, trained)
    except InvalidHyperparameter as exc:
        raise BertBatchError(str(exc)) from None
    for line in warnings:
        click.echo(f"Warning: {line}", err=True)
    return resolved


def prediction_id(model: str) -> str:
    """Names predictions/<id>/: like a run id, after the model."""
    return runs.generate_run_id("predict-" + model.replace("@", "-"))


# --- the model ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedModel:
    uri: str  # what the container loads: an s3:// prefix or a local directory
    described: str  # how the user named it, for messages
    version: dict[str, Any] | None = None  # the registry record, for NAME@ALIAS


def resolve_model(store: registry.Store, model: str, s3: Any = None) -> ResolvedModel:
    """A run id, NAME@ALIAS / NAME@N (in `store`), an s3:// prefix (read with `s3`) or a local
    directory to the model's location, checked to hold a training run's model with its labels."""
    models.refuse_random(model)
    if registry.is_reference(model):
        record = registry.resolve(store, model)
        uri = str(record["uri"])
        check_model_files(s3, uri, f"--model {model} (version {record['version']}, run {record.get('run_id')})")
        return ResolvedModel(uri=uri, described=model, version=record)
    if "://" in model or "/" in model or Path(model).is_dir():
        if not model.startswith("s3://") and "://" in model:
            raise BertBatchError(f"--model {model}: expected a run id, NAME@ALIAS, NAME@VERSION, an s3:// prefix "
                                 "or a directory")
        check_model_files(s3, model, f"--model {model}")
        return ResolvedModel(uri=model, described=model)
    if not runs.PATTERN.fullmatch(model):
        raise BertBatchError(f"--model {model}: expected a run id, NAME@ALIAS, NAME@VERSION or an s3:// prefix")
    prefix = layout.run_prefix(model)
    if store.read(prefix + layout.METRICS_FILE) is None:
        raise BertBatchError(f"--model {model}: no finished run {model} (no {store.uri(prefix + layout.METRICS_FILE)})")
    uri = store.uri(prefix)
    check_model_files(s3, uri, f"--model {model}")
    return ResolvedModel(uri=uri, described=model)


def check_model_files(s3: Any, uri: str, what: str) -> None:
    """config.json and label_map.json under the model's location (s3:// prefix or directory)."""
    for name in ("config.json", layout.LABEL_MAP_FILE):
        if uri.startswith("s3://"):
            bucket, key = jobs.parse_s3_uri(layout.join(uri, name))
            present = registry.S3Store(s3, bucket).read(key) is not None
        else:
            present = (Path(uri) / name).is_file()
        if not present:
            raise BertBatchError(f"{what}: no {name} at {layout.join(uri, name)}")


# --- the input ------------------------------------------------------------------------------------
def input_format(flag: str, uri: str) -> str:
    suffix = Path(uri.split("?", 1)[0]).suffix.lower()
    if suffix not in INPUT_FORMATS:
        raise BertBatchError(f"{flag} {uri}: use a {', '.join(INPUT_FORMATS)} file")
    return suffix[1:]


def check_columns(uri: str, head: bytes, columns: list[str]) -> None:
    """The first data line (JSONL) or the header (CSV/TSV) has every column; the file has a row."""
    fmt = input_format("--input", uri)
    text = head.decode("utf-8-sig", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise BertBatchError(f"--input {uri}: the file is empty")
    if fmt == "jsonl":
        try:
            first = json.loads(lines[0])
        except json.JSONDecodeError as exc:
            raise BertBatchError(f"--input {uri} line 1: malformed JSON ({exc.msg})") from None
        if not isinstance(first, dict):
            raise BertBatchError(f"--input {uri} line 1: expected a JSON object")
        have = list(first)
        where = "line 1"
    else:
        reader = csv.reader(io.StringIO(lines[0]), delimiter="\t" if fmt == "tsv" else ",")
        have = [h.strip() for h in next(reader, [])]
        where = "header"
        if len(lines) < 2:
            raise BertBatchError(f"--input {uri}: no data rows after the header")
    for column in columns:
        if column not in have:
            raise BertBatchError(f"--input {uri}: no column {column!r} in the {where} (has: {', '.join(have)})")


def read_s3_head(s3: Any, uri: str) -> bytes:
    bucket, key = jobs.parse_s3_uri(uri)
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEAD_BYTES - 1}")["Body"].read()
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) in ("InvalidRange", "416"):
            return b""  # a zero-byte object
        jobs.raise_s3_error(exc, "--input", uri)
        raise
    return body


def read_local_head(path: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise BertBatchError(f"--input {path}: no such file")
    with p.open("rb") as fh:
        return fh.read(HEAD_BYTES)


def wanted_columns(values: Mapping[str, Value]) -> list[str]:
    return [str(values[name]) for name in ("text_column", "text_pair_column", "id_column") if values.get(name)]


def check_output_bucket(s3: Any, uri: str) -> None:
    bucket, _ = jobs.parse_s3_uri(uri)
    try:
        s3.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        code = error_code(exc)
        what = "no such bucket" if code in ("404", "NoSuchBucket", "NotFound") else f"not writable ({code})"
        raise BertBatchError(f"--output {uri}: {what}") from None


def key_under(prefix: str, name: str) -> str:
    """`name` under a key prefix ('' = the store's root)."""
    return layout.join(prefix, name) if prefix else name


def check_output_unused(store: registry.Store, key: str, uri: str) -> None:
    """A finished prediction is not overwritten."""
    if store.read(key_under(key, layout.PREDICTION_MANIFEST)) is not None:
        raise BertBatchError(f"--output {uri}: already holds a finished prediction ({layout.PREDICTION_MANIFEST}); "
                             "choose another location")


# --- the job --------------------------------------------------------------------------------------
@dataclass
class PredictPlan:
    prediction_id: str
    model: ResolvedModel
    values: dict[str, Value]  # validated options: model and input resolved, output set, shards set
    queue: str
    job_definition: str
    team: str

    @property
    def shards(self) -> int:
        return int(self.values.get("shards") or 1)

    def parameters(self) -> dict[str, str]:
        """Every job parameter, so no `Ref::` of the definition's command is left unset."""
        return {parameter: str(self.values[row.name]) for parameter, row in prediction.JOB_PARAMETERS.items()
                if self.values.get(row.name) is not None}

    def request(self) -> dict[str, Any]:
        plan = jobs.SubmitPlan(run_id=self.prediction_id, queue=self.queue, job_definition=self.job_definition,
                               parameters=self.parameters(),
                               environment={job_env.ENV_PREDICTION_ID: self.prediction_id,
                                            job_env.ENV_PREDICT_SHARDS: str(self.shards)},
                               array_size=self.shards if self.shards > 1 else None, team=self.team)
        req = plan.request()
        if any(self.values.get(row.name) is not None for row in CLI_OPTIONS if not row.parameter):
            # Options without a job parameter (--id-column, --text-pair-column): the whole command.
            req["containerOverrides"]["command"] = prediction.command(self.values)
        return req


def plan(session: Any, store: registry.S3Store, values: dict[str, Value], *, on_demand: bool, team: str) -> PredictPlan:
    """Check the model, the input and the output on the profile's deployment, and build the job."""
    model = resolve_model(store, str(values["model"]), session.client("s3"))
    values = as_trained(values, read_training_args(model.uri, session.client("s3")))
    data_bucket = session.get(discovery.DATA_BUCKET)
    mount = session.deployment.fsx_mount_path
    s3 = session.client("s3")
    source = jobs.resolve_input("--input", str(values["input"]), data_bucket, mount)
    input_format("--input", source)
    checked = source
    if mount and jobs.is_fsx_path(source, mount):
        mirrored = jobs.fsx_s3_counterpart(source, mount, data_bucket)
        if mirrored is None:
            raise BertBatchError(f"--input {source}: only files under {mount}/{layout.DATASETS_PREFIX} can be "
                                 "checked before submit")
        checked = mirrored
    check_columns(source, read_s3_head(s3, checked), wanted_columns(values))
    pid = prediction_id(model.described)
    output = str(values.get("output") or layout.s3_uri(store.bucket, layout.prediction_prefix(pid)))
    if not output.startswith("s3://"):
        raise BertBatchError(f"--output {output}: a Batch job writes to an s3:// prefix (or use --local)")
    check_output_bucket(s3, output)
    bucket, key = jobs.parse_s3_uri(output)
    check_output_unused(registry.S3Store(s3, bucket), key, output)
    queue_key = discovery.QUEUE_ON_DEMAND if on_demand else discovery.QUEUE_SPOT_FIRST
    definition = session.get(discovery.JOB_DEFINITION_PREDICT)
    resolved = {**values, "model": model.uri, "input": source, "output": output,
                "shards": int(values.get("shards") or 1)}
    return PredictPlan(prediction_id=pid, model=model, values=resolved, queue=session.get(queue_key),
                       job_definition=definition, team=team)
