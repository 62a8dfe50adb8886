"""The finished model: written once, at the end, to <output>/ (ARTIFACTS_URI/runs/<run-id>/).

Everything is assembled in a local directory first and then copied, with metrics.json last, so
a reader that finds metrics.json knows the rest is there. A failed run never gets here: it
leaves its checkpoints, not half a model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import contract, storage

LABEL_MAP_FILE = "label_map.json"
TRAINING_ARGS_FILE = "training_args.json"
MODEL_CARD_FILE = "README.md"


def _model_card(run_id: str, config: dict, metrics: dict, labels: list[str]) -> str:
    hp = ["learning_rate", "epochs", "batch_size", "gradient_accumulation_steps", "max_seq_length",
          "warmup_ratio", "weight_decay", "precision", "seed"]
    rows = "\n".join(f"| {k} | {config.get(k)} |" for k in hp)
    scores = "\n".join(
        f"| {k} | {metrics[k]:.4f} |" for k in ("eval_accuracy", "eval_f1", "eval_loss", "train_loss")
        if metrics.get(k) is not None
    )
    return f"""# {run_id}

Sequence classifier fine-tuned from `{config.get('model')}` by bert-batch.

- Run id: `{run_id}`
- Image: `{os.environ.get(contract.ENV_IMAGE, 'none (run outside the training image)')}`
- Training data: `{config.get('train')}`
- Evaluation data: `{config.get('eval') or 'none'}`
- Text column: `{config.get('text_column')}`{f", pair column: `{config['text_pair_column']}`" if config.get('text_pair_column') else ''}; label column: `{config.get('label_column')}`
- Labels ({len(labels)}): {', '.join(f'`{x}`' for x in labels)}
- Steps: {metrics.get('global_step')} ({metrics.get('epochs_completed', 0):.2f} epochs, global batch {metrics.get('global_batch_size')}, {metrics.get('world_size')} process(es))

## Hyperparameters

| name | value |
|---|---|
{rows}

## Final metrics

| metric | value |
|---|---|
{scores}

Full numbers and the per-epoch history are in `{contract.METRICS_FILE}`; every argument is in
`{TRAINING_ARGS_FILE}`.
"""


def write_local(directory: Path, *, model, tokenizer, labels: list[str], run_id: str, config: dict,
                metrics: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)  # config.json + model.safetensors
    tokenizer.save_pretrained(directory)
    label_map = {"labels": labels, "id2label": dict(enumerate(labels)), "label2id": {x: i for i, x in enumerate(labels)}}
    (directory / LABEL_MAP_FILE).write_text(json.dumps(label_map, indent=2) + "\n")
    (directory / TRAINING_ARGS_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")
    (directory / MODEL_CARD_FILE).write_text(_model_card(run_id, config, metrics, labels))
    (directory / contract.METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")


def publish(directory: Path, uri: str) -> list[str]:
    """Copy every file to `uri`, metrics.json last. Returns the relative names written."""
    names = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    names.sort(key=lambda n: n == contract.METRICS_FILE)
    for name in names:
        storage.upload_file(directory / name, storage.join(uri, name))
    return names
