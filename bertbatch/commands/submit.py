"""`bertbatch submit`: a fine-tuning job (or a sweep) on the profile's queues."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import click

from bertbatch_contract import discovery, layout, runs, tags
from bertbatch_contract import job as job_env

from ..core import input_checks as params
from ..core.errors import BertBatchError
from ..core.options import hyperparameter_options, resolve_team, target_options, team_option
from ..core.session import Session, pass_session
from ..cost import cost_cap, token_sample
from ..cost import job_estimate_tag as submit_estimate
from ..jobs import aws_batch as jobs
from ..jobs import job_follower as watch_mod
from ..jobs import preparation_array as prepare_batch
from ..jobs import queue_capacity as capacity
from ..jobs import ref_parameters as job_parameters
from ..models import staging as models
from ..runs import artifacts
from ..ui.output_format import JSON, output_option, print_record

INPUTS = (("train_uri", "--train"), ("eval_uri", "--eval"))


@dataclass
class Request:
    """What the user asked for, checked without any AWS call."""

    run_id: str
    hyperparameters: dict[str, str]  # job parameter -> value
    grid_rows: list[dict[str, str]] | None
    array_size: int | None
    timeout_seconds: int | None


def check_request(*, hyper: dict[str, Any], run_name: str | None, gpus: int | None, nodes: int,
                  array_size: int | None, timeout: str | None, grid: str | None) -> Request:
    """Step 1 of submit: everything that needs no AWS call, so a bad value costs nothing."""
    hyperparameters = job_parameters.to_parameters(job_parameters.check(hyper))
    params.check_int("--nodes", nodes, 1, 1000)
    params.check_int("--gpus", gpus, 1, 8)
    params.check_int("--array", array_size, params.MIN_ARRAY_SIZE, params.MAX_ARRAY_SIZE)
    timeout_seconds = params.parse_timeout(timeout) if timeout is not None else None
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
    run_id = params.run_id(run_name, hyperparameters.get("model"))
    return Request(run_id=run_id, hyperparameters=hyperparameters, grid_rows=grid_rows, array_size=array_size,
                   timeout_seconds=timeout_seconds)


def resolve_inputs(session: Session, given: dict[str, str | None], defaults: dict[str, str]) -> dict[str, str]:
    """The --train/--eval URIs to send (bare keys are under the data bucket's datasets/, /fsx/...
    paths need FSx). Every input the job will read, given or the job definition's default, must
    exist: an FSx path is checked through the data-bucket object it mirrors."""
    data_bucket = session.get(discovery.DATA_BUCKET)
    mount = session.deployment.fsx_mount_path
    s3 = session.client("s3")
    inputs: dict[str, str] = {}
    for name, flag in INPUTS:
        value = given.get(name)
        if value:
            uri = inputs[name] = jobs.resolve_input(flag, value, data_bucket, mount)
        else:
            uri = defaults.get(name, "")
            if not uri:
                raise BertBatchError(f"{flag} is required: the job definition has no default {name}")
        if mount and jobs.is_fsx_path(uri, mount):
            mirrored = jobs.fsx_s3_counterpart(uri, mount, data_bucket)
            if mirrored is not None:
                jobs.check_s3_object(s3, f"{flag} {uri} (from FSx)", mirrored)
        elif uri.startswith("s3://"):
            jobs.check_s3_object(s3, flag, uri)
            if name == "train_uri":
                check_raw_train_size(session, uri)
    return inputs


def check_raw_train_size(session: Session, uri: str) -> None:
    """Data files given to --train are read whole into memory on every training process (about
    60 times their size); past `prepare_batch.MAX_RAW_TRAIN_BYTES` the job would be killed for
    memory after its instance started. A prepared store streams whatever its size."""
    if token_sample.store_manifest(session, uri, "--train") is not None:
        return
    size = prepare_batch.text_bytes(prepare_batch.list_input(session.client("s3"), uri))
    if size > prepare_batch.MAX_RAW_TRAIN_BYTES:
        raise BertBatchError(
            f"--train {uri}: {size / 1e6:,.0f} MB of data files would be read whole into memory by every training "
            f"process (more than {prepare_batch.MAX_RAW_TRAIN_BYTES // 10**6} MB: about 60 times their size); "
            f"prepare it once and train from the store: bertbatch prepare --input {uri}")


def resolve_models(session: Session, request: Request, defaults: dict[str, str]) -> None:
    """Staged names to their s3:// prefixes, in the request and each grid row; a hub name that
    jobs cannot download is refused. Without --model, the job definition's default (the staged
    copy of bert-base-uncased) is checked and sent: that is the model that would run."""
    model = request.hyperparameters.get("model") or defaults.get("model", "")
    if model:
        request.hyperparameters["model"] = models.resolve(session, model)
    for row in request.grid_rows or []:
        if row.get("model"):
            row["model"] = models.resolve(session, row["model"])


def check_capacity(session: Session, queue_key: str, queue: str, definition: dict[str, Any], gpus: int | None,
                   nodes: int) -> None:
    """Refuse a job no instance type of the queue's compute environments can ever hold."""
    kind = jobs.queue_kind_of(queue_key)
    environments = capacity.read(session, kind, queue)
    if not environments:
        return
    resources = jobs.resource_requirements(definition)
    need = capacity.Need(gpus=gpus if gpus is not None else resources.get("GPU", 1), vcpus=resources.get("VCPU"),
                         memory_mib=resources.get("MEMORY"))
    capacity.check(queue_kind=kind, queue=queue, environments=environments, need=need, nodes=nodes)


