"""`bertbatch predict`: score a JSONL/CSV/TSV file with a trained model, on Batch or here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from bertbatch_contract import discovery, layout, prediction
from bertbatch_contract import job as job_env

from ..core import input_checks as params
from ..core.errors import BertBatchError, JobFailed
from ..core.options import hyperparameter_options, resolve_team, target_options, team_option
from ..core.session import Session, pass_session
from ..jobs import aws_batch as jobs
from ..jobs import child_process
from ..jobs import prediction_follower as predict_watch
from ..jobs import prediction_request as predict_mod
from ..models import registry
from ..ui.output_format import JSON, TABLE, print_record
from .local import LOCAL_RUNS_DIR

PREDICT_MODULE = "bert_train"


def _record(*, prediction_id: str, model: predict_mod.ResolvedModel, values: dict[str, Any], job_id: str | None,
            queue: str | None, console_url: str | None, rows: int | None) -> dict[str, Any]:
    version = model.version or {}
    return {"prediction_id": prediction_id, "model": model.uri, "model_version": version.get("version"),
            "run_id": version.get("run_id"), "input": values["input"], "output": values["output"],
            "shards": values["shards"], "job_id": job_id, "queue": queue, "console_url": console_url, "rows": rows}


def _manifest_rows(store: registry.Store, key: str) -> int | None:
    body = store.read(predict_mod.key_under(key, layout.PREDICTION_MANIFEST))
    if body is None:
        return None
    try:
        return int(json.loads(body)["total_rows"])
    except (ValueError, KeyError, TypeError):
        return None


def predict_argv(values: dict[str, Any], shard: int, prediction_id: str) -> list[str]:
    """`python -m bert_train predict` for one shard."""
    return [sys.executable, "-m", PREDICT_MODULE,
            *prediction.command({**values, "shard_index": shard, "prediction_id": prediction_id})]


def run_local(values: dict[str, Any], prediction_id: str) -> int:
    """Every shard in turn through `python -m bert_train predict` (a shard already done is skipped
    by the container, so a rerun resumes); the first non-zero exit status, or 0. A SIGTERM or
    SIGINT is forwarded to the running shard, and no shard starts after it (a shard that then
    finishes cleanly gives EXIT_INTERRUPTED: the rest is for a rerun to resume)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for shard in range(int(values["shards"])):
        finished = child_process.run(predict_argv(values, shard, prediction_id), env=env)
        if finished.status != 0:
            return finished.status
        if finished.interrupted:
            return job_env.EXIT_INTERRUPTED
    return 0


@click.command()
@hyperparameter_options(predict_mod.CLI_OPTIONS, default_label="default")
@click.option("--local", is_flag=True,
              help=f"Run here: the model and input are local (run ids and NAME@ALIAS under {LOCAL_RUNS_DIR}/)")
@click.option("--on-demand", is_flag=True, help="Skip Spot: use the On-Demand queue")
@click.option("--wait", is_flag=True, help="Then follow the job's shards until it ends (exit 0 only on SUCCEEDED)")
@click.option("--poll", type=float, default=10.0, show_default=True, metavar="SECONDS", help="Poll interval for --wait")
@click.option("--dry-run", is_flag=True, help="Check everything and print the SubmitJob request without submitting")
@click.option("--format", "-o", "output_format", type=click.Choice((TABLE, JSON)), default=TABLE, show_default=True,
              help="table for people, json for scripts (fields: docs/cli.md); --output is where predictions go")
