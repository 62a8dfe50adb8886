"""The job contract between the Training stack, the container and the `bertbatch` CLI.

The job definitions set these environment variables and `Ref::` parameters; the container
reads them; the CLI overrides them per job. Pure Python, no torch.
"""

from __future__ import annotations

# --- environment variables set by the job definition (or the CLI as overrides) -------------
ENV_RUN_ID = "RUN_ID"  # survives Batch retries and fallback resubmission -> resume works
ENV_PROFILE = "BERT_BATCH_PROFILE"  # project profile, used as the metrics Profile dimension
ENV_DATA_URI = "DATA_URI"  # s3://<data-bucket>/datasets (or /fsx/datasets when FSx is mounted)
ENV_ARTIFACTS_URI = "ARTIFACTS_URI"  # s3://<artifacts-bucket>; outputs go to runs/<run-id>/
ENV_CHECKPOINT_URI = "CHECKPOINT_URI"  # s3://<artifacts-bucket>/checkpoints; the container appends /<run-id>/
ENV_METRICS_NAMESPACE = "METRICS_NAMESPACE"
ENV_FSX_MOUNT = "FSX_MOUNT_PATH"  # set only when FSx is enabled
ENV_FALLBACK_FROM_JOB = "BERT_BATCH_FALLBACK_FROM"  # set on a job resubmitted to On-Demand
# Checkpoint cadence: whichever comes first. Flags --checkpoint-every-steps/-minutes override.
ENV_CHECKPOINT_EVERY_STEPS = "CHECKPOINT_EVERY_STEPS"
ENV_CHECKPOINT_EVERY_MINUTES = "CHECKPOINT_EVERY_MINUTES"
DEFAULT_CHECKPOINT_EVERY_STEPS = 500
DEFAULT_CHECKPOINT_EVERY_MINUTES = 10.0
# Read by the image entrypoint: GPUs (processes) per node; default = visible GPUs, or 1.
ENV_NPROC_PER_NODE = "NPROC_PER_NODE"
# The image name recorded in each model card; the Dockerfile sets it, a job definition may override.
ENV_IMAGE = "BERT_TRAIN_IMAGE"
# Sweeps (`bertbatch submit --grid`): a JSON list of rows {Ref:: parameter name: value}. An array
# child reads row [AWS_BATCH_JOB_ARRAY_INDEX] and lets it override the matching flags.
ENV_GRID = "BERT_BATCH_GRID"

# Set by AWS Batch itself.
ENV_BATCH_JOB_ID = "AWS_BATCH_JOB_ID"
ENV_BATCH_ATTEMPT = "AWS_BATCH_JOB_ATTEMPT"
ENV_BATCH_NUM_NODES = "AWS_BATCH_JOB_NUM_NODES"
ENV_BATCH_NODE_INDEX = "AWS_BATCH_JOB_NODE_INDEX"
ENV_BATCH_MAIN_NODE_INDEX = "AWS_BATCH_JOB_MAIN_NODE_INDEX"
# Only set on child nodes: node 0 must use its own address.
ENV_BATCH_MAIN_NODE_ADDR = "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"
ENV_BATCH_ARRAY_INDEX = "AWS_BATCH_JOB_ARRAY_INDEX"

# --- Ref:: parameters of the job definitions ---------------------------------------------
# parameter name -> container flag. The job definition command is built from this table, so
# the CLI, the job definition and the container flags cannot drift apart.
JOB_PARAMETERS: dict[str, str] = {
    "train_uri": "--train",
    "eval_uri": "--eval",
    "model": "--model",
    "epochs": "--epochs",
    "learning_rate": "--learning-rate",
    "batch_size": "--batch-size",
    "max_seq_length": "--max-seq-length",
    "text_column": "--text-column",
    "label_column": "--label-column",
}
# Defaults baked into the job definitions. train_uri / eval_uri defaults are set by the
# Training stack from the data bucket (s3://<data-bucket>/datasets/train.tsv, .../dev.tsv).
DEFAULT_PARAMETERS: dict[str, str] = {
    "model": "bert-base-uncased",
    "epochs": "3",
    "learning_rate": "2e-5",
    "batch_size": "32",
    "max_seq_length": "128",
    "text_column": "sentence",
    "label_column": "label",
}

# --- exit codes ------------------------------------------------------------------------------
EXIT_OK = 0
EXIT_BAD_INPUT = 2  # input validation failed before training; nothing written
EXIT_INTERRUPTED = 75  # SIGTERM: checkpoint written and uploaded, safe to resume (EX_TEMPFAIL)

# Default seconds between SIGTERM and SIGKILL that the launch template asks ECS for.
CONTAINER_STOP_TIMEOUT_SECONDS = 120

# --- container command-line flags beyond the Ref:: parameters ----------------------------
# `python -m bert_train` (and the image entrypoint) accept these too; `bertbatch local` uses
# them to run with local paths and a tiny model:
#   --run-id ID                 default: $RUN_ID, else $AWS_BATCH_JOB_ID, else generated
#   --output-uri URI|DIR        default: $ARTIFACTS_URI/runs/<run-id>/
#   --checkpoint-uri URI|DIR    default: $CHECKPOINT_URI/<run-id>/
#   --model random:tiny|random:base|random:/path/config.json   random-init model built from a
#                               config (tests, benchmarks); needs --vocab
#   --vocab PATH                WordPiece vocab for random:* models
#   --text-pair-column NAME     optional second text column (sentence pairs)
#   --seed N, --max-steps N, --gradient-accumulation-steps N, --warmup-ratio F,
#   --early-stopping-metric eval_accuracy|eval_f1|eval_loss, --early-stopping-patience N,
#   --checkpoint-every-steps N, --checkpoint-every-minutes M, --keep-checkpoints K,
#   --precision auto|bf16|fp16|fp32
#   --eval-batch-size N, --weight-decay F, --max-grad-norm F, --logging-steps N,
#   --work-dir DIR (local scratch for checkpoint staging and final outputs),
#   --cache-dir DIR (models downloaded from s3://, reused across runs)

# --- job tags (set by the CLI and the fallback Lambda) --------------------------------------
TAG_RUN_ID = "bert-batch:run-id"
TAG_FALLBACK_FROM = "bert-batch:fallback-from"  # on the On-Demand job: the Spot job it replaces
TAG_FALLBACK_TO = "bert-batch:fallback-to"  # on the Spot job: the On-Demand job that replaced it

# --- artifact layout ------------------------------------------------------------------------
CHECKPOINTS_PREFIX = "checkpoints/"
RUNS_PREFIX = "runs/"
METRICS_FILE = "metrics.json"  # final metrics, written last in runs/<run-id>/
# checkpoints/<run-id>/step-000000500/...: a checkpoint is complete only when its manifest
# (written last) exists; the container keeps the newest K complete ones.
CHECKPOINT_DIR_FORMAT = "step-{step:09d}"
CHECKPOINT_MANIFEST = "manifest.json"


def array_run_id(run_id: str, array_index: int | str) -> str:
    """Run id of one child of an array job (a sweep): <RUN_ID>-<AWS_BATCH_JOB_ARRAY_INDEX>.

    Children share RUN_ID; each writes runs/<run-id>-<index>/ and checkpoints/<run-id>-<index>/.
    """
    return f"{run_id}-{int(array_index)}"
