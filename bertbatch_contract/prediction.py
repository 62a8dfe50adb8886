"""The batch-inference interface: one table of the flags of `python -m bert_train predict`, the one
function that validates them, and how rows are split into shards.

Rows are `hyperparameters.Hyperparameter`s, so the same `add_arguments` builds the container's
parser and the CLI can generate its options from the rows with a `parameter`. `validate` runs in
`bertbatch predict` before submit and in the container at start; `command` is the container
command a job is submitted with (`predict --model ... --input ...`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import replace

from . import hyperparameters, job, layout, runs
from .hyperparameters import MAX_POSITIONS, Hyperparameter, InvalidHyperparameter, Value, add_arguments, format_value

SUBCOMMAND = "predict"  # python -m bert_train predict ...
# bf16 autocast where the GPU has it natively; fp16 is not offered (no loss scaling at inference,
# and overflow in fp16 logits would go unnoticed).
PRECISIONS = ("auto", "bf16", "fp32")
MAX_SHARDS = 10_000  # AWS Batch's largest array job


def _check_prediction_id(value: str) -> str | None:
    return None if runs.PATTERN.fullmatch(value) else runs.RULE


_H = Hyperparameter
DEFAULT_MAX_SEQ_LENGTH = 128  # a model without training_args.json (trained elsewhere)
# Options whose unset value comes from the run's training_args.json (`from_training`): the job
# definition's default is "" (not given), so the container can tell them from a given value.
FROM_TRAINING = ("max_seq_length", "text_pair_column", "long_text", "chunk_overlap")
OPTIONS: tuple[Hyperparameter, ...] = (
    _H("model", str, None, "the model: a training run's output directory or s3:// prefix (config, weights, "
       "tokenizer, label_map.json)", "model", parameter="model", required=True, non_empty=True),
    _H("input", str, None, "rows to score: s3://bucket/key or local path (.jsonl, .csv, .tsv)", "data",
       parameter="input_uri", required=True, non_empty=True),
    _H("output", str, None, f"where the predictions go, a directory or s3:// prefix (default "
       f"${job.ENV_ARTIFACTS_URI}/{layout.PREDICTIONS_PREFIX}${job.ENV_PREDICTION_ID}/)", "data",
       parameter="output_uri"),
    hyperparameters.BY_NAME["text_column"],  # the same flag as training's
    # The same flag as training's; not a parameter of the prediction job definition (the CLI
    # overrides the whole command when it sets it).
    replace(hyperparameters.BY_NAME["text_pair_column"], parameter=None),
    _H("id_column", str, None, "optional column passed through to each prediction as its id", "data"),
    _H("shards", int, None, f"split the rows into N contiguous shards (default ${job.ENV_PREDICT_SHARDS}, else 1)",
       "shards", parameter="shards", minimum=1, maximum=MAX_SHARDS),
    _H("shard_index", int, None, f"the shard this process scores (default ${job.ENV_PREDICT_SHARD_INDEX}, else "
       f"${job.ENV_BATCH_ARRAY_INDEX}, else 0)", "shards", minimum=0, maximum=MAX_SHARDS - 1),
    _H("batch_size", int, 64, "rows per forward pass (rows are sorted by length first)", "inference",
       parameter="batch_size", minimum=1),
    _H("max_seq_length", int, None, f"truncate inputs to this many tokens (default: the run's, from its "
       f"{layout.TRAINING_ARGS_FILE}, else {DEFAULT_MAX_SEQ_LENGTH})", "inference",
       parameter="max_seq_length", minimum=8, maximum=MAX_POSITIONS),
    # The training rows, defaulting to the run's; not parameters of the prediction job definition
    # (the CLI overrides the whole command when it sets them).
    replace(hyperparameters.BY_NAME["long_text"], default=None, parameter=None,
            help="texts longer than --max-seq-length: truncate, head+tail or chunk (default: the run's, from its "
            f"{layout.TRAINING_ARGS_FILE}, else truncate)"),
    replace(hyperparameters.BY_NAME["chunk_overlap"], default=None, parameter=None,
            help="--long-text chunk: tokens a window shares with the one before (default: the run's, else a "
            "quarter of --max-seq-length)"),
    _H("precision", str, "auto", "auto|bf16|fp32 (auto: bf16 on GPUs that have it and on CPUs with "
       "AVX512-BF16/AMX, else fp32)", "inference", parameter="precision", choices=PRECISIONS),
    _H("prediction_id", str, None, f"names {layout.PREDICTIONS_PREFIX}<id>/ when --output is not given "
       f"(default ${job.ENV_PREDICTION_ID})", "data", check=_check_prediction_id),
    hyperparameters.BY_NAME["cache_dir"],  # the same flag as training's
)
BY_NAME: dict[str, Hyperparameter] = {row.name: row for row in OPTIONS}
# Ref:: parameter name -> row, in command order.
JOB_PARAMETERS: dict[str, Hyperparameter] = {row.parameter: row for row in OPTIONS if row.parameter}


def validate(values: Mapping[str, object]) -> dict[str, Value]:
    """The given values (option name -> raw value; None or "" for an optional option = not given)
    checked and converted. Raises InvalidHyperparameter with one line naming the flag and the value."""
    out: dict[str, Value] = {}
    for name, raw in values.items():
        row = BY_NAME.get(name)
        if row is None:
            raise InvalidHyperparameter(f"unknown option {name!r} (known: {', '.join(BY_NAME)})")
        if raw is None or (raw == "" and not row.non_empty and not row.required):
            continue
        out[name] = row.parse(raw)
    missing = [BY_NAME[name].flag for name in BY_NAME if BY_NAME[name].required and name not in out]
    if missing:
        raise InvalidHyperparameter(f"{', '.join(missing)}: required")
    shards, index = out.get("shards"), out.get("shard_index")
    if isinstance(shards, int) and isinstance(index, int) and index >= shards:
        raise InvalidHyperparameter(f"--shard-index {index}: must be < --shards {shards}")
    return out


def from_training(values: Mapping[str, Value], trained: Mapping[str, object]) -> tuple[dict[str, Value], list[str]]:
    """`values` (validated; absent = not given) with what the run was trained with filled in:
    `max_seq_length` and the text-pair column from its training_args.json (`trained`; {} when the
    model has none). Returns the values and warning lines. A given --max-seq-length that differs
    is allowed with a warning; a given pair column is refused when the model was trained without
    one (InvalidHyperparameter, one line). Not given, a run trained with pairs reads that column,
    so an input without it is refused by the column checks instead of scoring text 1 alone.
    --long-text and --chunk-overlap come from the run too (a different given value: a warning)."""
    out, warnings = dict(values), []
    trained_length, trained_pair = trained.get("max_seq_length"), trained.get("text_pair_column") or None
    given_length = out.get("max_seq_length")
    if given_length is None:
        out["max_seq_length"] = trained_length if isinstance(trained_length, int) else DEFAULT_MAX_SEQ_LENGTH
    elif isinstance(trained_length, int) and given_length != trained_length:
        warnings.append(f"--max-seq-length {given_length}: the model was trained with {trained_length} "
                        f"({layout.TRAINING_ARGS_FILE}); scoring with {given_length}")
    given_pair = out.get("text_pair_column")
    if given_pair and trained and not trained_pair:
        raise InvalidHyperparameter(f"--text-pair-column {given_pair}: the model was trained on single texts "
                                    f"(no text_pair_column in its {layout.TRAINING_ARGS_FILE})")
    if not given_pair and isinstance(trained_pair, str):
        out["text_pair_column"] = trained_pair
    warnings += _long_text_from_training(out, trained)
    hyperparameters.check_long_text(out)
    return out, warnings


def _long_text_from_training(values: dict[str, Value], trained: Mapping[str, object]) -> list[str]:
    """Fill --long-text and --chunk-overlap in `values` from the run's (else the training defaults);
    a warning line for each given value the run was not trained with."""
    warnings = []
    for name in ("long_text", "chunk_overlap"):
        row, given, used = hyperparameters.BY_NAME[name], values.get(name), trained.get(name)
        fallback = used if isinstance(used, (int, str)) else row.default
        if given is None and fallback is not None:
            values[name] = fallback
        elif used is not None and given != used:
            warnings.append(f"{row.flag} {given}: the model was trained with {used} ({layout.TRAINING_ARGS_FILE}); "
                            f"scoring with {given}")
    return warnings


def shard_rows(total_rows: int, shards: int, index: int) -> range:
    """Row numbers (0-based, in file order) of shard `index` of `shards`: contiguous, in order,
    sizes differing by at most one row."""
    if not 0 <= index < shards:
        raise ValueError(f"shard {index} of {shards}: no such shard")
    return range(index * total_rows // shards, (index + 1) * total_rows // shards)


def add_options(parser: argparse.ArgumentParser, rows: Iterable[Hyperparameter] = OPTIONS) -> None:
    """One flag per row (values stay strings; `validate` converts them)."""
    add_arguments(parser, rows)


def command(values: Mapping[str, Value]) -> list[str]:
    """The container command for validated `values`: ["predict", "--model", ..., ...]."""
    args = [SUBCOMMAND]
    for name, value in values.items():
        args += [BY_NAME[name].flag, format_value(value)]
    return args


def job_command() -> list[str]:
    """["predict", "--model", "Ref::model", ...] for every job parameter: a prediction job
    definition's command (the CLI overrides the whole command when it sets other options)."""
    args = [SUBCOMMAND]
    for parameter, row in JOB_PARAMETERS.items():
        args += [row.flag, f"Ref::{parameter}"]
    return args
