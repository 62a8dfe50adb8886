"""The finished model: written once, at the end, to <output>/ (ARTIFACTS_URI/runs/<run-id>/).

`metrics_record()` is what metrics.json (and TrainResult.metrics) holds, with `published_record()`:
which step's weights are published and why; `write_local()` puts it
beside the model, tokenizer, label map, arguments and model card; `publish()` copies them.

Everything is assembled in a local directory first and then copied, with metrics.json last, so
a reader that finds metrics.json knows the rest is there. A failed run never gets here: it
leaves its checkpoints, not half a model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bertbatch_contract import job, layout
from bertbatch_contract import tasks as problem_types

from . import storage
from .checkpoint import first_nonfinite
from .config import BadInput, Locations
from .errors import Diverged, StoreUnavailable
from .state import TrainState
from .tasks import DEFAULT_THRESHOLD, Task

LABEL_MAP_FILE = layout.LABEL_MAP_FILE
TRAINING_ARGS_FILE = layout.TRAINING_ARGS_FILE
MODEL_CARD_FILE = "README.md"


def check_destinations(loc: Locations) -> None:
    """Check that the output and checkpoint locations can take files, before any training rather
    than after an hour of it (storage.check_writable): BadInput when a location is wrong (no such
    bucket, no permission there), StoreUnavailable (retried) when S3 cannot answer."""
    for what, uri in (("output", loc.output_uri), ("checkpoint", loc.checkpoint_uri)):
        if not uri:
            continue
        try:
            storage.check_writable(uri)
        except storage.Refused as exc:
            raise BadInput(f"{what} location {exc}") from None
        except storage.StorageError as exc:
            raise StoreUnavailable(f"{what} location {exc}") from None


def published_record(state: TrainState, metric: str) -> dict[str, Any]:
    """Which step's model a finished run publishes, and why: the best evaluation by `metric`
    (the early-stopping metric), or the last step when there was no evaluation."""
    if state.best_metric is None:
        return last_step_record(state, "no evaluation data")
    return {"step": state.best_step, "reason": f"best {metric} {state.best_metric:.4f} at step {state.best_step} "
            f"of {state.step}", "metric": metric, "value": state.best_metric}


def last_step_record(state: TrainState, why: str) -> dict[str, Any]:
    """The published record of the last step's model, saying `why` it is not the best one."""
    return {"step": state.step, "reason": f"the last step, {state.step} of {state.step}: {why}", "metric": None,
            "value": None}


def metrics_record(state: TrainState, *, run_id: str, total_steps: int, steps_per_epoch: int,
                   early_stopping_metric: str, checkpoint_seconds: list[float], checkpoint_blocking_seconds: float,
                   resumed_from_step: int | None, global_batch_size: int, world_size: int,
                   precision: str, published: dict[str, Any], task: Task, details: dict[str, Any],
                   efficiency: dict[str, Any]) -> dict[str, Any]:
    """The final metrics of a finished run: the published model's evaluation (`published`, from
    `published_record`: every metric of the problem type, None without --eval) and its details
    (per class, confusion matrix, thresholds), the best one, throughput and checkpoint cost, and
    the per-evaluation history (the last evaluation among them). `efficiency` holds MFU and the GPU
    memory peak (bertbatch_contract.efficiency.RECORD_KEYS; empty when not measured)."""
    final = next((dict(h) for h in state.history if h["step"] == published["step"]), {})
    return {
        "run_id": run_id,
        "problem_type": task.problem_type,
        "global_step": state.step,
        "total_steps": total_steps,
        "epochs_completed": state.step / steps_per_epoch,
        "early_stopped": state.early_stopped,
        # eval_accuracy, eval_f1 and eval_loss are always there (None where the type has none)
        **{name: final.get(name) for name in ("eval_accuracy", "eval_f1", "eval_loss")},
        **{name: final.get(name) for name in problem_types.METRICS[task.problem_type]},
        **details,
        "best": {"metric": early_stopping_metric, "value": state.best_metric, "step": state.best_step},
        "published": published,
        "train_loss": state.loss_sum / state.step if state.step else None,
        "samples_per_second": state.samples_per_second,
        "tokens_per_second": state.tokens_per_second,
        **efficiency,
        "padding_fraction": state.padding_fraction,
        "train_seconds": state.train_seconds,
        "checkpoint_seconds": checkpoint_seconds,
        "checkpoint_blocking_seconds": checkpoint_blocking_seconds,
        "resumed_from_step": resumed_from_step,
        "global_batch_size": global_batch_size,
        "world_size": world_size,
        "precision": precision,
        "history": state.history,
    }


