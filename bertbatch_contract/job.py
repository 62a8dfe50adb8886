"""The job's environment and exit codes: what the job definitions set, the container reads and
the CLI and the fallback function override per job."""

from __future__ import annotations

# --- environment variables set by the job definition (or the CLI as overrides) -------------
ENV_RUN_ID = "RUN_ID"  # survives Batch retries and fallback resubmission -> resume works
ENV_PROFILE = "BERT_BATCH_PROFILE"  # project profile, used as the metrics Profile dimension
ENV_DATA_URI = "DATA_URI"  # s3://<data-bucket>/datasets: the prefix FSx mirrors when enabled
ENV_ARTIFACTS_URI = "ARTIFACTS_URI"  # s3://<artifacts-bucket>; outputs go to runs/<run-id>/
ENV_CHECKPOINT_URI = "CHECKPOINT_URI"  # s3://<artifacts-bucket>/checkpoints; + /<run-id>/
ENV_METRICS_NAMESPACE = "METRICS_NAMESPACE"
ENV_FSX_MOUNT = "FSX_MOUNT_PATH"  # set only when FSx is enabled
# With FSx, objects under ENV_DATA_URI appear at <FSX_MOUNT_PATH>/<layout.DATASETS_PREFIX>...
# On a host whose Lustre mount failed, the job's read-only FSX_MOUNT_PATH volume is the empty
# local directory holding only this file (its text is the reason): read from S3 instead.
FSX_MOUNT_FAILED_MARKER = ".mount-failed"
# Tokenized datasets cached on FSx, keyed by content, tokenizer and max length, so sweep children
# and retries skip tokenizing: <FSX_MOUNT_PATH>/<FSX_CACHE_DIR>/tokenized/<key>.json. The launch
# template creates the directory writable by the job; the rest of the mount stays read-only.
FSX_CACHE_DIR = ".bert-batch-cache"
ENV_FALLBACK_FROM_JOB = "BERT_BATCH_FALLBACK_FROM"  # set on a job resubmitted to On-Demand
# Checkpoint cadence: whichever comes first. Flags --checkpoint-every-steps/-minutes override.
ENV_CHECKPOINT_EVERY_STEPS = "CHECKPOINT_EVERY_STEPS"
ENV_CHECKPOINT_EVERY_MINUTES = "CHECKPOINT_EVERY_MINUTES"
# Time bounds what a failure can lose; steps only cap it on slow hardware (500 steps of BERT-base
# take a GPU about a minute, and checkpointing 1.2 GB every minute costs more than it saves).
DEFAULT_CHECKPOINT_EVERY_STEPS = 2000
DEFAULT_CHECKPOINT_EVERY_MINUTES = 10.0
# Minutes without any checkpoint reaching the checkpoint store (uploads failing) before the run
# stops with EXIT_STORAGE_UNAVAILABLE; until then a failed upload is retried and training goes on.
ENV_CHECKPOINT_GIVE_UP_MINUTES = "CHECKPOINT_GIVE_UP_MINUTES"
DEFAULT_CHECKPOINT_GIVE_UP_MINUTES = 30.0
# Read by the image entrypoint: GPUs (processes) per node; default = visible GPUs, or 1.
ENV_NPROC_PER_NODE = "NPROC_PER_NODE"
# The image name recorded in each model card; the Dockerfile sets it, a job definition may override.
ENV_IMAGE = "BERT_TRAIN_IMAGE"
# Sweeps (`bertbatch submit --grid`): a JSON list of rows {Ref:: parameter name: value}. An array
# child reads row [AWS_BATCH_JOB_ARRAY_INDEX] and lets it override the matching flags.
ENV_GRID = "BERT_BATCH_GRID"
# Local scratch and model cache of the container (flags --work-dir / --cache-dir override).
ENV_WORK_DIR = "BERT_TRAIN_WORK_DIR"
ENV_CACHE_DIR = "BERT_TRAIN_CACHE_DIR"
# Experiment tracking, optional: set (the profile's tracking URI) -> the container logs parameters,
# metrics and the final model to one MLflow run per run id, found again on resume by the MLflow
# tag tags.TAG_RUN_ID. Unset -> no tracking and no MLflow import. MLflow's own variables.
ENV_MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_MLFLOW_EXPERIMENT_NAME = "MLFLOW_EXPERIMENT_NAME"
DEFAULT_MLFLOW_EXPERIMENT = "bert-batch"  # when ENV_MLFLOW_EXPERIMENT_NAME is unset
# "true": also upload the finished model directory to the MLflow run, and wait for it at the end
# (bounded). Unset or anything else: metrics and parameters only, and a short bounded wait.
ENV_MLFLOW_LOG_MODEL = "BERT_BATCH_MLFLOW_LOG_MODEL"

