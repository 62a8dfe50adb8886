"""Training configuration: every default in one place, the command line, and the environment.

`TrainConfig` is what `bert_train.train.run()` takes. `parse_args()` builds one from the command
line, falling back to the job environment (contract.py) for the values a job definition sets.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from dataclasses import asdict, dataclass, fields
from typing import Mapping

from . import contract

PROG = "bert_train"


class BadInput(Exception):
    """Input problem found before training: reported as one line, exit code EXIT_BAD_INPUT."""


@dataclass
class TrainConfig:
    # --- data -----------------------------------------------------------------------------
    train: str = ""  # s3://bucket/key or a local path (FSx is mounted at /fsx); .jsonl/.csv/.tsv
    eval: str = ""
    text_column: str = contract.DEFAULT_PARAMETERS["text_column"]
    text_pair_column: str | None = None  # second sentence of a pair task (MNLI, QQP, ...)
    label_column: str = contract.DEFAULT_PARAMETERS["label_column"]
    max_seq_length: int = int(contract.DEFAULT_PARAMETERS["max_seq_length"])
    # --- model ----------------------------------------------------------------------------
    # hub name, local directory, s3:// prefix, or random:tiny|random:base|random:/path/config.json
    model: str = contract.DEFAULT_PARAMETERS["model"]
    vocab: str | None = None  # WordPiece vocab.txt for random:* models
    # --- optimisation ---------------------------------------------------------------------
    epochs: int = int(contract.DEFAULT_PARAMETERS["epochs"])
    max_steps: int | None = None  # cap on optimizer steps (benchmarks, smoke tests)
    learning_rate: float = float(contract.DEFAULT_PARAMETERS["learning_rate"])
    batch_size: int = int(contract.DEFAULT_PARAMETERS["batch_size"])  # per device (process)
    eval_batch_size: int | None = None  # default: 2 x batch_size (no activations kept)
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.06  # fraction of optimizer steps with linear warmup (RoBERTa/GLUE)
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    precision: str = "auto"  # auto: bf16 on Ampere+, fp16 on older GPUs, fp32 on CPU
    seed: int = 42
    # --- evaluation and early stopping ----------------------------------------------------
    early_stopping_metric: str = "eval_accuracy"  # eval_accuracy | eval_f1 | eval_loss
    early_stopping_patience: int = 0  # evaluations without improvement; 0 = never stop early
    # --- checkpoints ----------------------------------------------------------------------
    # None = $CHECKPOINT_EVERY_STEPS / $CHECKPOINT_EVERY_MINUTES, else the contract defaults.
    # 500 steps / 10 minutes bounds the work lost on Spot; for BERT-base (about 1.3 GB of
    # weights + optimizer state) the save + upload cost 2.2-2.9 % of training time on the 2-core
    # CPU benchmark machine, S3 on the same cores (bench/README.md): under 3 %, but not by much.
    checkpoint_every_steps: int | None = None
    checkpoint_every_minutes: float | None = None
    keep_checkpoints: int = 2  # the newest K complete checkpoints are kept, older ones deleted
    # --- locations ------------------------------------------------------------------------
    run_id: str | None = None  # default: $RUN_ID, else $AWS_BATCH_JOB_ID, else generated
    output_uri: str | None = None  # default: $ARTIFACTS_URI/runs/<run-id>/
    checkpoint_uri: str | None = None  # default: $CHECKPOINT_URI/<run-id>/
    work_dir: str | None = None  # local scratch; default $BERT_TRAIN_WORK_DIR or a temp dir
    cache_dir: str | None = None  # default $BERT_TRAIN_CACHE_DIR or ~/.cache/bert_train
    # --- logging --------------------------------------------------------------------------
    logging_steps: int = 50  # progress line + EMF metrics every N optimizer steps
    # Length grouping: sort by length within windows of this many global batches (HF uses 50).
    megabatch_factor: int = 50

    def to_dict(self) -> dict:
        return asdict(self)


# Command-line help, one line per field. Flags are the field names with dashes.
_HELP: dict[str, str] = {
    "train": "training data: s3://bucket/key or local path (.jsonl, .csv, .tsv)",
    "eval": "evaluation data, same formats; its labels must all appear in the training data "
    "(without it: no evaluation, no early stopping)",
    "text_column": "column with the text",
    "text_pair_column": "optional column with the second text of a sentence pair",
    "label_column": "column with the label (strings or integers)",
    "max_seq_length": "truncate inputs to this many tokens",
    "model": "hub name, local directory, s3:// prefix, or random:tiny|random:base|random:CONFIG.json",
    "vocab": "WordPiece vocab.txt for random:* models",
    "epochs": "training epochs",
    "max_steps": "stop after this many optimizer steps",
    "learning_rate": "peak learning rate (AdamW)",
    "batch_size": "examples per device per micro-batch",
    "eval_batch_size": "examples per device per eval batch (default 2 x batch size)",
    "gradient_accumulation_steps": "micro-batches per optimizer step",
    "warmup_ratio": "fraction of steps with linear warmup, then linear decay to 0",
    "weight_decay": "AdamW weight decay (not applied to biases and LayerNorm)",
    "max_grad_norm": "gradient clipping norm",
    "precision": "auto|bf16|fp16|fp32 (auto: bf16 on Ampere+, fp16 on older GPUs, fp32 on CPU)",
    "seed": "random seed: same seed, same data order and results",
    "early_stopping_metric": "eval_accuracy|eval_f1|eval_loss",
    "early_stopping_patience": "stop after N evaluations without improvement (0: off)",
    "checkpoint_every_steps": f"checkpoint every N steps (${contract.ENV_CHECKPOINT_EVERY_STEPS}, "
    f"default {contract.DEFAULT_CHECKPOINT_EVERY_STEPS})",
    "checkpoint_every_minutes": f"...or every M minutes, whichever first "
    f"(${contract.ENV_CHECKPOINT_EVERY_MINUTES}, default {contract.DEFAULT_CHECKPOINT_EVERY_MINUTES:g})",
    "keep_checkpoints": "keep the newest K complete checkpoints",
    "run_id": f"run id (default ${contract.ENV_RUN_ID}, else ${contract.ENV_BATCH_JOB_ID}, else generated)",
    "output_uri": f"where the model goes (default ${contract.ENV_ARTIFACTS_URI}/runs/<run-id>/)",
    "checkpoint_uri": f"where checkpoints go (default ${contract.ENV_CHECKPOINT_URI}/<run-id>/)",
    "work_dir": "local scratch directory (default $BERT_TRAIN_WORK_DIR or a temp dir)",
    "cache_dir": "cache for models downloaded from S3 (default $BERT_TRAIN_CACHE_DIR or ~/.cache/bert_train)",
    "logging_steps": "progress line and metrics every N steps",
    "megabatch_factor": "length grouping window, in global batches",
}

CHOICES = {
    "precision": ("auto", "bf16", "fp16", "fp32"),
    "early_stopping_metric": ("eval_accuracy", "eval_f1", "eval_loss"),
}


def _converter(name: str):
    """int, float or str, from the TrainConfig annotation of `name`."""
    annotation = {f.name: str(f.type) for f in fields(TrainConfig)}[name]
    return int if "int" in annotation else float if "float" in annotation else str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fine-tune a BERT-family model for sequence classification.",
        argument_default=argparse.SUPPRESS,  # unset flags keep the dataclass default
    )
    for name, help_text in _HELP.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=_converter(name),
            choices=CHOICES.get(name),
            required=name == "train",
            help=help_text,
        )
    return parser


def parse_args(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> TrainConfig:
    """The command line, then (for a child of a sweep) its row of the grid. Argument errors exit
    2 through argparse; a bad grid row raises BadInput."""
    ns = build_parser().parse_args(argv)
    return apply_grid_row(TrainConfig(**vars(ns)), os.environ if env is None else env)


def apply_grid_row(config: TrainConfig, env: Mapping[str, str]) -> TrainConfig:
    """A sweep is an array job: $BERT_BATCH_GRID holds one row of job parameters per child, and
    child $AWS_BATCH_JOB_ARRAY_INDEX trains with its row, which overrides the matching flags."""
    grid, index = env.get(contract.ENV_GRID), env.get(contract.ENV_BATCH_ARRAY_INDEX)
    if not grid or index is None:
        return config
    try:
        rows = json.loads(grid)
    except json.JSONDecodeError as exc:
        raise BadInput(f"${contract.ENV_GRID}: malformed JSON ({exc.msg})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadInput(f"${contract.ENV_GRID}: expected a JSON list of objects")
    if not index.isdigit() or int(index) >= len(rows):
        raise BadInput(f"${contract.ENV_BATCH_ARRAY_INDEX}={index}: no such row in ${contract.ENV_GRID} "
                       f"({len(rows)} rows)")
    values = config.to_dict()
    for param, value in rows[int(index)].items():
        flag = contract.JOB_PARAMETERS.get(param)
        if flag is None:
            raise BadInput(f"${contract.ENV_GRID} row {index}: unknown job parameter {param!r} "
                           f"(known: {', '.join(contract.JOB_PARAMETERS)})")
        name = flag[2:].replace("-", "_")
        try:
            values[name] = _converter(name)(value)
        except ValueError:
            raise BadInput(f"${contract.ENV_GRID} row {index}: {param}={value!r} is not a valid {flag}") from None
    return TrainConfig(**values)


@dataclass(frozen=True)
class Locations:
    run_id: str
    output_uri: str
    checkpoint_uri: str
    checkpoints_are_local_only: bool = False
    work_dir: str = ""
    cache_dir: str = ""
    checkpoint_every_steps: int = contract.DEFAULT_CHECKPOINT_EVERY_STEPS
    checkpoint_every_minutes: float = contract.DEFAULT_CHECKPOINT_EVERY_MINUTES
    profile: str = "local"
    namespace: str = ""


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def resolve_locations(config: TrainConfig, env: Mapping[str, str] | None = None) -> Locations:
    """Decide run id, output/checkpoint locations and cadence from flags, then the environment.

    Pure: creates nothing, so bad input can still be reported before anything is written.
    """
    from . import metrics

    env = os.environ if env is None else env
    array_index = env.get(contract.ENV_BATCH_ARRAY_INDEX)
    run_id = (
        config.run_id
        or env.get(contract.ENV_RUN_ID)
        # an array child's job id is <parent id>:<index>; the suffix below adds the index
        or (env.get(contract.ENV_BATCH_JOB_ID) or "").split(":")[0]
        or "run-" + uuid.uuid4().hex[:12]
    )
    if array_index is not None:  # children of a sweep share RUN_ID; each has its own run
        run_id = contract.array_run_id(run_id, array_index)
    if "/" in run_id or run_id in (".", ".."):
        raise BadInput(f"run id {run_id!r}: must not contain '/'")

    if config.output_uri:
        output_uri = config.output_uri
    elif env.get(contract.ENV_ARTIFACTS_URI):
        output_uri = _join(env[contract.ENV_ARTIFACTS_URI], contract.RUNS_PREFIX.rstrip("/"), run_id)
    else:
        raise BadInput(f"no output location: pass --output-uri or set ${contract.ENV_ARTIFACTS_URI}")

    work_dir = config.work_dir or env.get("BERT_TRAIN_WORK_DIR") or ""
    local_only = False
    if config.checkpoint_uri:
        checkpoint_uri = config.checkpoint_uri
    elif env.get(contract.ENV_CHECKPOINT_URI):
        checkpoint_uri = _join(env[contract.ENV_CHECKPOINT_URI], run_id)
    else:
        checkpoint_uri = ""  # the trainer puts them under the work dir and warns
        local_only = True

    def _num(flag_value, env_name, default, conv):
        if flag_value is not None:
            return conv(flag_value)
        raw = env.get(env_name)
        if raw:
            try:
                return conv(raw)
            except ValueError:
                raise BadInput(f"${env_name}={raw!r}: not a number") from None
        return default

    every_steps = _num(config.checkpoint_every_steps, contract.ENV_CHECKPOINT_EVERY_STEPS,
                       contract.DEFAULT_CHECKPOINT_EVERY_STEPS, int)
    every_minutes = _num(config.checkpoint_every_minutes, contract.ENV_CHECKPOINT_EVERY_MINUTES,
                         contract.DEFAULT_CHECKPOINT_EVERY_MINUTES, float)
    cache_dir = (
        config.cache_dir
        or env.get("BERT_TRAIN_CACHE_DIR")
        or os.path.join(os.path.expanduser("~"), ".cache", "bert_train")
    )
    return Locations(
        run_id=run_id,
        output_uri=output_uri,
        checkpoint_uri=checkpoint_uri,
        checkpoints_are_local_only=local_only,
        work_dir=work_dir,
        cache_dir=cache_dir,
        checkpoint_every_steps=every_steps,
        checkpoint_every_minutes=every_minutes,
        profile=env.get(contract.ENV_PROFILE) or "local",
        namespace=env.get(contract.ENV_METRICS_NAMESPACE) or metrics.DEFAULT_NAMESPACE,
    )


def validate(config: TrainConfig) -> None:
    """Checks on the numbers themselves (files are checked by the data module)."""
    positive = ("epochs", "batch_size", "gradient_accumulation_steps", "max_seq_length",
                "logging_steps", "keep_checkpoints", "megabatch_factor")
    for name in positive:
        if getattr(config, name) < 1:
            raise BadInput(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(config, name)})")
    if config.max_steps is not None and config.max_steps < 1:
        raise BadInput(f"--max-steps must be at least 1 (got {config.max_steps})")
    if not 0 <= config.warmup_ratio < 1:
        raise BadInput(f"--warmup-ratio must be in [0, 1) (got {config.warmup_ratio})")
    if config.learning_rate <= 0:
        raise BadInput(f"--learning-rate must be positive (got {config.learning_rate})")
    if config.early_stopping_patience and not config.eval:
        raise BadInput("--early-stopping-patience needs --eval")
    if config.max_seq_length < 8:
        raise BadInput(f"--max-seq-length must be at least 8 (got {config.max_seq_length})")