def check_reservation(session: Session, name: str | None, on_demand: bool) -> None:
    """--reservation names one of the deployment's reserved queues (refused before any submit)."""
    if name is None:
        return
    if on_demand:
        raise BertBatchError("--reservation and --on-demand: pick one (a reserved queue is On-Demand already)")
    known = session.deployment.reservations
    if name not in known:
        have = ", ".join(sorted(known)) or "none: add one to training.reservations in cdk.json and redeploy"
        raise BertBatchError(f"--reservation {name}: not one of this deployment's reservations ({have})")


def check_reused_run(session: Session, run_id: str, array_size: int | None) -> None:
    """A finished run is not overwritten; an unfinished one is resumed from its checkpoints."""
    bucket = session.get(discovery.ARTIFACTS_BUCKET)
    s3 = session.client("s3")
    ids = [runs.array_run_id(run_id, i) for i in range(array_size)] if array_size else [run_id]
    for rid in ids[:20]:
        metrics, _ = artifacts.read_metrics(s3, bucket, rid)
        if metrics is not None:
            raise BertBatchError(
                f"--run-name {run_id}: run {rid} already finished "
                f"({layout.s3_uri(bucket, layout.run_prefix(rid) + layout.METRICS_FILE)}): choose another name"
            )
    if not array_size and artifacts.list_objects(s3, bucket, layout.checkpoint_prefix(run_id))[:1]:
        click.echo(f"Run {run_id} has checkpoints: the job resumes from them.", err=True)


def print_submitted(session: Session, job_id: str, request: Request, plan: jobs.SubmitPlan, output: str) -> None:
    queue = plan.queue
    if output == JSON:
        print_record("submit", {
            "job_id": job_id, "run_id": request.run_id, "queue": queue, "job_definition": plan.job_definition,
            "array_size": request.array_size, "console_url": jobs.console_url(session.region_name, job_id),
        })
        return
    click.echo(f"Submitted job {job_id}")
    click.echo(f"  run id:  {request.run_id}")
    click.echo(f"  queue:   {queue}")
    if request.array_size:
        first = runs.array_run_id(request.run_id, 0)
        last = runs.array_run_id(request.run_id, request.array_size - 1)
        click.echo(f"  array:   {request.array_size} children, run ids {first} .. {last}")
    click.echo(f"  console: {jobs.console_url(session.region_name, job_id)}")


@click.command()
@click.option("--train", "train", metavar="URI",
              help="Training data: s3://bucket/key, or a key under the data bucket's datasets/ [job default]")
@click.option("--eval", "eval_", metavar="URI", help="Evaluation data, like --train [job default]")
@click.option("--run-name", metavar="NAME",
              help="Run id (letters, digits, - and _); generated if omitted. Reusing one resumes from its checkpoints")
@hyperparameter_options(job_parameters.OPTION_ROWS)
@click.option("--gpus", type=int, metavar="N",
              help="GPUs per node (default: the job definition's); refused when no instance type of the queue has "
                   "that many")
@click.option("--nodes", type=int, default=1, show_default=True, metavar="N",
              help="Nodes; N > 1 uses the multi-node (On-Demand) queue")
@click.option("--on-demand", is_flag=True, help="Skip Spot: use the On-Demand queue")
@click.option("--reservation", metavar="NAME",
              help="Run on the queue of reserved capacity NAME (training.reservations: an ODCR or Capacity Block)")
@click.option("--timeout", metavar="DURATION", help="Attempt timeout, e.g. 90m, 6h, 1d or seconds")
@click.option("--array", "array_size", type=int, metavar="N",
              help="Submit an array job of N children (AWS_BATCH_JOB_ARRAY_INDEX 0..N-1)")
