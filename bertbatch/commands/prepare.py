"""`bertbatch prepare`: tokenize a dataset once into a store that training streams from, on this
machine (`--local`) or on the platform's Spot CPU queue as an array job."""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

import click

from bertbatch_contract import discovery, store

from ..core.errors import BertBatchError
from ..core.options import hyperparameter_options, resolve_team, target_options, team_option
from ..core.session import Session, pass_session
from ..jobs import aws_batch as jobs
from ..jobs import preparation_array as prepare_batch
from ..jobs import preparation_process as local_prepare
from ..models import staging as models
from ..ui.output_format import JSON, output_option, print_record

# The prepare flags a user sets (the locations and the array children are the command's own).
PREPARE_ROWS = tuple(store.BY_NAME[name] for name in (
    "model", "vocab", "max_seq_length", "long_text", "text_column", "text_pair_column", "label_column", "workers",
    "rows_per_shard"))


@click.command()
@click.option("--input", "input_", required=True, metavar="PATH",
              help="The data (.jsonl, .csv, .tsv, optionally .gz/.zst; .parquet): with --local a file or a folder "
                   "of shards; on the platform an s3:// URI or prefix, a key under the data bucket's datasets/, "
                   "or an FSx path")
@click.option("--store", "store_dir", metavar="DIR|S3_URI",
              help="Where the store goes [default: local-runs/stores/<name>-<key>, on the platform "
                   "s3://<data>/datasets/prepared/<name>-<key>/]")
@click.option("--local", "local_", is_flag=True, help="Prepare on this machine instead of the platform")
@click.option("--children", type=click.IntRange(1, store.MAX_CHILDREN), metavar="N",
              help=f"Array children on the platform [default: one per input file, at most "
                   f"{prepare_batch.DEFAULT_MAX_CHILDREN:,}]")
@hyperparameter_options(PREPARE_ROWS, default_label="default")
@click.option("--dry-run", is_flag=True, help="Print the command (or the SubmitJob requests) without running it")
@team_option
@output_option
@target_options()
@pass_session
@click.pass_context
def prepare(ctx: click.Context, session: Session, input_: str, store_dir: str | None, local_: bool,
            children: int | None, dry_run: bool, team: str | None, output: str, **flags: Any) -> None:
    """Tokenize a dataset once into a store (Parquet shards and manifest.json).

    Training with --train pointing at the store streams it: memory stays flat and the first step
    comes as fast for 100 GB as for 100 MB. Preparing again with the same files, tokenizer and
    settings rewrites nothing. The time (and on the platform the Spot cost) is estimated and
    printed before anything starts, from the measured rate (bench/data_scale.py).

    On the platform it is an array job on the prepare queue (Spot CPU instances): each child
    tokenizes its group of input files, a last job merges their manifests. `bertbatch local`
    prepares its --train input by itself.

    \b
    Examples:
      bertbatch prepare --input reviews/2026/ --model bert-base-uncased
      bertbatch prepare --input s3://my-data/datasets/big/ --children 64 -o json
      bertbatch prepare --local --input data/train.jsonl.gz --model ./my-bert
      bertbatch prepare --local --input data/shards/ --model random:tiny --vocab vocab.txt --max-seq-length 64
    """
    given = {name: value for name, value in flags.items() if value is not None}
    if local_:
        if children is not None:
            raise BertBatchError("--children: --local prepares in one process (use --workers)")
        ctx.exit(_prepare_here(input_, store_dir, given, dry_run, output))
    _prepare_on_the_platform(session, input_, store_dir, given, children, dry_run, output,
                             team=resolve_team(session, team))


def _prepare_here(input_: str, store_dir: str | None, given: dict[str, Any], dry_run: bool, output: str) -> int:
    if "://" in input_:
        raise BertBatchError(f"--input {input_}: --local takes local paths")
    if output == JSON:
        raise BertBatchError("--output json: prepare --local prints the store's folder, not a record")
    files = local_prepare.data_files(input_)
    target = store_dir or str(local_prepare.default_output(input_, given))
    values = local_prepare.check({"input": input_, "output": target, **given})
    argv = local_prepare.command(values)
    if dry_run:
        click.echo(shlex.join(argv))
        return 0
    workers = int(values.get("workers") or os.cpu_count() or 1)
    click.echo(local_prepare.estimate_line(files, workers), err=True)
    rc = local_prepare.run(argv)
    if rc != 0:
        click.echo(f"Error: prepare exited with code {rc}", err=True)
    else:
        click.echo(f"Store: {target}", err=True)
    return rc


def _prepare_on_the_platform(session: Session, input_: str, store_dir: str | None, given: dict[str, Any],
                             children: int | None, dry_run: bool, output: str, *, team: str) -> None:
    if given.get("vocab"):
        raise BertBatchError("--vocab: a file on this machine that no job can read: use --local, or a staged model")
    data_bucket = session.get(discovery.DATA_BUCKET)
    mount = session.deployment.fsx_mount_path
    input_uri = jobs.resolve_input("--input", input_, data_bucket, mount)
    if not input_uri.startswith("s3://"):  # an FSx path: the CPU instances read its S3 original
        counterpart = jobs.fsx_s3_counterpart(input_uri, mount or "", data_bucket)
        if counterpart is None:
            raise BertBatchError(f"--input {input_}: only paths under {mount}/datasets/ mirror the data bucket")
        input_uri = counterpart
    given["model"] = models.resolve(session, str(given.get("model") or store.BY_NAME["model"].default))
    cap = prepare_batch.capacity(session)
    # One tokenizer process per vCPU of the child: the container sees all of the host's CPUs.
    given.setdefault("workers", str(cap.vcpus_per_child))
    files = prepare_batch.list_input(session.client("s3"), input_uri)
    target = store_dir or prepare_batch.default_store(data_bucket, input_uri, given)
    if not target.startswith("s3://"):
        raise BertBatchError(f"--store {target}: a job writes to S3: give an s3:// prefix (or use --local)")
    values = local_prepare.check({"input": input_uri, "output": target.rstrip("/") + "/", **given})
    count = min(children or prepare_batch.DEFAULT_MAX_CHILDREN, len(files))
    plan = prepare_batch.Submission(
        children=count, values=values, queue=session.get(discovery.QUEUE_PREPARE),
        job_definition=session.get(discovery.JOB_DEFINITION_PREPARE), name=prepare_batch.job_name(input_uri),
        team=team)
    if dry_run:
        click.echo(json.dumps({"children": plan.children_request(), "merge": plan.merge_request("<children-job-id>")},
                              indent=2))
        return
    click.echo(prepare_batch.estimate_line(files, count, cap), err=True)
    batch = session.client("batch")
    children_job = batch.submit_job(**plan.children_request())["jobId"]
    merge_job = batch.submit_job(**plan.merge_request(children_job))["jobId"]
    record = {"store": values["output"], "input": input_uri, "files": len(files), "children": count,
              "children_job_id": children_job, "merge_job_id": merge_job, "queue": plan.queue}
    if output == JSON:
        print_record("prepare", record)
        return
    click.echo(f"Submitted: {count} child(ren) as job {children_job}, then the merge as job {merge_job}")
    click.echo(f"  store:  {values['output']} (manifest.json is written last)")
    click.echo(f"  follow: bertbatch watch {merge_job}")
    click.echo(f"  train:  bertbatch submit --train {values['output']}")
