"""The S3 layout: where inputs, checkpoints, outputs, models and predictions live.

    s3://<data-bucket>/datasets/...                 inputs (FSx-linked: also under /fsx/datasets/)
    s3://<data-bucket>/datasets/prepared/<name>/    tokenized stores (`bertbatch prepare`), also on FSx
    s3://<artifacts-bucket>/checkpoints/<run-id>/   step-000000500/... + manifest.json (last)
    s3://<artifacts-bucket>/runs/<run-id>/          the model, metrics.json written last
    s3://<artifacts-bucket>/models/<name>/          staged base models, registered versions
    s3://<artifacts-bucket>/predictions/<id>/       batch scoring output
"""

from __future__ import annotations

DATASETS_PREFIX = "datasets/"
CHECKPOINTS_PREFIX = "checkpoints/"
RUNS_PREFIX = "runs/"
MODELS_PREFIX = "models/"
PREDICTIONS_PREFIX = "predictions/"
# Tokenized stores live beside the inputs they come from, so FSx mirrors them too; the prepare
# job is the only writer (its role may write nothing else), training reads them like any input.
PREPARED_PREFIX = DATASETS_PREFIX + "prepared/"

METRICS_FILE = "metrics.json"  # final metrics, written last in runs/<run-id>/
# checkpoints/<run-id>/step-000000500/<attempt>/... + step-000000500/manifest.json: each attempt
# writes its files under its own key and publishes them with one manifest write (last) that names
# them, so two overlapping attempts never mix; the container keeps the newest K verified ones.
CHECKPOINT_DIR_FORMAT = "step-{step:09d}"
CHECKPOINT_MANIFEST = "manifest.json"

# Default inputs of the job definitions, under the data bucket.
DEFAULT_TRAIN_KEY = DATASETS_PREFIX + "train.tsv"
DEFAULT_EVAL_KEY = DATASETS_PREFIX + "dev.tsv"


