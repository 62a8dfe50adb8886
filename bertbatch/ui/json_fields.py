"""The fields of every command's `--output json`, in one place.

Scripts depend on these names: add fields, never rename or drop one. docs/cli.md documents the
same lists (a test compares them), and `record` refuses to build a record with other keys, so
the code, the documentation and the tests cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIELDS: dict[str, dict[str, str]] = {
    "submit": {
        "job_id": "the AWS Batch job id",
        "run_id": "the run id (array child i writes run_id-i)",
        "queue": "job queue name",
        "job_definition": "job definition ARN",
        "array_size": "number of children of an array job (a sweep), or null",
        "console_url": "the job in the AWS console",
    },
    "status": {
        "job_id": "the AWS Batch job id",
        "name": "job name",
        "run_id": "run id, or null",
        "status": "SUBMITTED, PENDING, RUNNABLE, STARTING, RUNNING, SUCCEEDED or FAILED",
        "status_reason": "why the job is in that state, or null",
        "queue": "job queue name",
        "team": "the team the job runs for (its bert-batch:team tag, else its share identifier), or null for a "
                "job submitted before fair share",
        "job_definition": "job definition name:revision",
        "created": "ISO 8601 UTC, or null",
        "started": "ISO 8601 UTC, or null",
        "stopped": "ISO 8601 UTC, or null",
        "attempts": "number of attempts so far",
        "exit_code": "the container's exit code, or null",
        "array_size": "children of an array job, or null",
        "array_states": "array job: state -> number of children, else null",
        "fallback_from": "the Spot job this On-Demand job replaces, or null",
        "fallback_to": "the On-Demand job that replaced this one, or null",
        "console_url": "the job in the AWS console",
        "cost": "USD so far of the job's run (every attempt of every job of the run, the cost ledger), or null",
        "cost_estimate": "USD the submit estimated for the run (its job tag), or null",
        "cost_attempts": "the ledger: per attempt job_id, attempt, started_ms, stopped_ms, seconds, nodes, "
                         "environment, pricing, instance_type, price_per_hour, cost, assumption",
        "prices_as_of": "date of the price table the cost was computed with",
        "efficiency": "the run's samples_per_second, tokens_per_second, mfu, mfu_unavailable, "
                      "model_tflops_per_second, model_flops_per_token, gpu_name, gpu_peak_tflops, "
                      "gpu_memory_peak_mb from its metrics.json (each null where it has none), or null before "
                      "metrics.json is written",
    },
    "doctor": {
        "check": "what was checked, e.g. queue spot-first, quota L-3819A6DF",
        "status": "ok, warn or fail",
        "detail": "what was found",
        "fix": "the command that fixes a warn or fail, or null",
    },
    "list": {
        "job_id": "the AWS Batch job id",
        "name": "job name",
        "status": "job state",
        "queue": "job queue name",
        "created": "ISO 8601 UTC, or null",
        "stopped": "ISO 8601 UTC, or null",
    },
    "runs": {
        "run_id": "run id",
        "state": "finished (metrics.json written) or running",
        "finished": "when metrics.json was written, ISO 8601 UTC, or null",
        "metrics": "the run's metrics.json object, or null",
        "cost": "USD of every attempt of the run's jobs still listed by Batch (the cost ledger), or null (always "
                "with --local)",
        "team": "the team of the run's newest job still listed by Batch, or null (no such job, a job from before "
                "fair share, or --local)",
    },
    "compare": {
        "run_id": "run id",
        "best": "true on the best run by --metric",
        "source": "s3 (the profile's artifacts bucket) or local (a bertbatch local output directory)",
        "state": "finished (metrics.json written) or running",
        "hyperparameters": "the hyperparameters whose values differ between the runs compared: name -> value",
        "final": "the published model's eval_accuracy, eval_f1, eval_loss and the run's train_loss (null when "
                 "missing)",
        "best_metric": "metric, value (best over the run's evaluations), step",
        "steps": "optimizer steps done, or null",
        "duration_seconds": "running time of every attempt (Batch) or the trainer's train_seconds (local), or null",
        "attempts": "attempts of the run's jobs, or null (local)",
        "cost": "USD from the cost ledger, or null",
        "cost_estimate": "USD the submit estimated, or null",
        "team": "the team of the run's newest job, or null (no job listed, a job from before fair share, or local)",
        "problem_type": "single_label_classification, multi_label_classification or regression (null: a run from "
                        "before problem types)",
        "per_class": "class (or label) -> precision, recall, f1, support of the published model; null for regression",
        "confusion_matrix": "single-label: labels, counts (rows: truth, columns: prediction); else null",
        "efficiency": "as status's efficiency: throughput, MFU and GPU memory peak from metrics.json, or null "
                      "(running)",
    },
    "artifacts": {
        "uri": "s3:// URI of the object",
        "kind": "output (runs/<run-id>/) or checkpoint (checkpoints/<run-id>/)",
        "size": "bytes",
        "modified": "ISO 8601 UTC, or null",
        "downloaded_to": "local path it was written to with --download, else null",
    },
    "estimate": {
        "rows": "training rows",
        "epochs": "epochs",
        "max_seq_length": "sequence length",
        "nodes": "nodes",
        "prices_as_of": "date of the price table",
        "assumptions": "reference_seq_len, multi_gpu_efficiency, startup_minutes, spot_interruption_overhead",
        "options": "every option, cheapest first: instance_type, gpu, gpus, nodes, pricing, samples_per_second, "
                   "tokens_per_second (computed tokens, padding included, whole run), throughput_estimate (true: "
                   "the GPU's figure is a derived estimate; false: measured), hours, price_per_hour, cost, queue, "
                   "placeable (true, false, or null when not checked), change (the config change that would make it "
                   "placeable, or null)",
        "choice": "the chosen option (same fields): the cheapest placeable one",
        "capacity_checked": "whether the options were checked against the profile's queues (false with --offline)",
        "tokens": "what a row costs: source (sample: --data rows tokenized; max_seq_length: every row counted as "
                  "max_seq_length tokens), computed_tokens_per_row, rows_sampled, whole_file (the sample is every "
                  "row), tokenizer (the file used), mean_tokens_per_row (truncated, [CLS]/[SEP] included), "
                  "padding_share, padding_source, fallback (why the rows were not tokenized; null when they were)",
        "throughput_sources": "GPU -> where its tokens/s comes from: \"measured: <benchmark result or run>\" or "
                              "\"derived: <basis>\" (a dense peak x an assumed MFU)",
    },
    "estimate --idle": {
        "templates": "the directory of synthesized templates read",
        "prices_as_of": "date of the idle list prices (the idle section of prices.json)",
        "region": "the region of those prices",
        "items": "one per kind of idle charge, most expensive first: kind, unit, count (units in the templates), "
                 "unit_price ($ a unit a month), monthly ($ a month)",
        "total": "$ a month with no job running",
    },
    "models import": {
        "name": "the staged name",
        "uri": "s3:// prefix the model was staged at",
        "uploaded": "files uploaded now",
        "skipped": "files already there with the same sha256",
        "size": "bytes in all",
    },
    "models list": {
        "name": "the staged name (what submit --model takes)",
        "state": "staged (manifest written), incomplete (an import that did not finish), registered, or corrupt "
                 "(a record that cannot be read: see corrupt)",
        "uri": "s3:// prefix of the model (with --local: its directory under local-runs/)",
        "files": "number of files, or null",
        "size": "bytes in all, or null",
        "source": "the hub id (hf://...) or local directory it came from, or null",
        "imported": "when it was staged, ISO 8601 UTC, or null",
        "kind": "staged (a base model, models import) or registered (fine-tuned, promote)",
        "versions": "registered: number of versions, else null",
        "aliases": "registered: alias -> version, else null",
        "corrupt": "'<uri>: <reason>' of each of its records (manifest, version, alias) that cannot be read; "
                   "[] when none",
    },
    "models show": {
        "name": "the registered name",
        "version": "version number (1, 2, ...)",
        "aliases": "aliases pointing at this version",
        "run_id": "the training run the version points at",
        "uri": "the run's output prefix (what a job loads; with --local: its directory)",
        "metrics": "the run's metrics.json object",
        "data": "the run's inputs: train, eval, text_column, label_column (those recorded)",
        "created": "when the version was recorded, ISO 8601 UTC",
        "created_by": "who promoted it (the caller identity's ARN; the user name for --local)",
    },
    "promote": {
        "name": "the registered name",
        "version": "the run's version number",
        "alias": "the alias moved, or null",
        "run_id": "the promoted run",
        "uri": "the run's output prefix",
        "created": "true when this promote recorded a new version (false: the run had one already)",
        "previous_version": "the version the alias pointed at before, or null",
    },
    "prepare": {
        "store": "the store's s3:// prefix (manifest.json appears there last)",
        "input": "the data's s3:// URI or prefix",
        "files": "input files found",
        "children": "array children (1 = a single job)",
        "children_job_id": "the AWS Batch job id of the children (the array parent)",
        "merge_job_id": "the job that writes manifest.json after every child (depends on the children)",
        "queue": "job queue name",
    },
    "predict": {
        "prediction_id": "names predictions/<prediction-id>/ (and the job)",
        "model": "what the job loads: the run's output prefix or directory",
        "model_version": "the registry version for NAME@ALIAS / NAME@N, else null",
        "run_id": "the version's run for NAME@ALIAS / NAME@N, else null",
        "input": "the rows scored",
        "output": "where part-<shard>.jsonl and manifest.json go",
        "shards": "number of shards (array children; 1 = a single job)",
        "job_id": "the AWS Batch job id, or null with --local",
        "queue": "job queue name, or null with --local",
        "console_url": "the job in the AWS console, or null with --local",
        "rows": "rows scored (from manifest.json) once it is done (--wait, --local), else null",
    },
    "watch": {
        "job_id": "the job watched last (the On-Demand job when a fallback was followed)",
        "jobs": "every job followed, first to last",
        "run_id": "run id, or null",
        "status": "SUCCEEDED or FAILED",
        "status_reason": "why, or null",
        "metrics": "final metrics (metrics.json), or null",
        "outputs_uri": "s3:// prefix of the run's outputs, or null",
        "checkpoints_uri": "s3:// prefix of the run's checkpoints, or null",
    },
}


def record(command: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` as `command`'s JSON record, in the documented order; a missing or an extra key
    is a bug here, not a user error."""
    names = FIELDS[command]
    if set(values) != set(names):
        raise KeyError(f"{command} JSON record: fields {sorted(set(values) ^ set(names))} differ from json_fields")
    return {name: values[name] for name in names}