@team_option
@target_options()
@pass_session
@click.pass_context
def predict(ctx: click.Context, session: Session, local: bool, on_demand: bool, wait: bool, poll: float,
            dry_run: bool, output_format: str, team: str | None, **options: Any) -> None:
    """Score a JSONL/CSV/TSV file with a trained model: one job, or an array job of --shards N.

    --model is a run id (its runs/<run-id>/), NAME@ALIAS or NAME@VERSION from the registry
    (bertbatch promote), or an s3:// prefix holding a training run's output. Everything is
    checked before submit: the model and its label_map.json, the input's columns, the output.
    Predictions go to s3://<artifacts>/predictions/<prediction-id>/part-<shard>.jsonl (row,
    id, label, probabilities), with manifest.json written last. Child i of an array job
    scores shard i; a rerun with the same --output skips the shards already done.

    \b
    Examples:
      bertbatch predict --model sst2-sentiment@production --input reviews/2026-11.jsonl --shards 8 --wait
      bertbatch predict --model sst2-run-1 --input s3://my-data/rows.csv --id-column review_id --team nlp
      bertbatch predict --local --model sst2-sentiment@production --input rows.tsv
    """
    values = predict_mod.validate(options)
    params.check_number("--poll", poll, minimum=0, exclusive=True)
    values["shards"] = int(values.get("shards") or 1)
    if local:
        _predict_local(ctx, values, dry_run, output_format)
        return
    store = registry.S3Store(session.client("s3"), session.get(discovery.ARTIFACTS_BUCKET))
    plan = predict_mod.plan(session, store, values, on_demand=on_demand, team=resolve_team(session, team))
    model = plan.model
    request = plan.request()
    if dry_run:
        click.echo(json.dumps(request, indent=2))
        return
    batch = session.client("batch")
    job_id = batch.submit_job(**request)["jobId"]
    url = jobs.console_url(session.region_name, job_id)
    if not wait or output_format != JSON:
        _print_submitted(plan, model, job_id, url, output_format, rows=None, final=not wait)
    if wait:
        job = predict_watch.wait(batch, job_id, plan.shards, poll=poll,
                                 view=predict_watch.ShardsView(plan.shards), sleep=session.sleep)
        out_bucket, out_key = jobs.parse_s3_uri(str(plan.values["output"]))
        rows = _manifest_rows(registry.S3Store(session.client("s3"), out_bucket), out_key)
        if output_format == JSON:
            _print_submitted(plan, model, job_id, url, output_format, rows=rows, final=True)
        if job.get("status") != "SUCCEEDED":
            raise JobFailed(f"prediction job {job_id} FAILED: {job.get('statusReason') or 'no reason given'}")
        if output_format != JSON:
            click.echo(f"Done: {rows if rows is not None else '?'} rows scored, "
                       f"{layout.join(str(plan.values['output']), layout.PREDICTION_MANIFEST)}")


def _print_submitted(plan: predict_mod.PredictPlan, model: predict_mod.ResolvedModel, job_id: str, url: str,
                     output_format: str, *, rows: int | None, final: bool) -> None:
    if output_format == JSON:
        if final:
            print_record("predict", _record(prediction_id=plan.prediction_id, model=model, values=plan.values,
                                            job_id=job_id, queue=plan.queue, console_url=url, rows=rows))
        return
    click.echo(f"Submitted prediction job {job_id}")
    click.echo(f"  prediction id: {plan.prediction_id}")
    click.echo(f"  model:         {model.described} -> {model.uri}")
    click.echo(f"  input:         {plan.values['input']}")
    if plan.shards > 1:
        click.echo(f"  shards:        {plan.shards} (array job: child i scores shard i)")
    click.echo(f"  output:        {plan.values['output']}")
    click.echo(f"  console:       {url}")


def _predict_local(ctx: click.Context, values: dict[str, Any], dry_run: bool, output_format: str) -> None:
    store = registry.DirectoryStore(LOCAL_RUNS_DIR)
    source = str(values["input"])
    if "://" in source:
        raise BertBatchError(f"--input {source}: --local takes a local path")
    model = predict_mod.resolve_model(store, str(values["model"]))
    values = predict_mod.as_trained(values, predict_mod.read_training_args(model.uri))
    predict_mod.check_columns(source, predict_mod.read_local_head(source), predict_mod.wanted_columns(values))
    prediction_id = predict_mod.prediction_id(model.described)
    output = str(values.get("output") or LOCAL_RUNS_DIR / layout.prediction_prefix(prediction_id))
    if "://" in output:
        raise BertBatchError(f"--output {output}: --local writes to a local directory")
    predict_mod.check_output_unused(registry.DirectoryStore(Path(output)), "", output)
    resolved = {**values, "model": model.uri, "output": output}
    if dry_run:
        click.echo(json.dumps(prediction.command(resolved)))
        return
    if output_format != JSON:
        click.echo(f"Prediction {prediction_id}: {model.described} -> {model.uri}, output in {output}", err=True)
    rc = run_local(resolved, prediction_id)
    if rc != 0:
        click.echo(f"Error: the predict entrypoint exited with code {rc}", err=True)
        ctx.exit(rc)
    rows = _manifest_rows(registry.DirectoryStore(Path(output)), "")
    if output_format == JSON:
        print_record("predict", _record(prediction_id=prediction_id, model=model, values=resolved, job_id=None,
                                        queue=None, console_url=None, rows=rows))
        return
    click.echo(f"Done: {rows if rows is not None else '?'} rows scored, "
               f"{Path(output) / layout.PREDICTION_MANIFEST}")
