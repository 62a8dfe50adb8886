"""Training configuration: the command line, the sweep row, and the job environment.

The flags, their types, bounds, defaults and help come from the one hyperparameter table
(`bertbatch_contract.hyperparameters`), which also generates the CLI's options and the job
definitions' command, and whose `validate` both `bertbatch submit` and the container call: a
value is rejected in the same words before submit and at start.

`TrainConfig` is what `bert_train.train.run()` takes; `parse_args()` builds one. The job
environment (`bertbatch_contract.job`) fills in what the flags leave open: `resolve_locations()`
(run id, where outputs and checkpoints go) and `resolve_cadence()` (how often to checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from bertbatch_contract import hyperparameters, job, layout, metrics, runs
from bertbatch_contract.hyperparameters import InvalidHyperparameter

PROG = "bert_train"

T = TypeVar("T", int, float, str)


class BadInput(Exception):
    """Input problem found before training: reported as one line, exit code EXIT_BAD_INPUT."""


def _default(name: str, kind: type[T]) -> T:
    value = hyperparameters.default(name)
    if not isinstance(value, kind):
        raise TypeError(f"hyperparameter {name}: default {value!r} is not {kind.__name__}")
    return value


def _optional(name: str, kind: type[T]) -> T | None:
    return None if hyperparameters.default(name) is None else _default(name, kind)


@dataclass
class TrainConfig:
    """One field per row of the hyperparameter table, with the table's default. The help text
    is in the table (`python -m bert_train --help`)."""

    # --- data -----------------------------------------------------------------------------
    train: str  # required: s3://bucket/key or a local path (FSx is mounted at /fsx)
    eval: str = _default("eval", str)
    # --- model ----------------------------------------------------------------------------
    model: str = _default("model", str)
    # --- optimisation and data ------------------------------------------------------------
    epochs: int = _default("epochs", int)
    learning_rate: float = _default("learning_rate", float)
    batch_size: int = _default("batch_size", int)  # per device (process)
    max_seq_length: int = _default("max_seq_length", int)
    long_text: str = _default("long_text", str)  # truncate | head+tail | chunk (bert_train.long_text)
    chunk_overlap: int | None = _optional("chunk_overlap", int)  # None: a quarter of max_seq_length
    text_column: str = _default("text_column", str)
    label_column: str = _default("label_column", str)
    problem_type: str = _default("problem_type", str)
    label_separator: str = _default("label_separator", str)
    # --- container-only flags -------------------------------------------------------------
    text_pair_column: str | None = _optional("text_pair_column", str)
    vocab: str | None = _optional("vocab", str)
    max_steps: int | None = _optional("max_steps", int)
    eval_batch_size: int | None = _optional("eval_batch_size", int)  # None: 2 x batch_size
    gradient_accumulation_steps: int = _default("gradient_accumulation_steps", int)
    warmup_ratio: float = _default("warmup_ratio", float)
    weight_decay: float = _default("weight_decay", float)
    max_grad_norm: float = _default("max_grad_norm", float)
    precision: str = _default("precision", str)
    compile: str = _default("compile", str)  # off | on | auto (runtime.compile_enabled)
    class_weights: str = _default("class_weights", str)
    seed: int = _default("seed", int)
    # --- evaluation and early stopping ----------------------------------------------------
    eval_steps: int | None = _optional("eval_steps", int)  # None: at each epoch end
    early_stopping_metric: str | None = _optional("early_stopping_metric", str)  # None: the task's default
    early_stopping_patience: int = _default("early_stopping_patience", int)
    # --- checkpoints ----------------------------------------------------------------------
    # None = $CHECKPOINT_EVERY_STEPS / $CHECKPOINT_EVERY_MINUTES, else the job defaults
    # (resolve_cadence). 500 steps / 10 minutes bounds the work lost on Spot; for BERT-base
    # (about 1.3 GB of weights + optimizer state) the save + upload cost 2.2-2.9 % of training
    # time on the 2-core CPU benchmark machine (bench/README.md): under 3 %, but not by much.
    checkpoint_every_steps: int | None = _optional("checkpoint_every_steps", int)
    checkpoint_every_minutes: float | None = _optional("checkpoint_every_minutes", float)
    keep_checkpoints: int = _default("keep_checkpoints", int)
    # --- locations (None: from the job environment, see resolve_locations) ----------------
    run_id: str | None = _optional("run_id", str)
    output_uri: str | None = _optional("output_uri", str)
    checkpoint_uri: str | None = _optional("checkpoint_uri", str)
    work_dir: str | None = _optional("work_dir", str)
    cache_dir: str | None = _optional("cache_dir", str)
    # --- logging --------------------------------------------------------------------------
    logging_steps: int = _default("logging_steps", int)
    megabatch_factor: int = _default("megabatch_factor", int)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog=PROG,
                                     description="Fine-tune a BERT-family model for sequence classification.")
    hyperparameters.add_arguments(parser)
    return parser


def config_from(values: Mapping[str, object]) -> TrainConfig:
    """A TrainConfig from raw values (field name -> string or number), checked by the table."""
    try:
        checked: dict[str, Any] = hyperparameters.validate(values)
    except InvalidHyperparameter as exc:
        raise BadInput(str(exc)) from None
    return TrainConfig(**checked)


def parse_args(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> TrainConfig:
    """The command line, then (for a child of a sweep) its row of the grid. Usage errors (an
    unknown or missing flag) exit 2 through argparse; a bad value or grid row raises BadInput."""
    namespace = build_parser().parse_args(argv)
    return apply_grid_row(config_from(vars(namespace)), os.environ if env is None else env)


def apply_grid_row(config: TrainConfig, env: Mapping[str, str]) -> TrainConfig:
    """A sweep is an array job: $BERT_BATCH_GRID holds one row of job parameters per child, and
    child $AWS_BATCH_JOB_ARRAY_INDEX trains with its row, which overrides the matching flags."""
    grid, index = env.get(job.ENV_GRID), env.get(job.ENV_BATCH_ARRAY_INDEX)
    if not grid or index is None:
        return config
    try:
        rows = json.loads(grid)
    except json.JSONDecodeError as exc:
        raise BadInput(f"${job.ENV_GRID}: malformed JSON ({exc.msg})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadInput(f"${job.ENV_GRID}: expected a JSON list of objects")
    if not index.isdigit() or int(index) >= len(rows):
        raise BadInput(f"${job.ENV_BATCH_ARRAY_INDEX}={index}: no such row in ${job.ENV_GRID} ({len(rows)} rows)")
    try:
        row = hyperparameters.by_parameter(rows[int(index)])
    except InvalidHyperparameter as exc:
        raise BadInput(f"${job.ENV_GRID} row {index}: {exc}") from None
    values = config.to_dict()
    values.update({hyperparameters.JOB_PARAMETERS[parameter].name: value for parameter, value in row.items()})
    return TrainConfig(**values)


def validate(config: TrainConfig) -> None:
    """The table's checks on the whole configuration (the same `validate` the CLI runs before
    submit). The container adds none of its own here: the files are checked by the data
    module, and the checks that need the model or the device run where those are built."""
    try:
        hyperparameters.validate(config.to_dict())
    except InvalidHyperparameter as exc:
        raise BadInput(str(exc)) from None


# --- the job environment -----------------------------------------------------------------------


@dataclass(frozen=True)
class Locations:
    run_id: str
    output_uri: str
    checkpoint_uri: str  # "" = under the work dir (checkpoints_are_local_only)
    checkpoints_are_local_only: bool = False
    work_dir: str = ""
    cache_dir: str = ""
    profile: str = "local"
    namespace: str = ""


@dataclass(frozen=True)
class Cadence:
    """When to checkpoint: every N optimizer steps or M minutes, whichever comes first; and how
    long uploads may keep failing before the run stops (`give_up_minutes`)."""

    every_steps: int = job.DEFAULT_CHECKPOINT_EVERY_STEPS
    every_minutes: float = job.DEFAULT_CHECKPOINT_EVERY_MINUTES
    give_up_minutes: float = job.DEFAULT_CHECKPOINT_GIVE_UP_MINUTES

    def step_due(self, step: int) -> bool:
        """`step` is a multiple of N (counted from step 0, so a resumed run keeps the same steps)."""
        return step % self.every_steps == 0

    def time_due(self, seconds_since_last: float) -> bool:
        return seconds_since_last >= self.every_minutes * 60


def _run_id(config: TrainConfig, env: Mapping[str, str]) -> str:
    """--run-id, else $RUN_ID (survives retries), else the Batch job id, else a generated one;
    a child of a sweep adds its array index."""
    sources = (
        ("--run-id", config.run_id),
        (f"${job.ENV_RUN_ID}", env.get(job.ENV_RUN_ID)),
        # an array child's job id is <parent id>:<index>; the index is added below
        (f"${job.ENV_BATCH_JOB_ID}", (env.get(job.ENV_BATCH_JOB_ID) or "").split(":")[0]),
    )
    where, run_id = next(((w, v) for w, v in sources if v), ("generated run id", runs.generate_run_id(config.model)))
    try:
        runs.check_run_id(run_id, what=where)
        array_index = env.get(job.ENV_BATCH_ARRAY_INDEX)
        if array_index is None:
            return run_id
        if not array_index.isdigit():
            raise BadInput(f"${job.ENV_BATCH_ARRAY_INDEX}={array_index!r}: not an array index")
        return runs.check_run_id(runs.array_run_id(run_id, array_index), what=f"{where} + array index")
    except runs.InvalidRunId as exc:
        raise BadInput(str(exc)) from None


def resolve_locations(config: TrainConfig, env: Mapping[str, str] | None = None) -> Locations:
    """Decide run id and output/checkpoint locations from flags, then the environment.

    Pure: creates nothing, so bad input can still be reported before anything is written.
    """
    env = os.environ if env is None else env
    run_id = _run_id(config, env)
    if config.output_uri:
        output_uri = config.output_uri
    elif env.get(job.ENV_ARTIFACTS_URI):
        output_uri = layout.join(env[job.ENV_ARTIFACTS_URI], layout.run_prefix(run_id))
    else:
        raise BadInput(f"no output location: pass --output-uri or set ${job.ENV_ARTIFACTS_URI}")
    if config.checkpoint_uri:
        checkpoint_uri = config.checkpoint_uri
    elif env.get(job.ENV_CHECKPOINT_URI):
        checkpoint_uri = layout.join(env[job.ENV_CHECKPOINT_URI], run_id)
    else:
        checkpoint_uri = ""  # the trainer puts them under the work dir and warns
    cache_dir = (
        config.cache_dir
        or env.get(job.ENV_CACHE_DIR)
        or os.path.join(os.path.expanduser("~"), ".cache", "bert_train")
    )
    return Locations(
        run_id=run_id,
        output_uri=output_uri,
        checkpoint_uri=checkpoint_uri,
        checkpoints_are_local_only=not checkpoint_uri,
        work_dir=config.work_dir or env.get(job.ENV_WORK_DIR) or "",
        cache_dir=cache_dir,
        profile=env.get(job.ENV_PROFILE) or "local",
        namespace=env.get(job.ENV_METRICS_NAMESPACE) or metrics.DEFAULT_NAMESPACE,
    )


def resolve_cadence(config: TrainConfig, env: Mapping[str, str] | None = None) -> Cadence:
    """The checkpoint cadence: the flags, then $CHECKPOINT_EVERY_STEPS / _MINUTES, then the defaults.
    A variable is checked against the same bounds as its flag."""
    env = os.environ if env is None else env

    def from_env(name: str, variable: str) -> Any:
        raw = env.get(variable)
        if not raw:
            return None
        row = hyperparameters.BY_NAME[name]
        try:
            return row.parse(raw)
        except InvalidHyperparameter:
            raise BadInput(f"${variable}={raw!r}: must be {row.rule()}") from None

    steps = config.checkpoint_every_steps or from_env("checkpoint_every_steps", job.ENV_CHECKPOINT_EVERY_STEPS)
    minutes = config.checkpoint_every_minutes or from_env("checkpoint_every_minutes", job.ENV_CHECKPOINT_EVERY_MINUTES)
    # Same rule as the cadence in minutes: a number > 0.
    give_up = from_env("checkpoint_every_minutes", job.ENV_CHECKPOINT_GIVE_UP_MINUTES)
    return Cadence(every_steps=steps or job.DEFAULT_CHECKPOINT_EVERY_STEPS,
                   every_minutes=minutes or job.DEFAULT_CHECKPOINT_EVERY_MINUTES,
                   give_up_minutes=give_up or job.DEFAULT_CHECKPOINT_GIVE_UP_MINUTES)
