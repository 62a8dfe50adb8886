"""The `bertbatch` command line: submit, watch and collect BERT fine-tuning jobs on AWS Batch."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import shlex
import sys
import time
from pathlib import Path

import botocore.exceptions
import click

from bert_train import contract

from . import __version__, artifacts, aws, discovery, jobs, params, table
from . import estimate as estimate_mod
from . import local as local_mod
from . import watch as watch_mod
from .aws import aws_errors, error_code
from .errors import BertBatchError
from .logs import StreamReader, parse_emf
from .session import Session


class Group(click.Group):
    """Every error is one line: AWS errors that escape a command (exit code 1) and usage errors
    such as a missing argument (exit code 2, with a pointer to --help instead of the usage)."""

    def invoke(self, ctx):
        try:
            with aws_errors():
                return super().invoke(ctx)
        except click.UsageError as exc:
            path = exc.ctx.command_path if exc.ctx is not None else "bertbatch"
            err = BertBatchError(f"{exc.format_message()} (see: {path} --help)")
            err.exit_code = exc.exit_code
            raise err from None


@click.group(cls=Group)
@click.version_option(__version__, prog_name="bertbatch")
@click.option("--profile", "profile", default="dev", show_default=True, envvar=contract.ENV_PROFILE,
              help="bert-batch profile (the deployment), e.g. dev or prod [env: BERT_BATCH_PROFILE]")
@click.option("--project", default=discovery.DEFAULT_PROJECT, show_default=True, envvar="BERT_BATCH_PROJECT",
              help="Project name of the deployment, the SSM prefix [env: BERT_BATCH_PROJECT]")
@click.option("--region", default=None, envvar="AWS_REGION",
              help="AWS region [env: AWS_REGION, else AWS_DEFAULT_REGION or the AWS profile's region]")
@click.option("--aws-profile", default=None, help="Named AWS profile for credentials (default: AWS_PROFILE)")
def cli(profile, project, region, aws_profile):
    """Submit, watch and collect BERT fine-tuning jobs on the bert-batch platform.

    Queues, job definitions, buckets and the log group are found from the SSM parameters the
    Training stack publishes under /bert-batch/<profile>/: pick the platform with --profile
    (or BERT_BATCH_PROFILE), the AWS account with --aws-profile and the region with --region.
    These options go before or after the command.

    \b
    Examples:
      bertbatch estimate --rows 67000 --epochs 3
      bertbatch local --train data/train.tsv --eval data/dev.tsv --model random:tiny --vocab vocab.txt
      bertbatch submit --train sst2/train.tsv --eval sst2/dev.tsv --epochs 3 --wait
      bertbatch --profile prod list --state RUNNING
      bertbatch runs --region eu-west-1
    """


AWS_OPTION_NAMES = ("profile", "project", "region", "aws_profile")


def _with_group_defaults(values: dict) -> dict:
    """A command's own --profile/--region/... win; else the group's (which hold env and defaults)."""
    ctx = click.get_current_context()
    root = ctx.find_root().params
    return {k: (values[k] if values.get(k) is not None else root.get(k)) for k in values}


def aws_options(fn):
    """--profile, --project, --region and --aws-profile; passes a Session as `session`."""

    @click.option("--profile", "profile", default=None,
                  help="bert-batch profile (the deployment), e.g. dev or prod [default: dev, or $BERT_BATCH_PROFILE]")
    @click.option("--project", default=None, help="Project name of the deployment, the SSM prefix [default: bert-batch]")
    @click.option("--region", default=None, help="AWS region (default: AWS_REGION / the AWS profile's region)")
    @click.option("--aws-profile", default=None, help="Named AWS profile for credentials (default: AWS_PROFILE)")
    @functools.wraps(fn)
    def wrapper(*args, profile, project, region, aws_profile, **kwargs):
        values = _with_group_defaults(
            {"profile": profile, "project": project, "region": region, "aws_profile": aws_profile})
        return fn(*args, session=Session(**values), **kwargs)

    return wrapper


def hyperparameter_options(fn):
    """One option per hyperparameter Ref:: parameter of the job definitions (bert_train.contract)."""
    for hp in reversed(params.HYPERPARAMETERS):
        default = f" [job default: {hp.default}]" if hp.default else ""
        fn = click.option(hp.flag, hp.name, default=None, metavar="VALUE", help=hp.help + default)(fn)
    return fn


def _ts(ms) -> str:
    if not ms:
        return "-"
    return _dt.datetime.fromtimestamp(int(ms) / 1000, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# --- submit ---------------------------------------------------------------------------------------
@cli.command()
@click.option("--train", "train", metavar="URI", help="Training data: s3://bucket/key, or a key under the data bucket's datasets/ [job default]")
@click.option("--eval", "eval_", metavar="URI", help="Evaluation data, like --train [job default]")
@click.option("--run-name", metavar="NAME", help="Run id (letters, digits, - and _); generated if omitted. Reusing one resumes from its checkpoints")
@hyperparameter_options
@click.option("--gpus", type=int, metavar="N", help="GPUs per node (default: the job definition's)")
@click.option("--nodes", type=int, default=1, show_default=True, metavar="N", help="Nodes; N > 1 uses the multi-node (On-Demand) queue")
@click.option("--on-demand", is_flag=True, help="Skip Spot: use the On-Demand queue")
@click.option("--timeout", metavar="DURATION", help="Attempt timeout, e.g. 90m, 6h, 1d or seconds")
@click.option("--array", "array_size", type=int, metavar="N", help="Submit an array job of N children (AWS_BATCH_JOB_ARRAY_INDEX 0..N-1)")
@click.option("--grid", type=click.Path(dir_okay=False), metavar="FILE", help="Sweep grid (.json or .csv): one array child per row")
@click.option("--dry-run", is_flag=True, help="Check everything and print the SubmitJob request without submitting")
@click.option("--wait", is_flag=True, help="Then watch the job until it ends (exit code 0 only on SUCCEEDED)")
@click.option("--poll", type=float, default=10.0, show_default=True, metavar="SECONDS", help="Poll interval for --wait")
@click.option("--fallback-grace", type=float, default=60.0, show_default=True, metavar="SECONDS",
              help="With --wait: how long to wait for an On-Demand resubmission after a failure")
@aws_options
@click.pass_context
def submit(ctx, session, train, eval_, run_name, gpus, nodes, on_demand, timeout, array_size, grid,
           dry_run, wait, poll, fallback_grace, **hyper):
    """Submit a fine-tuning job (or a sweep) to the profile's queues.

    Inputs are checked to exist before anything is submitted. The job gets RUN_ID and the
    run-id tag, so Batch retries and an On-Demand fallback resubmission resume from the same
    checkpoints. Spot first unless --on-demand; --nodes N > 1 runs a multi-node job.

    A --grid file lists hyperparameters per child: a JSON list of objects, a JSON object of
    lists (every combination), or a CSV with a header. It is passed to the job as
    BERT_BATCH_GRID and child i trains with row i; child run ids are <run-id>-<i>.

    \b
    Examples:
      bertbatch submit --train sst2/train.tsv --eval sst2/dev.tsv
      bertbatch submit --train s3://my-data/datasets/imdb/train.tsv --epochs 2 --learning-rate 3e-5 --wait
      bertbatch submit --run-name sst2-large --model bert-large-uncased --gpus 4 --on-demand --timeout 6h
      bertbatch submit --nodes 2 --gpus 8 --batch-size 64
      bertbatch submit --grid sweep.json          # {"learning_rate": [2e-5, 3e-5, 5e-5]}
      bertbatch submit --profile prod --region eu-west-1 --train sst2/train.tsv --dry-run
    """
    # 1. everything that needs no AWS call
    hyperparameters = params.validate(hyper)
    params.check_int("--nodes", nodes, 1, 1000)
    params.check_int("--gpus", gpus, 1, 8)
    params.check_int("--array", array_size, 2, 10000)
    timeout_seconds = params.parse_timeout(timeout) if timeout else None
    grid_rows = params.load_grid(grid) if grid else None
    if grid_rows is not None:
        if array_size is not None and array_size != len(grid_rows):
            raise BertBatchError(f"--array {array_size} does not match the {len(grid_rows)} rows of --grid {grid}")
        if len(grid_rows) > 1:
            array_size = len(grid_rows)
        else:  # one row: a plain job with those hyperparameters
            hyperparameters = {**hyperparameters, **grid_rows[0]}
            grid_rows = None
    if array_size and nodes > 1:
        raise BertBatchError("--array/--grid cannot be combined with --nodes: Batch has no multi-node array jobs")
    run_id = params.check_run_id(run_name) if run_name else params.generate_run_id(hyperparameters.get("model"))

    # 2. the deployment, the inputs
    queue_key, jobdef_key = jobs.choose_queue(nodes, on_demand)
    queue = session.get(queue_key)
    job_definition = session.get(jobdef_key)
    data_bucket = session.get(discovery.DATA_BUCKET)
    batch, s3 = session.client("batch"), session.client("s3")
    defaults = jobs.job_definition_parameters(batch, job_definition)
    inputs: dict[str, str] = {}
    for name, flag, value in (("train_uri", "--train", train), ("eval_uri", "--eval", eval_)):
        if value:
            inputs[name] = jobs.resolve_input(flag, value, data_bucket)
            uri = inputs[name]
        else:
            uri = defaults.get(name)
            if not uri:
                raise BertBatchError(f"{flag} is required: the job definition has no default {name}")
        if uri.startswith("s3://"):
            jobs.check_s3_object(s3, flag, uri)

    if run_name:
        _check_reused_run(session, run_id, array_size)

    environment = {}
    if grid_rows is not None:
        environment[contract.ENV_GRID] = json.dumps(grid_rows, separators=(",", ":"))
    plan = jobs.SubmitPlan(
        run_id=run_id, queue=queue, job_definition=job_definition,
        parameters={**inputs, **hyperparameters}, environment=environment, gpus=gpus, nodes=nodes,
        array_size=array_size, timeout_seconds=timeout_seconds,
    )
    request = plan.request()
    if dry_run:
        click.echo(json.dumps(request, indent=2))
        return
    resp = batch.submit_job(**request)
    job_id = resp["jobId"]
    region = session.region_name
    click.echo(f"Submitted job {job_id}")
    click.echo(f"  run id:  {run_id}")
    click.echo(f"  queue:   {queue}")
    if array_size:
        click.echo(f"  array:   {array_size} children, run ids {contract.array_run_id(run_id, 0)} .. "
                   f"{contract.array_run_id(run_id, array_size - 1)}")
    click.echo(f"  console: {jobs.console_url(region, job_id)}")
    if wait:
        rc = watch_mod.watch(session, job_id, poll=poll, fallback_grace=fallback_grace, tty=sys.stdout.isatty())
        ctx.exit(rc)


def _check_reused_run(session: Session, run_id: str, array_size: int | None) -> None:
    """A finished run is not overwritten; an unfinished one is resumed from its checkpoints."""
    bucket = session.get(discovery.ARTIFACTS_BUCKET)
    s3 = session.client("s3")
    ids = [contract.array_run_id(run_id, i) for i in range(array_size)] if array_size else [run_id]
    for rid in ids[:20]:
        metrics, _ = artifacts.read_metrics(s3, bucket, rid)
        if metrics is not None:
            raise BertBatchError(
                f"--run-name {run_id}: run {rid} already finished "
                f"(s3://{bucket}/{artifacts.run_prefix(rid)}{contract.METRICS_FILE}): choose another name"
            )
    if not array_size and artifacts.list_objects(s3, bucket, artifacts.checkpoint_prefix(run_id))[:1]:
        click.echo(f"Run {run_id} has checkpoints: the job resumes from them.", err=True)


# --- watch / status / logs / list / cancel -------------------------------------------------------
@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option("--poll", type=float, default=10.0, show_default=True, metavar="SECONDS", help="Seconds between polls")
@click.option("--fallback-grace", type=float, default=60.0, show_default=True, metavar="SECONDS",
              help="After a failure, how long to wait for an On-Demand fallback resubmission")
@aws_options
@click.pass_context
def watch(ctx, session, job_id, poll, fallback_grace):
    """Follow a job: state changes, training progress (epoch, step, ETA) and the latest metrics.

    Ends with the final metrics and artifact URIs. Exit code 0 only when the job SUCCEEDED.
    When a Spot job fails and the fallback handler resubmits it to On-Demand (tag
    bert-batch:fallback-to on the old job), watch follows the new job.

    \b
    Examples:
      bertbatch watch 4c7e1a2b-0d3f-4a52-9a61-0a5e3f0b2c11
      bertbatch watch JOB --poll 30 && bertbatch artifacts RUN --download ./out
    """
    rc = watch_mod.watch(session, job_id, poll=poll, fallback_grace=fallback_grace, tty=sys.stdout.isatty())
    ctx.exit(rc)


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option("--json", "as_json", is_flag=True, help="Print the DescribeJobs record as JSON")
@aws_options
def status(session, job_id, as_json):
    """Show a job's state, run id, queue, times, attempts and fallback links.

    \b
    Examples:
      bertbatch status 4c7e1a2b-0d3f-4a52-9a61-0a5e3f0b2c11
      bertbatch status JOB --json | jq .attempts
    """
    batch = session.client("batch")
    job = jobs.describe(batch, job_id)
    if as_json:
        click.echo(jobs.dumps(job))
        return
    tags = jobs.tags_of(batch, job)
    rows = [
        ("job", job["jobId"]),
        ("name", job.get("jobName", "-")),
        ("run id", jobs.run_id_of(job) or "-"),
        ("status", job["status"] + (f" ({job['statusReason']})" if job.get("statusReason") else "")),
        ("queue", jobs.queue_name(job)),
        ("job definition", (job.get("jobDefinition") or "-").rsplit("/", 1)[-1]),
        ("created", _ts(job.get("createdAt"))),
        ("started", _ts(job.get("startedAt"))),
        ("stopped", _ts(job.get("stoppedAt"))),
        ("attempts", str(len(job.get("attempts") or []))),
    ]
    exit_code = (job.get("container") or {}).get("exitCode")
    if exit_code is not None:
        rows.append(("exit code", str(exit_code)))
    if job.get("arrayProperties", {}).get("size"):
        rows.append(("array", f"{job['arrayProperties']['size']} children: {watch_mod._array_summary(job) or '-'}"))
    if tags.get(contract.TAG_FALLBACK_FROM):
        rows.append(("fallback from", tags[contract.TAG_FALLBACK_FROM]))
    if tags.get(contract.TAG_FALLBACK_TO):
        rows.append(("fallback to", tags[contract.TAG_FALLBACK_TO]))
    rows.append(("console", jobs.console_url(batch.meta.region_name, job["jobId"])))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key + ':':<{width + 1}} {value}")


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends")
@click.option("--no-emf", is_flag=True, help="Hide the metric (EMF JSON) lines")
@click.option("--poll", type=float, default=5.0, show_default=True, metavar="SECONDS", help="Poll interval for --follow")
@aws_options
def logs(session, job_id, follow, no_emf, poll):
    """Print a job's log (every attempt's stream, in order).

    \b
    Examples:
      bertbatch logs 4c7e1a2b-0d3f-4a52-9a61-0a5e3f0b2c11
      bertbatch logs JOB --follow --no-emf
    """
    batch = session.client("batch")
    group = session.get(discovery.LOG_GROUP)
    logs_client = session.client("logs")
    readers: dict[str, StreamReader] = {}
    while True:
        job = jobs.describe(batch, job_id)
        if (job.get("arrayProperties") or {}).get("size"):
            raise BertBatchError(f"job {job_id} is an array job: give one child, e.g. bertbatch logs {job_id}:0")
        streams = jobs.log_streams(batch, job)
        if not streams and not follow:
            raise BertBatchError(f"job {job_id} has no logs yet (status {job['status']})")
        for stream in streams:
            if stream not in readers:
                readers[stream] = StreamReader(logs_client, group, stream)
                if len(streams) > 1:
                    click.echo(f"--- {stream}")
            for event in readers[stream].read():
                message = event.get("message", "").rstrip("\n")
                if no_emf and parse_emf(message) is not None:
                    continue
                click.echo(message)
        done = job["status"] in jobs.TERMINAL_STATES
        if not follow or done:
            if streams and all(r.missing for r in readers.values()) and not follow:
                raise BertBatchError(f"no log stream {streams[-1]} in log group {group}")
            if done and job["status"] == "FAILED":
                target = jobs.fallback_target(batch, job)
                if target:
                    click.echo(f"(job {job_id} was resubmitted as {target}: bertbatch logs {target})", err=True)
            return
        time.sleep(poll)


QUEUE_CHOICES = tuple(jobs.QUEUE_KEYS)


@cli.command(name="list")
@click.option("--state", "states", multiple=True, type=click.Choice(jobs.ALL_STATES, case_sensitive=False),
              help="Only jobs in this state (repeatable; default: all)")
@click.option("--queue", "queues", multiple=True, metavar="QUEUE",
              help=f"Only this queue: {', '.join(QUEUE_CHOICES)} or a queue name (repeatable; default: all three)")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many jobs, newest first")
@aws_options
def list_(session, states, queues, limit):
    """List jobs on the profile's queues as a table, newest first.

    \b
    Examples:
      bertbatch list
      bertbatch list --state RUNNING --state RUNNABLE
      bertbatch list --queue spot-first --state FAILED
    """
    batch = session.client("batch")
    names = []
    for q in queues or QUEUE_CHOICES:
        if q in jobs.QUEUE_KEYS:
            if not queues and jobs.QUEUE_KEYS[q] not in session.deployment.values:
                continue
            names.append(session.get(jobs.QUEUE_KEYS[q]))
        else:
            names.append(q)
    wanted = [s.upper() for s in states] or list(jobs.ALL_STATES)
    try:
        summaries = jobs.list_jobs(batch, names, wanted)
    except botocore.exceptions.ClientError as exc:  # an unknown queue name
        if error_code(exc) == "ClientException":
            raise BertBatchError(f"--queue: {exc.response['Error'].get('Message', 'unknown queue')}") from None
        raise
    if not summaries:
        click.echo("No jobs.")
        return
    rows = [
        (s["jobId"], s.get("jobName", "-"), s.get("status", "-"), s["_queue"], _ts(s.get("createdAt")),
         _ts(s.get("stoppedAt")) if s.get("stoppedAt") else "-")
        for s in summaries[:limit]
    ]
    click.echo(table.render(("JOB ID", "NAME", "STATE", "QUEUE", "CREATED (UTC)", "STOPPED (UTC)"), rows))


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option("--reason", default="Cancelled with bertbatch", show_default=True, help="Reason recorded on the job")
@aws_options
def cancel(session, job_id, reason):
    """Stop a job: cancel it if it has not started, terminate it if it has.

    If the job was resubmitted to On-Demand by the fallback handler, the job that replaced it
    is the one stopped.

    \b
    Examples:
      bertbatch cancel 4c7e1a2b-0d3f-4a52-9a61-0a5e3f0b2c11
      bertbatch cancel JOB --reason "wrong learning rate"
    """
    batch = session.client("batch")
    job = jobs.describe(batch, job_id)
    latest = jobs.latest_in_chain(batch, job)
    if latest["jobId"] != job["jobId"]:
        click.echo(f"Job {job_id} was resubmitted as {latest['jobId']}; stopping that one.")
    done = jobs.cancel(batch, latest, reason)
    if done == "nothing":
        click.echo(f"Job {latest['jobId']} already ended ({latest['status']}); nothing to cancel.")
    else:
        click.echo(f"Job {latest['jobId']} {done} (was {latest['status']}).")


# --- artifacts / runs ----------------------------------------------------------------------------
@cli.command(name="artifacts")
@click.argument("run_id", metavar="RUN")
@click.option("--download", "download_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Download the run's outputs to DIR/<run-id>/")
@click.option("--checkpoints", is_flag=True, help="With --download: the checkpoints too (DIR/<run-id>/checkpoints/)")
@aws_options
def artifacts_(session, run_id, download_dir, checkpoints):
    """List (and download) a run's outputs and checkpoints.

    \b
    Examples:
      bertbatch artifacts bert-base-uncased-20261121-190500-3fa2
      bertbatch artifacts my-run --download ./results
      bertbatch artifacts my-run --download ./results --checkpoints
    """
    bucket = session.get(discovery.ARTIFACTS_BUCKET)
    s3 = session.client("s3")
    outputs, ckpts = artifacts.run_objects(s3, bucket, run_id)
    rows = [(f"s3://{bucket}/{o['Key']}", artifacts.human_size(o.get("Size", 0)),
             o["LastModified"].strftime("%Y-%m-%d %H:%M:%S") if o.get("LastModified") else "-")
            for o in outputs + ckpts]
    click.echo(table.render(("URI", "SIZE", "MODIFIED (UTC)"), rows, right=(1,)))
    if download_dir:
        dest = Path(download_dir) / run_id
        written = artifacts.download(s3, bucket, outputs, artifacts.run_prefix(run_id), dest)
        if checkpoints:
            written += artifacts.download(s3, bucket, ckpts, artifacts.checkpoint_prefix(run_id), dest / "checkpoints")
        click.echo(f"Downloaded {len(written)} file(s) to {dest}")


@cli.command()
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many runs, newest first")
@click.option("--json", "as_json", is_flag=True, help="Print the runs and their metrics as JSON")
@aws_options
def runs(session, limit, as_json):
    """Table of runs in the artifacts bucket with their final metrics (metrics.json).

    Runs still training (no metrics.json yet) show as 'running'.

    \b
    Examples:
      bertbatch runs
      bertbatch runs --profile prod --limit 10
      bertbatch runs --json | jq '.[] | select(.metrics.eval_accuracy > 0.9)'
    """
    bucket = session.get(discovery.ARTIFACTS_BUCKET)
    s3 = session.client("s3")
    found = []
    for run_id in artifacts.list_run_ids(s3, bucket):
        metrics, modified = artifacts.read_metrics(s3, bucket, run_id)
        found.append((run_id, metrics, modified))
    epoch = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
    found.sort(key=lambda r: (r[2] is None, r[2] or epoch), reverse=True)
    found = found[:limit]
    if as_json:
        click.echo(json.dumps([{"run_id": r, "metrics": m, "finished": m and str(t)} for r, m, t in found], indent=2, default=str))
        return
    if not found:
        click.echo(f"No runs under s3://{bucket}/{contract.RUNS_PREFIX}")
        return
    rows = []
    for run_id, metrics, modified in found:
        values = [artifacts.format_value(artifacts.metric_value(metrics or {}, k)) for k in artifacts.RUN_COLUMNS]
        state = "finished" if metrics else "running"
        rows.append((run_id, state, *values, modified.strftime("%Y-%m-%d %H:%M") if modified else "-"))
    headers = ("RUN ID", "STATE", *(k.upper() for k in artifacts.RUN_COLUMNS), "FINISHED (UTC)")
    click.echo(table.render(headers, rows, right=tuple(range(2, 2 + len(artifacts.RUN_COLUMNS)))))


# --- estimate -----------------------------------------------------------------------------------
@cli.command()
@click.option("--rows", type=int, metavar="N", help="Training rows (examples)")
@click.option("--data", metavar="PATH|URI", help="Count the rows of this TSV/CSV (header line not counted) or JSONL file: a local path or s3:// URI")
@click.option("--epochs", type=int, default=int(contract.DEFAULT_PARAMETERS["epochs"]), show_default=True)
@click.option("--max-seq-length", "seq_len", type=int, default=int(contract.DEFAULT_PARAMETERS["max_seq_length"]), show_default=True)
@click.option("--instance-type", "instance_types", multiple=True, metavar="TYPE", help="Only these instance types (repeatable; default: every type in the price table)")
@click.option("--nodes", type=int, default=1, show_default=True, help="Nodes (N > 1: multi-node, On-Demand only)")
@click.option("--max-hours", type=float, metavar="H", help="Choose the cheapest option that finishes within H hours")
@click.option("--spot-overhead", type=float, metavar="FRACTION", help="Extra time on Spot for interruptions (default from the throughput table, 0.15)")
@click.option("--prices", "prices_file", type=click.Path(dir_okay=False), metavar="FILE", help="Price table to use instead of the built-in one")
@click.option("--throughput", "throughput_file", type=click.Path(dir_okay=False), metavar="FILE", help="Throughput table to use instead of the built-in one")
@click.option("--json", "as_json", is_flag=True, help="Print the options as JSON")
@click.option("--region", default=None, help="AWS region for --data s3://...")
@click.option("--aws-profile", default=None, help="Named AWS profile for --data s3://...")
def estimate(rows, data, epochs, seq_len, instance_types, nodes, max_hours, spot_overhead, prices_file,
             throughput_file, as_json, region, aws_profile):
    """Estimate the time and cost of a BERT-base fine-tuning run, Spot and On-Demand.

    Throughput (samples/s per GPU, BERT-base, sequence length 128, mixed precision) comes from
    bertbatch/data/gpu_throughput.json, scaled by 128 / --max-seq-length and by the GPUs used;
    prices from bertbatch/data/prices.json (dated: update it, or pass --prices). Spot runs
    include an interruption overhead. The cheapest option (within --max-hours) is chosen, with
    the queue that would run it.

    \b
    Examples:
      bertbatch estimate --rows 67349 --epochs 3
      bertbatch estimate --data s3://my-data/datasets/sst2/train.tsv --max-seq-length 64
      bertbatch estimate --rows 2000000 --epochs 2 --max-hours 4
      bertbatch estimate --rows 500000 --instance-type g5.xlarge --instance-type g6e.xlarge --json
    """
    if (rows is None) == (data is None):
        raise BertBatchError("give exactly one of --rows N or --data PATH|URI")
    params.check_int("--epochs", epochs, 1)
    params.check_int("--max-seq-length", seq_len, 8, 512)
    params.check_int("--nodes", nodes, 1, 1000)
    if max_hours is not None and max_hours <= 0:
        raise BertBatchError(f"--max-hours {max_hours}: must be > 0")
    if spot_overhead is not None and spot_overhead < 0:
        raise BertBatchError(f"--spot-overhead {spot_overhead}: must be >= 0")
    if data is not None:
        aws_values = _with_group_defaults({"region": region, "aws_profile": aws_profile})
        rows = _count_rows(data, aws_values["region"], aws_values["aws_profile"])
        if rows < 1:
            raise BertBatchError(f"--data {data}: no data rows")
    prices = estimate_mod.load_table("prices.json", prices_file)
    throughput = estimate_mod.load_table("gpu_throughput.json", throughput_file)
    assumptions = estimate_mod.assumptions_from(throughput, spot_overhead=spot_overhead)
    options = estimate_mod.estimate(
        rows=rows, epochs=epochs, seq_len=seq_len, prices=prices, throughput=throughput,
        instance_types=list(instance_types) or None, nodes=nodes, assumptions=assumptions,
    )
    best = estimate_mod.choose(options, max_hours)
    if best is None:
        fastest = min(options, key=lambda o: o.hours)
        raise BertBatchError(
            f"no option finishes within --max-hours {max_hours:g} (fastest: {fastest.instance_type} "
            f"{fastest.pricing}, {fastest.hours:.2f} h)"
        )
    if as_json:
        click.echo(json.dumps({
            "rows": rows, "epochs": epochs, "max_seq_length": seq_len, "nodes": nodes,
            "prices_as_of": prices.get("as_of"), "assumptions": assumptions.__dict__,
            "options": [o.as_dict() for o in options], "choice": best.as_dict(),
        }, indent=2))
        return
    click.echo(f"{rows:,} rows x {epochs} epoch(s), sequence length {seq_len}, {nodes} node(s)")
    table_rows = [
        ("*" if o is best else "", o.instance_type, f"{o.gpus * o.nodes}x {o.gpu}", o.pricing,
         f"{o.samples_per_second:,.0f}", f"{o.hours:.2f}", f"{o.price_per_hour:.3f}", f"{o.cost:,.2f}")
        for o in options
    ]
    click.echo(table.render(("", "INSTANCE", "GPUS", "PRICING", "SAMPLES/S", "HOURS", "$/HOUR", "COST $"),
                            table_rows, right=(4, 5, 6, 7)))
    click.echo(
        f"Assumptions: throughput x {assumptions.reference_seq_len}/sequence length; "
        f"{assumptions.multi_gpu_efficiency:.0%} scaling efficiency on more than one GPU; "
        f"{assumptions.startup_minutes:g} min startup; Spot takes {assumptions.spot_interruption_overhead:.0%} longer "
        f"(interruptions). Throughput figures are estimates (see gpu_throughput.json); "
        f"prices {prices.get('region', '')} as of {prices.get('as_of', '?')}."
    )
    queue = next(k for k, v in jobs.QUEUE_KEYS.items() if v == best.queue)
    flags = f"--gpus {best.gpus}" + (f" --nodes {best.nodes}" if best.nodes > 1 else "")
    flags += " --on-demand" if best.pricing == "on-demand" and best.nodes == 1 else ""
    click.echo(f"Would choose: {best.instance_type} {best.pricing} on queue {queue}, "
               f"{best.hours:.2f} h, ${best.cost:,.2f} (bertbatch submit {flags})")


def _count_rows(data: str, region: str | None, aws_profile: str | None) -> int:
    if data.startswith("s3://"):
        bucket, key = jobs.parse_s3_uri(data)
        s3 = aws.make_client("s3", region=region, aws_profile=aws_profile)
        jobs.check_s3_object(s3, "--data", data)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        return estimate_mod.count_rows(body.iter_lines(), header=estimate_mod.has_header(key))
    path = Path(data)
    if not path.is_file():
        raise BertBatchError(f"--data {data}: no such file")
    with path.open("rb") as fh:
        return estimate_mod.count_rows(fh, header=estimate_mod.has_header(data))


# --- local --------------------------------------------------------------------------------------
@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--train", "train", required=True, metavar="PATH", help="Training TSV/CSV")
@click.option("--eval", "eval_", required=True, metavar="PATH", help="Evaluation TSV/CSV")
@hyperparameter_options
@click.option("--vocab", metavar="PATH", help="WordPiece vocab for random:* models")
@click.option("--run-name", metavar="NAME", help="Run id (generated if omitted)")
@click.option("--output-dir", metavar="DIR", help="Outputs [default: local-runs/runs/<run-id>]")
@click.option("--checkpoint-dir", metavar="DIR", help="Checkpoints [default: local-runs/checkpoints/<run-id>]")
@click.option("--max-steps", type=int, metavar="N", help="Stop after N optimizer steps (a quick check)")
@click.option("--seed", type=int, metavar="N", help="Random seed")
@click.option("--dry-run", is_flag=True, help="Print the trainer command without running it")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED, metavar="[-- TRAINER FLAGS...]")
@click.pass_context
def local(ctx, train, eval_, vocab, run_name, output_dir, checkpoint_dir, max_steps, seed, dry_run, extra, **hyper):
    """Run the training entrypoint (python -m bert_train) on this machine with local paths.

    The same program and flags as a Batch job: the way to test a job before it costs money.
    Flags after -- go to the trainer unchanged (e.g. --precision fp32). The trainer's exit code
    is passed through.

    \b
    Examples:
      bertbatch local --train data/train.tsv --eval data/dev.tsv --model random:tiny --vocab vocab.txt --max-steps 20
      bertbatch local --train data/train.tsv --eval data/dev.tsv --model ./my-bert --epochs 1 --batch-size 8
      bertbatch local --train data/train.tsv --eval data/dev.tsv --model random:tiny --vocab vocab.txt -- --precision fp32
    """
    hyperparameters = params.validate(hyper)
    params.check_int("--max-steps", max_steps, 1)
    local_mod.check_path("--train", train)
    local_mod.check_path("--eval", eval_)
    if vocab:
        local_mod.check_path("--vocab", vocab)
    model = hyperparameters.get("model", contract.DEFAULT_PARAMETERS["model"])
    local_mod.check_model(model)
    if model.startswith("random:") and not vocab:
        raise BertBatchError(f"--model {model} needs --vocab PATH")
    run_id = params.check_run_id(run_name) if run_name else params.generate_run_id(model)
    output_dir = output_dir or str(Path("local-runs") / "runs" / run_id)
    checkpoint_dir = checkpoint_dir or str(Path("local-runs") / "checkpoints" / run_id)
    argv = local_mod.command(
        train=train, eval_=eval_, output_dir=output_dir, checkpoint_dir=checkpoint_dir, run_id=run_id,
        hyperparameters=hyperparameters, vocab=vocab, max_steps=max_steps, seed=seed, extra=tuple(extra),
    )
    if dry_run:
        click.echo(shlex.join(argv))
        return
    click.echo(f"Run {run_id}: outputs in {output_dir}, checkpoints in {checkpoint_dir}", err=True)
    rc = local_mod.run(argv, run_id=run_id)
    if rc != 0:
        click.echo(f"Error: the trainer exited with code {rc}", err=True)
    ctx.exit(rc)


def main() -> None:
    cli(prog_name="bertbatch")


if __name__ == "__main__":
    main()
