"""The job interface: one table of the training flags, and the one function that validates them.

Each row names a flag of the container (`python -m bert_train --epochs 3`), its type, bounds,
default and help. From this table come

- the container's argparse parser (`add_arguments`),
- the CLI's options for the rows that are job parameters (`JOB_PARAMETERS`): every row is one,
  unless it says why it is `container_only`,
- the job definitions' command (`job_command`: `--epochs Ref::epochs ...`) and parameter
  defaults (`parameter_defaults`),

and `validate` is what both `bertbatch submit` (before anything is submitted) and the container
(at start) call, so a value the container would reject never reaches a queue, and both say so
in the same words.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from . import job, runs, tasks

Value = int | float | str

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
COMPILE_MODES = ("off", "on", "auto")  # torch.compile of the model; auto: on for CUDA, off on CPU
LONG_TEXT = ("truncate", "head+tail", "chunk")  # what becomes of a text longer than --max-seq-length
EARLY_STOPPING_METRICS = tasks.ALL_METRICS
MAX_SEED = 2**32 - 1  # numpy's and torch's seed range
# The longest --max-seq-length of any supported model (ModernBERT's 8,192 position embeddings);
# each model's own `max_position_embeddings` is checked when the container loads it.
MAX_POSITIONS = 8192


class InvalidHyperparameter(ValueError):
    """str() is the one-line message, starting with the flag and the value."""


def _check_run_id(value: str) -> str | None:
    return None if runs.PATTERN.fullmatch(value) else runs.RULE


@dataclass(frozen=True)
class Hyperparameter:
    name: str  # the container's field (TrainConfig) and argparse dest
    type: type[int] | type[float] | type[str]
    default: Value | None
    help: str
    group: str
    parameter: str | None = None  # the job definitions' Ref:: parameter, if it is one
    # Training rows: why the row is not a job parameter (a location the job environment sets, ...).
    # Every training row is one or the other (`_check_placed`), so a new trainer flag is
    # settable on submit unless it says why not.
    container_only: str = ""
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[str, ...] = ()
    required: bool = False
    non_empty: bool = False  # strings: "" is not allowed
    check: Callable[[str], str | None] | None = None  # extra string check: None or the rule

    @property
    def optional(self) -> bool:
        """No default: an empty value (a job parameter's default) means not given."""
        return self.default is None and not self.required

    @property
    def job_default(self) -> str:
        """The job definition's default for this row's `Ref::`: its default, or "" (not given) when
        it has none, since a `Ref::` without a default reaches the container as its literal text."""
        return "" if self.default is None else format_value(self.default)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def rule(self) -> str:
        """The allowed values in words, e.g. 'an integer >= 1', 'a number > 0 and < 1'."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        kind = {int: "an integer", float: "a number", str: "a string"}[self.type]
        bounds = []
        if self.minimum is not None:
            bounds.append(f"{'>' if self.exclusive_minimum else '>='} {format_value(self.minimum)}")
        if self.maximum is not None:
            bounds.append(f"{'<' if self.exclusive_maximum else '<='} {format_value(self.maximum)}")
        return f"{kind} {' and '.join(bounds)}".strip() if bounds else kind

    def parse(self, raw: object) -> Value:
        """`raw` (a string from a command line, a grid file or a job parameter, or a number)
        converted and checked; InvalidHyperparameter otherwise."""
        if isinstance(raw, bool) or raw is None or isinstance(raw, (list, dict)):
            raise self._invalid(raw)
        text = raw.strip() if isinstance(raw, str) else str(raw)
        if text.startswith("Ref::"):  # Batch passes an unfilled job parameter through as its literal text
            raise InvalidHyperparameter(f"{self.flag} {text}: the job parameter was not filled in at submit")
        value: Value
        if self.type is str:
            if self.non_empty and not text:
                raise InvalidHyperparameter(f"{self.flag} {raw!r}: must not be empty")
            if self.choices and text not in self.choices:
                raise self._invalid(raw)
            problem = self.check(text) if self.check and text else None
            if problem:
                raise InvalidHyperparameter(f"{self.flag} {raw!r}: {problem}")
            return text
        try:
            if self.type is int:
                if isinstance(raw, float):
                    if not raw.is_integer():
                        raise ValueError
                    value = int(raw)
                else:
                    value = int(text)
            else:
                value = float(text)
        except (ValueError, OverflowError):
            raise self._invalid(raw) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise self._invalid(raw)
        if self.minimum is not None and (
            value < self.minimum or (self.exclusive_minimum and value == self.minimum)
        ):
            raise self._invalid(raw)
        if self.maximum is not None and (
            value > self.maximum or (self.exclusive_maximum and value == self.maximum)
        ):
            raise self._invalid(raw)
        return value

    def _invalid(self, raw: object) -> InvalidHyperparameter:
        shown = raw if isinstance(raw, str) else repr(raw)
        return InvalidHyperparameter(f"{self.flag} {shown}: must be {self.rule()}")


def format_value(value: Value) -> str:
    """A value as a job parameter / command-line string: 2e-5 -> '2e-5', 3 -> '3'."""
    if isinstance(value, float):
        text = repr(value)
        if "e" in text:
            mantissa, exponent = text.split("e")
            return f"{mantissa}e{int(exponent)}"
        return text[:-2] if text.endswith(".0") else text
    return str(value)


_H = Hyperparameter
# Why the container-only rows are not job parameters.
CADENCE_FROM_ENVIRONMENT = "the job definition's environment sets the deployment's checkpoint cadence"
LOCATION_FROM_ENVIRONMENT = "the job definition's environment sets where outputs and scratch go"
# The order of the rows with a `parameter` is the order of the job definition's command.
HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    # --- data ---------------------------------------------------------------------------
    _H("train", str, None, "training data: s3://bucket/key or local path (.jsonl, .csv, .tsv)",
       "data", parameter="train_uri", required=True, non_empty=True),
    _H("eval", str, "", "evaluation data, same formats; its labels must all appear in the training "
       "data (without it: no evaluation, no early stopping)", "data", parameter="eval_uri"),
    # --- model --------------------------------------------------------------------------
    _H("model", str, "bert-base-uncased",
       "hub name, local directory, s3:// prefix, or random:tiny|random:base|random:CONFIG.json",
       "model", parameter="model", non_empty=True),
    # --- optimisation -------------------------------------------------------------------
    _H("epochs", int, 3, "training epochs", "optimisation", parameter="epochs", minimum=1),
    _H("learning_rate", float, 2e-5, "peak learning rate (AdamW)", "optimisation",
       parameter="learning_rate", minimum=0, maximum=1, exclusive_minimum=True, exclusive_maximum=True),
    _H("batch_size", int, 32, "examples per device per micro-batch", "optimisation",
       parameter="batch_size", minimum=1),
    _H("max_seq_length", int, 128, "truncate inputs to this many tokens (at most the model's own positions)",
       "data", parameter="max_seq_length", minimum=8, maximum=MAX_POSITIONS),
    _H("long_text", str, "truncate", "texts longer than --max-seq-length: truncate (keep the start), head+tail "
       "(a quarter of the tokens from the start, the rest from the end) or chunk (overlapping windows, "
       "logits averaged per text); head+tail and chunk take single texts (no --text-pair-column)", "data",
       choices=LONG_TEXT, parameter="long_text"),
    _H("chunk_overlap", int, None, "--long-text chunk: tokens a window shares with the one before (less than "
       "half of --max-seq-length; default: a quarter of it)", "data", minimum=0, parameter="chunk_overlap"),
    _H("text_column", str, "sentence", "column with the text", "data",
       parameter="text_column", non_empty=True),
    _H("label_column", str, "label", "column with the label: a string or an integer; for multi-label a JSON "
       "list (JSONL) or separated labels (CSV/TSV); for regression a number", "data",
       parameter="label_column", non_empty=True),
    _H("problem_type", str, tasks.SINGLE_LABEL, "|".join(tasks.PROBLEM_TYPES) + ": one class per row "
       "(softmax), any number of labels per row (sigmoid, thresholds tuned on --eval), or a number (MSE)",
       "data", choices=tasks.PROBLEM_TYPES, parameter="problem_type"),
    _H("label_separator", str, ",", "multi-label: what separates the labels of a CSV/TSV label field",
       "data", non_empty=True, parameter="label_separator"),
    _H("text_pair_column", str, None, "optional column with the second text of a sentence pair", "data",
       parameter="text_pair_column"),
    _H("vocab", str, None, "WordPiece vocab.txt for random:* models", "model",
       container_only="a local file; random:* models are for local checks"),
    _H("max_steps", int, None, "stop after this many optimizer steps", "optimisation", minimum=1,
       parameter="max_steps"),
    _H("eval_batch_size", int, None, "examples per device per eval batch (default 2 x batch size)",
       "optimisation", minimum=1, parameter="eval_batch_size"),
    _H("gradient_accumulation_steps", int, 1, "micro-batches per optimizer step", "optimisation", minimum=1,
       parameter="gradient_accumulation_steps"),
    _H("warmup_ratio", float, 0.06, "fraction of steps with linear warmup, then linear decay to 0",
       "optimisation", minimum=0, maximum=1, exclusive_maximum=True, parameter="warmup_ratio"),
    _H("weight_decay", float, 0.01, "AdamW weight decay (not applied to biases and LayerNorm)",
       "optimisation", minimum=0, maximum=1, parameter="weight_decay"),
    _H("max_grad_norm", float, 1.0, "gradient clipping norm", "optimisation",
       minimum=0, exclusive_minimum=True, parameter="max_grad_norm"),
    _H("precision", str, "auto", "auto|bf16|fp16|fp32 (auto: bf16 on Ampere+, fp16 on older GPUs; "
       "on CPU bf16 with AVX512-BF16/AMX, else fp32)", "optimisation", choices=PRECISIONS,
       parameter="precision"),
    # auto is on for CUDA without a GPU measurement yet: bench/gpu.sh decides it (bench/README.md).
    # Off on CPU: the compile time did not pay back within a fine-tuning run there (bench.compile).
    _H("compile", str, "auto", "off|on|auto: run the model under torch.compile (auto: on for CUDA, off on "
       "CPU); the compile time is in metrics.json", "optimisation", choices=COMPILE_MODES, parameter="compile"),
    _H("class_weights", str, "none", "none|balanced: weigh each class's loss by its inverse frequency "
       "(multi-label: positive weight negatives/positives per label)", "optimisation",
       choices=tasks.CLASS_WEIGHTS, parameter="class_weights"),
    _H("seed", int, 42, "random seed: same seed, same data order and results", "optimisation",
       minimum=0, maximum=MAX_SEED, parameter="seed"),
    # --- evaluation and early stopping --------------------------------------------------
    _H("eval_steps", int, None, "evaluate every N optimizer steps, and at the last step (default: at "
       "each epoch end)", "evaluation", minimum=1, parameter="eval_steps"),
    # One metric serves early stopping and the choice of the published model: the model that
    # stopped improving is the one a user wants.
    _H("early_stopping_metric", str, None, "the metric for early stopping and for the published model, the "
       "best evaluation by it (default: " + ", ".join(f"{tasks.default_metric(p)} for {p}" for p in tasks.PROBLEM_TYPES)
       + ")", "evaluation",
       choices=EARLY_STOPPING_METRICS, parameter="early_stopping_metric"),
    _H("early_stopping_patience", int, 0, "stop after N evaluations without improvement (0: off)",
       "evaluation", minimum=0, parameter="early_stopping_patience"),
    # --- checkpoints --------------------------------------------------------------------
    # None = $CHECKPOINT_EVERY_STEPS / $CHECKPOINT_EVERY_MINUTES, else the job defaults.
    _H("checkpoint_every_steps", int, None, f"checkpoint every N steps (${job.ENV_CHECKPOINT_EVERY_STEPS}, "
       f"default {job.DEFAULT_CHECKPOINT_EVERY_STEPS})", "checkpoints", minimum=1,
       container_only=CADENCE_FROM_ENVIRONMENT),
    _H("checkpoint_every_minutes", float, None, f"...or every M minutes, whichever first "
       f"(${job.ENV_CHECKPOINT_EVERY_MINUTES}, default {job.DEFAULT_CHECKPOINT_EVERY_MINUTES:g})",
       "checkpoints", minimum=0, exclusive_minimum=True, container_only=CADENCE_FROM_ENVIRONMENT),
    _H("keep_checkpoints", int, 2, "keep the newest K complete checkpoints", "checkpoints", minimum=1,
       parameter="keep_checkpoints"),
    # --- locations ----------------------------------------------------------------------
    _H("run_id", str, None, f"run id (default ${job.ENV_RUN_ID}, else ${job.ENV_BATCH_JOB_ID}, else "
       "generated)", "locations", check=_check_run_id,
       container_only="the CLI sets $RUN_ID; it survives retries and fallback resubmission"),
    _H("output_uri", str, None, f"where the model goes (default ${job.ENV_ARTIFACTS_URI}/runs/<run-id>/)",
       "locations", container_only=LOCATION_FROM_ENVIRONMENT),
    _H("checkpoint_uri", str, None, f"where checkpoints go (default ${job.ENV_CHECKPOINT_URI}/<run-id>/)",
       "locations", container_only=LOCATION_FROM_ENVIRONMENT),
    _H("work_dir", str, None, f"local scratch directory (default ${job.ENV_WORK_DIR} or a temp dir)",
       "locations", container_only=LOCATION_FROM_ENVIRONMENT),
    _H("cache_dir", str, None, f"cache for models downloaded from S3 (default ${job.ENV_CACHE_DIR} or "
       "~/.cache/bert_train)", "locations", container_only=LOCATION_FROM_ENVIRONMENT),
    # --- logging ------------------------------------------------------------------------
    _H("logging_steps", int, 50, "progress line and metrics every N steps", "logging", minimum=1,
       parameter="logging_steps"),
    # Length grouping: sort by length within windows of this many global batches. transformers'
    # LengthGroupedSampler uses 50 (SST-2: 4.7 % of computed tokens are padding); 500 leaves 0.5 %.
    _H("megabatch_factor", int, 500, "length grouping window, in global batches", "logging", minimum=1,
       parameter="megabatch_factor"),
)


def _check_placed(rows: Iterable[Hyperparameter]) -> None:
    for row in rows:
        if bool(row.parameter) == bool(row.container_only):
            raise ValueError(f"hyperparameter {row.name}: give it a job parameter, or say why it is container_only")


_check_placed(HYPERPARAMETERS)
BY_NAME: dict[str, Hyperparameter] = {h.name: h for h in HYPERPARAMETERS}
# Ref:: parameter name -> row, in command order.
JOB_PARAMETERS: dict[str, Hyperparameter] = {h.parameter: h for h in HYPERPARAMETERS if h.parameter}
INPUT_PARAMETERS = ("train_uri", "eval_uri")  # filled in by the stack from the data bucket


def default(name: str) -> Value | None:
    return BY_NAME[name].default


def validate(values: Mapping[str, object]) -> dict[str, Value]:
    """Check the given values (field name -> raw value; None = not given) and return them
    converted. Raises InvalidHyperparameter with one line naming the flag and the value.

    The CLI passes what the user gave; the container passes its whole configuration, so the
    checks that need two values run when both are present.
    """
    out: dict[str, Value] = {}
    for name, raw in values.items():
        row = BY_NAME.get(name)
        if row is None and raw is not None:
            raise InvalidHyperparameter(f"unknown hyperparameter {name!r} (known: {', '.join(BY_NAME)})")
        if row is None or raw is None or (row.optional and raw == ""):
            continue  # not given ("" is how a job definition's default leaves an optional flag unset)
        out[name] = row.parse(raw)
    for needs_eval in ("early_stopping_patience", "eval_steps"):
        if out.get(needs_eval) and "eval" in values and not out.get("eval"):
            raise InvalidHyperparameter(f"{BY_NAME[needs_eval].flag} needs --eval")
    _check_task(out)
    check_long_text(out)
    return out


def _check_task(out: Mapping[str, Value]) -> None:
    """The settings that depend on the problem type (not given: the default, as in the job)."""
    problem_type = str(out.get("problem_type") or default("problem_type"))
    metric = out.get("early_stopping_metric")
    if metric and metric not in tasks.METRICS[problem_type]:
        raise InvalidHyperparameter(f"--early-stopping-metric {metric}: a {problem_type} run reports "
                                    f"{', '.join(tasks.METRICS[problem_type])}")
    if out.get("class_weights") == "balanced" and problem_type == tasks.REGRESSION:
        raise InvalidHyperparameter("--class-weights balanced: a regression run has no classes")


def metric_of(problem_type: str, early_stopping_metric: str | None) -> str:
    """The metric early stopping (and the best model) follow: the flag, else the task's default."""
    return early_stopping_metric or tasks.default_metric(problem_type)


def check_long_text(values: Mapping[str, Value]) -> None:
    """--long-text head+tail and chunk cut a single text (a pair is truncated longest first), and a
    window must move on by more than it overlaps; checked where both values are known."""
    mode, overlap, length = values.get("long_text"), values.get("chunk_overlap"), values.get("max_seq_length")
    if mode in ("head+tail", "chunk") and values.get("text_pair_column"):
        raise InvalidHyperparameter(f"--long-text {mode}: needs single texts; with --text-pair-column "
                                    "use --long-text truncate")
    if mode == "chunk" and isinstance(overlap, int) and isinstance(length, int) and 2 * overlap >= length:
        raise InvalidHyperparameter(f"--chunk-overlap {overlap}: must be less than half of "
                                    f"--max-seq-length {length}")


def by_parameter(values: Mapping[str, object]) -> dict[str, Value]:
    """validate() for values keyed by job parameter name (a sweep row, a grid file)."""
    names: dict[str, object] = {}
    for parameter, raw in values.items():
        row = JOB_PARAMETERS.get(parameter)
        if row is None:
            raise InvalidHyperparameter(
                f"unknown job parameter {parameter!r} (known: {', '.join(JOB_PARAMETERS)})"
            )
        names[row.name] = raw
    checked = validate(names)
    return {BY_NAME[name].parameter or name: value for name, value in checked.items()}


def add_arguments(parser: argparse.ArgumentParser, rows: Iterable[Hyperparameter] = HYPERPARAMETERS) -> None:
    """One flag per row. Values stay strings here (argparse.SUPPRESS keeps unset flags out);
    `validate` converts them, so the container and the CLI reject a value in the same words."""
    for row in rows:
        parser.add_argument(
            row.flag,
            dest=row.name,
            metavar=row.name.upper() if not row.choices else "{" + ",".join(row.choices) + "}",
            required=row.required,
            default=argparse.SUPPRESS,
            help=row.help + ("" if row.default in (None, "") else f" (default: {format_value(row.default)})"),
        )


def job_command() -> list[str]:
    """`--flag Ref::name` for every job parameter: the job definitions' command."""
    command: list[str] = []
    for parameter, row in JOB_PARAMETERS.items():
        command += [row.flag, f"Ref::{parameter}"]
    return command


def parameter_defaults() -> dict[str, str]:
    """Defaults of the job parameters (the inputs come from the stack). An optional flag's is ""
    (not given): a `Ref::` without a default would reach the container as its literal text."""
    return {
        parameter: row.job_default
        for parameter, row in JOB_PARAMETERS.items()
        if parameter not in INPUT_PARAMETERS
    }
