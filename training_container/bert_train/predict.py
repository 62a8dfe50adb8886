"""`python -m bert_train predict`: score a JSONL/CSV/TSV file with a trained run's model.

    python -m bert_train predict --model runs/<run-id>/ --input rows.tsv --output predictions/x/ \
        [--text-column C] [--text-pair-column C] [--id-column C] [--shard-index I --shards N] \
        [--batch-size N] [--max-seq-length N] [--precision auto|bf16|fp32]

`--max-seq-length` and `--text-pair-column` default to what the run was trained with (its
training_args.json), so a model scores its inputs the way it saw them in training.

Flags, bounds and defaults are `bertbatch_contract.prediction.OPTIONS` (the CLI validates with the
same table before submit). An array job's child i scores shard i: a contiguous slice of the rows
(`prediction.shard_rows`). Every input problem is found before anything is written: one line,
exit 2. A shard already done (part file + manifest that match) is skipped, so a Spot retry or a
rerun redoes only the missing shards; SIGTERM stops between batches with exit 75 and writes
nothing for the shard.

Fast path: no autograd (inference mode), eval mode, the tokenizer run on whole chunks of rows,
rows sorted by length so each batch holds similar lengths, BERT classifiers run unpadded on the
CPU (`modeling.UnpaddedBert`: no compute on padding; measured there only), others (and every model
on a GPU) padded per batch; bf16 autocast on GPUs that have it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bertbatch_contract import job, layout, prediction, tasks
from bertbatch_contract.hyperparameters import InvalidHyperparameter

from . import fsx, long_text, predict_segments, storage
from .config import PROG, BadInput
from .errors import StoreUnavailable
from .predict_io import (
    Job,
    Row,
    Scorer,
    count_rows,
    finished_shard,
    iter_rows,
    prediction_line,
    write_manifest_if_complete,
)
from .tasks import Task

log = logging.getLogger(PROG)

# Rows tokenized (and sorted by length) at a time: bounds memory on big shards while keeping
# enough rows together that batches hold similar lengths.
CHUNK_ROWS = 8192


def _default(name: str) -> Any:
    return prediction.BY_NAME[name].default


@dataclass(frozen=True)
class PredictConfig:
    """One field per row of `prediction.OPTIONS`, with the row's default."""

    model: str
    input: str
    output: str | None = _default("output")
    text_column: str = _default("text_column")
    text_pair_column: str | None = _default("text_pair_column")
    id_column: str | None = _default("id_column")
    shards: int | None = _default("shards")
    shard_index: int | None = _default("shard_index")
    batch_size: int = _default("batch_size")
    max_seq_length: int | None = _default("max_seq_length")  # None: the run's (`with_training_args`)
    long_text: str | None = _default("long_text")  # None: the run's
    chunk_overlap: int | None = _default("chunk_overlap")  # None: the run's
    precision: str = _default("precision")
    prediction_id: str | None = _default("prediction_id")
    cache_dir: str | None = _default("cache_dir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog=f"{PROG} {prediction.SUBCOMMAND}",
                                     description="Score a JSONL/CSV/TSV file with a trained model.")
    prediction.add_options(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> PredictConfig:
    """Usage errors exit 2 through argparse; a bad value raises BadInput."""
    values = vars(build_parser().parse_args(argv))
    try:
        checked: dict[str, Any] = prediction.validate(values)
    except InvalidHyperparameter as exc:
        raise BadInput(str(exc)) from None
    return PredictConfig(**checked)


def with_training_args(config: PredictConfig) -> PredictConfig:
    """`config` with what the run was trained with (its training_args.json beside the model) where
    the flags leave it open: the sequence length and the text-pair column (`prediction.from_training`:
    a different length is a warning, a pair column for a single-text model bad input)."""
    uri = storage.join(config.model, layout.TRAINING_ARGS_FILE)
    try:
        trained = storage.read_json(uri) or {}
    except storage.StorageError as exc:
        raise StoreUnavailable(f"cannot read {uri}: {exc}") from None
    given = {name: value for name, value in asdict(config).items() if value is not None}
    try:
        resolved, warnings = prediction.from_training(given, trained)
    except InvalidHyperparameter as exc:
        raise BadInput(str(exc)) from None
    for line in warnings:
        log.warning("%s", line)
    values: dict[str, Any] = resolved
    return PredictConfig(**values)


@dataclass(frozen=True)
class Target:
    """Where this process writes and which shard it scores, from the flags and the job environment."""

    output: str
    shards: int
    shard_index: int
    cache_dir: str


def _env_int(env: Mapping[str, str], variable: str, name: str) -> int | None:
    raw = env.get(variable)
    if raw is None or raw == "":
        return None
    row = prediction.BY_NAME[name]
    try:
        return int(row.parse(raw))
    except InvalidHyperparameter:
        raise BadInput(f"${variable}={raw!r}: must be {row.rule()}") from None


def resolve_target(config: PredictConfig, env: Mapping[str, str] | None = None) -> Target:
    """Pure: creates nothing."""
    env = os.environ if env is None else env
    if config.output:
        output = config.output
    else:
        prediction_id = config.prediction_id or env.get(job.ENV_PREDICTION_ID)
        if not (env.get(job.ENV_ARTIFACTS_URI) and prediction_id):
            raise BadInput(f"no output location: pass --output, or set ${job.ENV_ARTIFACTS_URI} and "
                           f"--prediction-id or ${job.ENV_PREDICTION_ID}")
        problem = prediction.BY_NAME["prediction_id"].check
        if problem and problem(prediction_id):
            raise BadInput(f"prediction id {prediction_id!r}: {problem(prediction_id)}")
        output = layout.join(env[job.ENV_ARTIFACTS_URI], layout.prediction_prefix(prediction_id))
    shards = config.shards or _env_int(env, job.ENV_PREDICT_SHARDS, "shards") or 1
    index = config.shard_index
    if index is None:
        index = _env_int(env, job.ENV_PREDICT_SHARD_INDEX, "shard_index")
    if index is None:
        index = _env_int(env, job.ENV_BATCH_ARRAY_INDEX, "shard_index")
    index = index or 0
    if index >= shards:
        raise BadInput(f"shard index {index}: must be < the number of shards ({shards})")
    cache_dir = (config.cache_dir or env.get(job.ENV_CACHE_DIR)
                 or os.path.join(os.path.expanduser("~"), ".cache", "bert_train"))
    return Target(output=output, shards=shards, shard_index=index, cache_dir=cache_dir)


# --- the model ------------------------------------------------------------------------------------


@dataclass
class Predictor:
    tokenizer: Any
    model: Any  # the transformers model, in eval mode on `device`
    runner: Any  # what is called: `model`, or `modeling.UnpaddedBert(model)`
    scorer: Scorer  # the run's problem type, labels and thresholds
    unpadded: bool
    device: Any
    precision: str
    token_types: bool = False  # pairs give the model token type ids (`modeling.token_types_used`)


def read_label_map(location: str, model: str) -> Scorer:
    """How the model's outputs read, from the label map a training run saved beside it
    (`outputs.write_local`), checked against its config. A map from before problem types is
    single-label."""
    from .outputs import LABEL_MAP_FILE

    path = Path(location) / LABEL_MAP_FILE
    try:
        label_map = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{model}: no {LABEL_MAP_FILE} (not the output directory of a training run?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{model}: cannot read {LABEL_MAP_FILE} ({exc})") from None
    if not isinstance(label_map, dict):
        raise BadInput(f"{model}: {LABEL_MAP_FILE} is not a JSON object")
    problem_type = label_map.get("problem_type", tasks.SINGLE_LABEL)
    if problem_type not in tasks.PROBLEM_TYPES:
        raise BadInput(f"{model}: {LABEL_MAP_FILE} names an unknown problem_type {problem_type!r}")
    labels = label_map.get("labels")
    needed = {tasks.SINGLE_LABEL: 2, tasks.MULTI_LABEL: 1, tasks.REGRESSION: 0}[problem_type]
    if not isinstance(labels, list) or len(labels) < needed or not all(isinstance(x, str) for x in labels):
        raise BadInput(f"{model}: {LABEL_MAP_FILE} has no list of at least {needed} string labels under 'labels'")
    thresholds = label_map.get("thresholds") or {}
    if problem_type == tasks.MULTI_LABEL and (not isinstance(thresholds, dict) or set(thresholds) != set(labels)):
        raise BadInput(f"{model}: {LABEL_MAP_FILE} needs a threshold for every label under 'thresholds'")
    config_path = Path(location) / "config.json"
    try:
        id2label = json.loads(config_path.read_text(encoding="utf-8")).get("id2label")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        id2label = None  # the loader reports a missing or broken config.json
    if isinstance(id2label, dict) and len(id2label) != max(len(labels), 1):
        raise BadInput(f"{model}: {LABEL_MAP_FILE} has {len(labels)} labels but config.json {len(id2label)}")
    return Scorer(problem_type, tuple(labels), tuple(float(thresholds[x]) for x in labels)
                  if problem_type == tasks.MULTI_LABEL else ())


def load_predictor(model_uri: str, cache_dir: str, precision: str, max_seq_length: int, *,
                   pairs: bool = False) -> Predictor:
    """The model, tokenizer and labels of a training run's output (a directory or s3:// prefix)."""
    import torch

    from . import long_text, modeling
    from .runtime import choose_precision

    if not storage.is_s3(model_uri) and not os.path.isdir(model_uri):
        raise BadInput(f"{model_uri}: model directory not found")
    tokenizer, location = modeling.build_tokenizer(model_uri, None, cache_dir)
    scorer = read_label_map(location, model_uri)
    model = modeling.build_model(location, list(scorer.labels), len(tokenizer), problem_type=scorer.problem_type)
    token_types = modeling.token_types_used(model, tokenizer, pairs=pairs)
    long_text.check_positions(max_seq_length, model, model_uri)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = choose_precision(precision, device)
    if chosen == "fp16":  # `auto` on a GPU without bf16: fp32 rather than unscaled fp16
        chosen = "fp32"
    model.to(device).eval()
    runner, unpadded = runner_for(model, device)
    return Predictor(tokenizer=tokenizer, model=model, runner=runner, scorer=scorer, unpadded=unpadded,
                     device=device, precision=chosen, token_types=token_types)


def runner_for(model: Any, device: Any) -> tuple[Any, bool]:
    """What scores the rows, and whether it takes unpadded batches: `modeling.UnpaddedBert` for a
    BERT classifier on the CPU, where it was measured (bench/predict.py); the model itself
    elsewhere, a GPU included, until bench/gpu.sh shows otherwise (`modeling.cpu_tuned`)."""
    from . import modeling

    if modeling.supports_direct(model) and modeling.cpu_tuned(device):
        return modeling.UnpaddedBert(model).eval(), True
    return model, False


def score(p: Predictor, rows: Sequence[Row], *, batch_size: int, max_seq_length: int | long_text.Fit,
          stop_requested: Callable[[], bool], on_batch: Callable[[int], None] | None = None) -> list[str] | None:
    """The part file's lines for `rows`, in row order (a row longer than the max length marked
    `"truncated": true`); None if a stop was requested. `max_seq_length`: a length (truncated,
    keeping the start) or the run's `long_text.Fit`."""
    import torch

    from . import data, long_text
    from .runtime import autocast_for

    autocast = autocast_for(p.precision, p.device)
    task = Task(p.scorer.problem_type, p.scorer.labels)  # probabilities or the value from the logits
    fit = long_text.Fit.of_length(max_seq_length)
    pad_id = p.tokenizer.pad_token_id
    multiple_of = 8 if p.device.type == "cuda" else 1
    lines: list[str] = []
    batches_done = 0
    with torch.inference_mode():
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start:start + CHUNK_ROWS]
            pairs = [r.pair or "" for r in chunk] if chunk[0].pair is not None else None
            tok = long_text.tokenize(p.tokenizer, [r.text for r in chunk], pairs, fit, token_types=p.token_types)
            encoded = data.Encoded(input_ids=tok.input_ids, token_type_ids=tok.token_type_ids,
                                   labels=[0] * len(chunk),  # collate wants labels; they are not used
                                   window_starts=tok.window_starts, truncated=tok.truncated)
            lengths, too_long = encoded.lengths, set(tok.too_long)
            # Longest first (an out-of-memory shows at the first batch). collate_unpadded orders a
            # batch longest first with a stable sort, so on these batches it keeps this order.
            order = sorted(range(len(chunk)), key=lambda i: -lengths[i])
            probabilities: list[list[float]] = [[] for _ in chunk]
            for b in range(0, len(order), batch_size):
                if stop_requested():
                    return None
                idx = order[b:b + batch_size]
                batch = (data.collate_unpadded(encoded, idx) if p.unpadded
                         else data.collate(encoded, idx, pad_id, multiple_of))
                batch.pop("labels")
                window_doc = batch.pop(long_text.WINDOW_DOC, None)  # --long-text chunk: pooled per row
                with autocast():
                    logits = p.runner(**data.to_device(batch, p.device)).logits.float()
                logits = long_text.pool_logits(logits, window_doc.to(p.device) if window_doc is not None else None,
                                               len(idx))
                for i, row in zip(idx, task.scores(logits).view(len(idx), -1).cpu().tolist(), strict=True):
                    probabilities[i] = row
                batches_done += 1
                if on_batch:
                    on_batch(batches_done)
            lines.extend(prediction_line(r, p.scorer, probs, truncated=i in too_long)
                         for i, (r, probs) in enumerate(zip(chunk, probabilities, strict=True)))
    return lines


# --- the run ----------------------------------------------------------------------------------------


@dataclass
class PredictResult:
    exit_code: int
    output: str
    shard: int
    shards: int
    rows: int  # rows of this shard
    skipped: bool = False  # the shard was already done
    manifest_written: bool = False  # the top-level manifest exists (every shard is done)
    score_seconds: float = 0.0  # tokenizing + forward passes of this shard
    rows_per_second: float | None = None


def run(config: PredictConfig, *, env: Mapping[str, str] | None = None,
        on_batch: Callable[[int], None] | None = None) -> PredictResult:
    """Score this process's shard. Raises BadInput before anything is written; StorageError
    (StoreUnavailable while checking what is done) when S3 fails. `on_batch(n)` after every batch."""
    target = resolve_target(config, env)
    config = with_training_args(config)
    source = fsx.input_location(config.input)
    # The shards are cut by row number: count the rows (lines, where the format allows), then
    # check every row of this shard before anything is written.
    total = count_rows(source, config.text_column, config.text_pair_column, config.id_column)
    shard_range = prediction.shard_rows(total, target.shards, target.shard_index)
    for _ in iter_rows(source, config.text_column, config.text_pair_column, config.id_column, shard_range):
        pass
    predictor = load_predictor(config.model, target.cache_dir, config.precision, seq_length(config),
                               pairs=config.text_pair_column is not None)
    try:
        storage.check_writable(target.output)
    except storage.Refused as exc:
        raise BadInput(f"output location {exc}") from None
    except storage.StorageError as exc:  # S3 could not answer: exit 74, retried
        raise StoreUnavailable(f"output location {exc}") from None
    run_job = Job(output=target.output, model=config.model, input=config.input, shards=target.shards,
                  total_rows=total)
    name = f"shard {target.shard_index + 1}/{target.shards} (rows {shard_range.start}-{shard_range.stop - 1})"
    result = PredictResult(exit_code=job.EXIT_OK, output=target.output, shard=target.shard_index,
                           shards=target.shards, rows=len(shard_range))
    try:
        done = finished_shard(run_job, target.shard_index)
        segments_done = 0 if done is not None else predict_segments.resume_point(run_job, target.shard_index,
                                                                                 shard_range)
    except storage.StorageError as exc:
        raise StoreUnavailable(f"cannot tell whether {name} is done: {exc}") from None
    if done is not None:
        log.info("%s: already done (%s), skipping", name, layout.prediction_part(target.shard_index))
        result.skipped = True
    else:
        if not score_shard(config, predictor, run_job, source, target.shard_index, shard_range, segments_done,
                           result, on_batch):
            return result
        shard_manifest = predict_segments.finish(run_job, target.shard_index, shard_range)
        log.info("%s: %d rows scored in %.2f s (%.1f rows/s, %s, %s) -> %s", name, len(shard_range),
                 result.score_seconds, result.rows_per_second or 0.0, predictor.precision,
                 "unpadded" if predictor.unpadded else "padded per batch",
                 storage.join(target.output, layout.prediction_part(target.shard_index)))
        log.info("%s: %d of %d rows longer than --max-seq-length %d: %s", name, shard_manifest["truncated_rows"],
                 len(shard_range), seq_length(config), fit_of(config).describe())
    result.manifest_written = write_manifest_if_complete(run_job, predictor.scorer,
                                                         shard_written=not result.skipped)
    if result.manifest_written:
        log.info("every shard is done: %s", storage.join(target.output, layout.PREDICTION_MANIFEST))
    return result


def seq_length(config: PredictConfig) -> int:
    """The resolved --max-seq-length (set by `with_training_args`)."""
    return config.max_seq_length or prediction.DEFAULT_MAX_SEQ_LENGTH


def fit_of(config: PredictConfig) -> long_text.Fit:
    """How rows are fitted to the resolved --max-seq-length (--long-text, set by `with_training_args`)."""
    return long_text.Fit.build(seq_length(config), config.long_text, config.chunk_overlap)


def score_shard(config: PredictConfig, predictor: Predictor, run_job: Job, source: str, shard: int,
                shard_range: range, segments_done: int, result: PredictResult,
                on_batch: Callable[[int], None] | None) -> bool:
    """Score the shard's rows after its first `segments_done` segments, streaming them from the
    input and writing a segment per `layout.PREDICTION_SEGMENT_ROWS` rows. False when a SIGTERM
    stopped it (exit code set; the whole segments stay for the retry)."""
    from .runtime import StopRequest

    per_segment = layout.PREDICTION_SEGMENT_ROWS
    todo = range(shard_range.start + segments_done * per_segment, shard_range.stop)
    if segments_done:
        log.info("shard %d: %d of %d rows already scored; continuing at row %d", shard, len(shard_range) - len(todo),
                 len(shard_range), todo.start)
    else:
        predict_segments.start(run_job, shard)
    rows = iter_rows(source, config.text_column, config.text_pair_column, config.id_column, todo)
    batches = 0

    def counted(n: int) -> None:
        if on_batch:
            on_batch(batches + n)

    stop = StopRequest(then="stopping after the current batch; the shard continues after its last segment on retry")
    stop.install()
    t0, scored = time.monotonic(), 0
    try:
        for segment in itertools.count(segments_done):
            chunk = list(itertools.islice(rows, per_segment))
            if not chunk:
                break
            lines = score(predictor, chunk, batch_size=config.batch_size, max_seq_length=fit_of(config),
                          stop_requested=lambda: stop.requested, on_batch=counted)
            if lines is None:
                log.warning("shard %d: %s received, stopped between batches; %d whole segment(s) kept", shard,
                            stop.signame, segment)
                result.exit_code = job.EXIT_INTERRUPTED
                return False
            batches += -(-len(chunk) // config.batch_size)
            predict_segments.write_segment(run_job, shard, segment, lines)
            scored += len(chunk)
    finally:
        stop.uninstall()
        result.score_seconds = time.monotonic() - t0
    result.rows_per_second = scored / result.score_seconds if result.score_seconds else None
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """The `predict` subcommand's exit code (bertbatch_contract.job): 0 done; 2 bad input (one line
    on stderr, nothing written); 75 stopped by SIGTERM; 74 S3 failed (retry: done shards are skipped)."""
    try:
        config = parse_args(argv)
    except BadInput as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return job.EXIT_BAD_INPUT
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format=f"%(asctime)s {PROG} predict %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        return run(config).exit_code
    except BadInput as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return job.EXIT_BAD_INPUT
    except (StoreUnavailable, storage.StorageError) as exc:  # idempotent per shard: a retry resumes
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return job.EXIT_STORAGE_UNAVAILABLE