def s3_uri(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


def join(base: str, *parts: str) -> str:
    """`base` and `parts` joined by single slashes (base may be an s3:// URI or a path)."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def run_prefix(run_id: str) -> str:
    """Key prefix of a run's outputs: runs/<run-id>/."""
    return f"{RUNS_PREFIX}{run_id}/"


def checkpoint_prefix(run_id: str) -> str:
    """Key prefix of a run's checkpoints: checkpoints/<run-id>/."""
    return f"{CHECKPOINTS_PREFIX}{run_id}/"


def model_prefix(name: str) -> str:
    """Key prefix of a staged or registered model: models/<name>/."""
    return f"{MODELS_PREFIX}{name}/"


def prepared_prefix(name: str) -> str:
    """Key prefix of one tokenized store: datasets/prepared/<name>/."""
    return f"{PREPARED_PREFIX}{name}/"


def prediction_prefix(prediction_id: str) -> str:
    """Key prefix of one batch-scoring run: predictions/<prediction-id>/."""
    return f"{PREDICTIONS_PREFIX}{prediction_id}/"


def checkpoint_dir(step: int) -> str:
    return CHECKPOINT_DIR_FORMAT.format(step=step)


# models/<name>/: a staged model is complete only when its manifest (written last) exists. The
# manifest is JSON: {"format": 1, "name", "source", "created" (ISO 8601 UTC), "total_bytes",
# "files": [{"path", "size", "sha256"}, ...]} (paths relative to models/<name>/).
MODEL_MANIFEST = "manifest.json"
MODEL_MANIFEST_FORMAT = 1


def model_manifest_key(name: str) -> str:
    """Key of a staged model's manifest: models/<name>/manifest.json."""
    return model_prefix(name) + MODEL_MANIFEST


def staged_model_name(model: str) -> str:
    """The name a hub id is staged under (`bertbatch models import`): one S3 path segment,
    bert-base-uncased -> bert-base-uncased, org/x -> org--x."""
    return model.replace("/", "--")


def staged_model_uri(bucket: str, model: str) -> str:
    """Where a job reads the staged copy of `model`: s3://<artifacts>/models/<staged name>/."""
    return s3_uri(bucket, model_prefix(staged_model_name(model)))


def staged_model_name_of(uri: str) -> str | None:
    """The staged name when `uri` is a models/<name>/ prefix (s3://bucket/models/x/), else None."""
    bucket_and_key = uri.removeprefix("s3://").rstrip("/")
    parts = bucket_and_key.split("/")
    if uri.startswith("s3://") and len(parts) == 3 and parts[1] + "/" == MODELS_PREFIX and parts[2]:
        return parts[2]
    return None


# predictions/<id>/: shard i writes part-<i:05d>.jsonl (one JSON object per input row, in row
# order: {"row", "id" (with an id column), then by problem type: "label" and "probabilities":
# {label: float} (single-label); "labels" (those at or over their threshold) and "probabilities"
# (multi-label); "value" (regression)}), then its
# part-<i:05d>.manifest.json ({"format", "shard", "shards", "first_row", "rows", "sha256", "bytes",
# "model", "input"}). A shard is done when both exist and the part matches the sha256; the
# top-level manifest.json ({"format", "model", "input", "problem_type", "labels", "shards", "total_rows",
# "created" (ISO 8601 UTC), "parts": [shard manifests]}) is written once every shard is done.
PREDICTION_MANIFEST = "manifest.json"
PREDICTION_MANIFEST_FORMAT = 1
PREDICTION_PART_FORMAT = "part-{shard:05d}.jsonl"
PREDICTION_SHARD_MANIFEST_FORMAT = "part-{shard:05d}.manifest.json"


def prediction_part(shard: int) -> str:
    """File name of one shard's predictions: part-00003.jsonl."""
    return PREDICTION_PART_FORMAT.format(shard=shard)


def prediction_shard_manifest(shard: int) -> str:
    """File name of one shard's manifest (row count, sha256 of its part), written after the part."""
    return PREDICTION_SHARD_MANIFEST_FORMAT.format(shard=shard)


# While a shard is scored its predictions are flushed as segments (part-<i:05d>.seg-<k:06d>.jsonl,
# PREDICTION_SEGMENT_ROWS rows each, the last one shorter), under the identity in
# part-<i:05d>.progress.json; a rerun continues after the last whole segment. When the shard is
# done they are joined into its part file and deleted.
PREDICTION_SEGMENT_ROWS = 8192


def prediction_segment(shard: int, segment: int) -> str:
    return f"part-{shard:05d}.seg-{segment:06d}.jsonl"


def prediction_progress(shard: int) -> str:
    return f"part-{shard:05d}.progress.json"


# models/<name>/ of a registered (fine-tuned) model: one record per version, written once
# (versions/000003.json: {"format", "name", "version", "run_id", "uri" (the run's output prefix),
# "metrics", "data", "created" (ISO 8601 UTC), "created_by"}), and one record per alias, moved by
# each promote (aliases/production.json: {"format", "name", "alias", "version", "updated",
# "updated_by"}). The bucket's versioning keeps every alias move.
MODEL_VERSIONS_DIR = "versions/"
MODEL_ALIASES_DIR = "aliases/"
MODEL_VERSION_FORMAT = "{version:06d}.json"
REGISTRY_FORMAT = 1


def model_version_key(name: str, version: int) -> str:
    """Key of one registered version's record: models/<name>/versions/000003.json."""
    return model_prefix(name) + MODEL_VERSIONS_DIR + MODEL_VERSION_FORMAT.format(version=version)


def model_alias_key(name: str, alias: str) -> str:
    """Key of an alias's record: models/<name>/aliases/<alias>.json."""
    return model_prefix(name) + MODEL_ALIASES_DIR + f"{alias}.json"


# Files of a training run's output (runs/<run-id>/) that a prediction needs besides the model.
LABEL_MAP_FILE = "label_map.json"  # {"labels": [...]}, the label of each class index
TRAINING_ARGS_FILE = "training_args.json"  # the trainer's resolved arguments (inputs, hyperparameters)