# Batch inference (`python -m bert_train predict`, `bertbatch predict`): the prediction id names
# <ARTIFACTS_URI>/predictions/<id>/ when --output is not given; an array job's child scores shard
# $AWS_BATCH_JOB_ARRAY_INDEX of $BERT_BATCH_SHARDS (flags --shard-index / --shards win; the
# explicit index variable is for a job that is not an array job, e.g. rerunning one shard).
ENV_PREDICTION_ID = "PREDICTION_ID"
ENV_PREDICT_SHARDS = "BERT_BATCH_SHARDS"
ENV_PREDICT_SHARD_INDEX = "BERT_BATCH_SHARD_INDEX"

# Per-run cost cap (`bertbatch submit --max-cost USD`), optional. Set -> the container learns its
# instance type and purchase option from INSTANCE_INFO_FILE, prices them from ENV_PRICES, keeps the
# run's accumulated cost in its checkpoints and stops with EXIT_COST_CAP before the cost over all
# attempts would pass the cap. Formats: bertbatch_contract.pricing.
ENV_MAX_COST_USD = "BERT_BATCH_MAX_COST_USD"  # the cap in US dollars (pricing.format_cap)
ENV_PRICES = "BERT_BATCH_PRICES"  # JSON price table of the queue's instance types (pricing.dumps)
# The instance metadata a job may see. The launch templates allow one IMDS hop (the host only: a
# container cannot reach the instance role's credentials), so the host's boot script copies what
# the cost cap needs into INSTANCE_INFO_FILE, readable by all, and every job definition mounts
# INSTANCE_INFO_DIR read-only at the same path. JSON: {"instance_type": "g5.xlarge",
# "life_cycle": "spot"} (the metadata's instance-type and instance-life-cycle).
INSTANCE_INFO_DIR = "/etc/bert-batch"
INSTANCE_INFO_FILE = INSTANCE_INFO_DIR + "/instance.json"
INSTANCE_INFO_KEYS = ("instance_type", "life_cycle")

# --- set by AWS Batch itself -----------------------------------------------------------------
ENV_BATCH_JOB_ID = "AWS_BATCH_JOB_ID"
ENV_BATCH_ATTEMPT = "AWS_BATCH_JOB_ATTEMPT"
ENV_BATCH_NUM_NODES = "AWS_BATCH_JOB_NUM_NODES"
ENV_BATCH_NODE_INDEX = "AWS_BATCH_JOB_NODE_INDEX"
ENV_BATCH_MAIN_NODE_INDEX = "AWS_BATCH_JOB_MAIN_NODE_INDEX"
# Only set on child nodes: node 0 must use its own address.
ENV_BATCH_MAIN_NODE_ADDR = "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"
ENV_BATCH_ARRAY_INDEX = "AWS_BATCH_JOB_ARRAY_INDEX"
# A submitted job may not set variables with this prefix.
RESERVED_ENV_PREFIX = "AWS_BATCH"

# --- exit codes ------------------------------------------------------------------------------
EXIT_OK = 0
EXIT_BAD_INPUT = 2  # input validation failed before training; nothing written
EXIT_INTERRUPTED = 75  # SIGTERM: checkpoint written and uploaded, safe to resume (EX_TEMPFAIL)
# The checkpoint store could not be read, or written for CHECKPOINT_GIVE_UP_MINUTES: retry, the
# next attempt resumes from the newest stored checkpoint (EX_IOERR)
EXIT_STORAGE_UNAVAILABLE = 74
# The cost cap (ENV_MAX_COST_USD) was about to be passed: checkpoint written and stored, then exit.
# Not retried (the job definitions retry only 74, 75 and Spot reclaims); a new submit of the same
# run with a higher cap resumes from that checkpoint.
EXIT_COST_CAP = 76

# Default seconds between SIGTERM and SIGKILL that the launch template asks ECS for.
CONTAINER_STOP_TIMEOUT_SECONDS = 120
# After SIGTERM the last checkpoint is stored, or given up (exit EXIT_STORAGE_UNAVAILABLE), within
# this many seconds of the signal, retries included. A Spot interruption notice gives 120 s before
# the instance goes, whatever the stop timeout; the rest is for finishing the step in progress
# before the signal is seen, and for the exit itself.
SIGTERM_CHECKPOINT_BUDGET_SECONDS = 90.0
