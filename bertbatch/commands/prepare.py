"""`bertbatch prepare`: tokenize a dataset once into a store that training streams from."""

from __future__ import annotations

import os
import shlex
from typing import Any

import click

from bertbatch_contract import store

from .. import local_prepare
from ..errors import BertBatchError
from ..options import hyperparameter_options

# The prepare flags a user sets (the locations and the array children are the command's own).
PREPARE_ROWS = tuple(store.BY_NAME[name] for name in (
    "model", "vocab", "max_seq_length", "text_column", "text_pair_column", "label_column", "workers",
    "rows_per_shard"))


@click.command()
@click.option("--input", "input_", required=True, metavar="PATH",
              help="The data: a file or a folder of shards (.jsonl, .csv, .tsv, optionally .gz/.zst; .parquet)")
@click.option("--store", "store_dir", metavar="DIR",
              help="Where the store goes [default: local-runs/stores/<name>-<key>]")
@click.option("--local", "local_", is_flag=True, help="Prepare on this machine (required for now)")
@hyperparameter_options(PREPARE_ROWS, default_label="default")
@click.option("--dry-run", is_flag=True, help="Print the command without running it")
@click.pass_context
def prepare(ctx: click.Context, input_: str, store_dir: str | None, local_: bool, dry_run: bool, **flags: Any) -> None:
    """Tokenize a dataset once into a store (Parquet shards and manifest.json).

    Training with --train pointing at the store streams it: memory stays flat and the first step
    comes as fast for 100 GB as for 100 MB. Preparing again with the same files, tokenizer and
    settings rewrites nothing. The estimate printed first comes from the measured rate
    (bench/data_scale.py). `bertbatch local` prepares its --train input by itself.

    \b
    Examples:
      bertbatch prepare --local --input data/train.jsonl.gz --model ./my-bert
      bertbatch prepare --local --input data/shards/ --model random:tiny --vocab vocab.txt --max-seq-length 64
      bertbatch prepare --local --input train.tsv --model ./my-bert --store stores/train --workers 4
    """
    if not local_:
        raise BertBatchError("prepare runs on this machine for now: pass --local")
    if "://" in input_:
        raise BertBatchError(f"--input {input_}: --local takes local paths")
    files = local_prepare.data_files(input_)
    given = {name: value for name, value in flags.items() if value is not None}
    target = store_dir or str(local_prepare.default_output(input_, given))
    values = local_prepare.check({"input": input_, "output": target, **given})
    argv = local_prepare.command(values)
    if dry_run:
        click.echo(shlex.join(argv))
        return
    workers = int(values.get("workers") or os.cpu_count() or 1)
    click.echo(local_prepare.estimate_line(files, workers), err=True)
    rc = local_prepare.run(argv)
    if rc != 0:
        click.echo(f"Error: prepare exited with code {rc}", err=True)
    else:
        click.echo(f"Store: {target}", err=True)
    ctx.exit(rc)