def _published_line(metrics: dict[str, Any]) -> str:
    published = metrics.get("published")
    if not published:
        return ""
    return (f"The published weights are step {published['step']}'s ({published['reason']}); the eval numbers are "
            "theirs, train_loss is the mean over the run.\n")


def _model_card(run_id: str, config: dict[str, Any], metrics: dict[str, Any], task: Task) -> str:
    labels = task.labels
    hp = ["learning_rate", "epochs", "batch_size", "gradient_accumulation_steps", "max_seq_length",
          "warmup_ratio", "weight_decay", "precision", "seed"]
    rows = "\n".join(f"| {k} | {config.get(k)} |" for k in hp)
    scores = "\n".join(
        f"| {k} | {metrics[k]:.4f} |" for k in (*problem_types.METRICS[task.problem_type], "train_loss")
        if metrics.get(k) is not None
    )
    pair = f", pair column: `{config['text_pair_column']}`" if config.get("text_pair_column") else ""
    return f"""# {run_id}

Sequence model ({task.problem_type}) fine-tuned from `{config.get('model')}` by bert-batch.

- Run id: `{run_id}`
- Image: `{os.environ.get(job.ENV_IMAGE, 'none (run outside the training image)')}`
- Training data: `{config.get('train')}`
- Evaluation data: `{config.get('eval') or 'none'}`
- Text column: `{config.get('text_column')}`{pair}; label column: `{config.get('label_column')}`
- Labels ({len(labels)}): {', '.join(f'`{x}`' for x in labels)}
- Steps: {metrics.get('global_step')} ({metrics.get('epochs_completed', 0):.2f} epochs, global batch \
{metrics.get('global_batch_size')}, {metrics.get('world_size')} process(es))

## Hyperparameters

| name | value |
|---|---|
{rows}

## Metrics

{_published_line(metrics)}
| metric | value |
|---|---|
{scores}

Full numbers and the per-evaluation history are in `{layout.METRICS_FILE}`; every argument is in
`{TRAINING_ARGS_FILE}`.
"""


def label_map(task: Task, metrics: dict[str, Any]) -> dict[str, Any]:
    """label_map.json: the problem type, the labels in the model's order and, for multi-label, the
    thresholds tuned on the eval set (0.5 each without one), which predict applies."""
    labels = list(task.labels)
    record: dict[str, Any] = {"problem_type": task.problem_type, "labels": labels,
                              "id2label": dict(enumerate(labels)), "label2id": {x: i for i, x in enumerate(labels)}}
    if task.problem_type == problem_types.MULTI_LABEL:
        record["thresholds"] = metrics.get("thresholds") or {x: DEFAULT_THRESHOLD for x in labels}
    return record


def write_local(directory: Path, *, model: Any, tokenizer: Any, task: Task, run_id: str,
                config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Everything in `directory`; `model` and `tokenizer` are transformers objects (save_pretrained).
    Raises Diverged, writing nothing, if a weight is NaN or infinite."""
    bad = first_nonfinite(model)
    if bad is not None:
        raise Diverged(f"weight {bad} is NaN or infinite after step {metrics.get('global_step')}: "
                       "no model published (lower --learning-rate or --max-grad-norm)")
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)  # config.json + model.safetensors
    tokenizer.save_pretrained(directory)
    (directory / LABEL_MAP_FILE).write_text(json.dumps(label_map(task, metrics), indent=2) + "\n")
    (directory / TRAINING_ARGS_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")
    (directory / MODEL_CARD_FILE).write_text(_model_card(run_id, config, metrics, task))
    (directory / layout.METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")


def publish(directory: Path, uri: str) -> list[str]:
    """Copy every file to `uri`, metrics.json last. Returns the relative names written."""
    names = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    names.sort(key=lambda n: n == layout.METRICS_FILE)
    for name in names:
        storage.upload_file(directory / name, storage.join(uri, name))
    return names