@click.option("--grid", type=click.Path(dir_okay=False), metavar="FILE",
              help="Sweep grid (.json or .csv): one array child per row")
@click.option("--max-cost", metavar="USD",
              help="Stop the run (checkpoint, exit code 76, not retried) before its cost over all attempts passes "
                   "USD; submitting the same --run-name with a higher cap resumes it")
@click.option("--dry-run", is_flag=True, help="Check everything and print the SubmitJob request without submitting")
@click.option("--wait", is_flag=True, help="Then watch the job until it ends (exit code 0 only on SUCCEEDED)")
@click.option("--poll", type=float, default=10.0, show_default=True, metavar="SECONDS", help="Poll interval for --wait")
@click.option("--fallback-grace", type=float, default=60.0, show_default=True, metavar="SECONDS",
              help="With --wait: how long to wait for an On-Demand resubmission after a failure")
@team_option
@output_option
@target_options()
@pass_session
@click.pass_context
def submit(ctx: click.Context, session: Session, train: str | None, eval_: str | None, run_name: str | None,
           gpus: int | None, nodes: int, on_demand: bool, reservation: str | None, timeout: str | None,
           array_size: int | None, grid: str | None, max_cost: str | None, dry_run: bool, wait: bool, poll: float,
           fallback_grace: float, team: str | None, output: str, **hyper: Any) -> None:
    """Submit a fine-tuning job (or a sweep) to the profile's queues.

    Hyperparameters are checked by the same table as the trainer's, and the inputs are checked
    to exist, before anything is submitted. The job gets RUN_ID and the run-id tag, so Batch
    retries and an On-Demand fallback resubmission resume from the same checkpoints. Spot first
    unless --on-demand; --nodes N > 1 runs a multi-node job.

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
      bertbatch submit --team nlp --train sst2/train.tsv   # the nlp team's fair share and cost
      bertbatch submit --reservation p5 --gpus 8 --train sst2/train.tsv   # on reserved capacity
      bertbatch submit --profile prod --region eu-west-1 --train sst2/train.tsv --dry-run
      bertbatch submit --train sst2/train.tsv -o json | jq -r .job_id
    """
    request = check_request(hyper=hyper, run_name=run_name, gpus=gpus, nodes=nodes, array_size=array_size,
                            timeout=timeout, grid=grid)
    watch_mod.check_poll(poll, fallback_grace)
    cap = cost_cap.check_cap(max_cost)
    check_reservation(session, reservation, on_demand)
    queue_key, jobdef_key = jobs.choose_queue(nodes, on_demand, reservation)
    queue, job_definition = session.get(queue_key), session.get(jobdef_key)
    team = resolve_team(session, team)
    batch = session.client("batch")
    definition = jobs.describe_job_definition(batch, job_definition)
    defaults = dict(definition.get("parameters") or {})
    check_capacity(session, queue_key, queue, definition, gpus, nodes)
    resolve_models(session, request, defaults)
    inputs = resolve_inputs(session, {"train_uri": train, "eval_uri": eval_}, defaults)
    if run_name is not None:
        check_reused_run(session, request.run_id, request.array_size)

    environment: dict[str, str] = {}
    if request.grid_rows is not None:
        environment[job_env.ENV_GRID] = json.dumps(request.grid_rows, separators=(",", ":"))
    if cap is not None:
        kind = jobs.queue_kind_of(queue_key)
        environment.update(cost_cap.environment(session, cap, kind, queue))
    parameters = {**defaults, **inputs, **request.hyperparameters}
    cost = submit_estimate.job_estimate(
        session, train_uri=parameters.get("train_uri", ""), queue_key=queue_key, gpus=gpus or 1, nodes=nodes,
        epochs=int(parameters["epochs"]), seq_len=int(parameters["max_seq_length"]), array_size=request.array_size,
        model=parameters.get("model", ""), text_column=parameters.get("text_column", ""),
    )
    plan = jobs.SubmitPlan(
        run_id=request.run_id, queue=queue, job_definition=job_definition,
        parameters={**inputs, **request.hyperparameters}, environment=environment, gpus=gpus, nodes=nodes,
        array_size=request.array_size, timeout_seconds=request.timeout_seconds,
        extra_tags={} if cost is None else {tags.TAG_COST_ESTIMATE: f"{cost:.2f}"}, team=team,
    )
    if dry_run:
        click.echo(json.dumps(plan.request(), indent=2))
        return
    job_id = batch.submit_job(**plan.request())["jobId"]
    print_submitted(session, job_id, request, plan, output)
    if wait:
        ctx.exit(watch_mod.watch(session, job_id, poll=poll, fallback_grace=fallback_grace, output=output))
