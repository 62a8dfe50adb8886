"""The tokenized store: what `python -m bert_train prepare` writes and the trainer reads.

A store is a local directory or an `s3://` prefix:

    shards/in-<input:06d>-<part:04d>.parquet   tokenized rows of input file <input> (sorted order)
    partials/child-<child:05d>-of-<n:05d>.json  one child's record (written after its shards)
    manifest.json                               written last, by the merge: the store is complete

Each shard is Parquet (columns `COLUMNS`; rows addressed by (shard, row group)), written by
the array child that owns its input file. `manifest.json` (format `FORMAT`, version
`FORMAT_VERSION`) names the sources (URI, size, version: S3 ETag or local mtime), the tokenizer
fingerprint, the settings, the row and token counts, the label set, the token ids used, and every
shard with its rows and row groups. Preparing again with the same sources, tokenizer and
settings rewrites nothing.

This module is the job interface in one place: the flags of `prepare` (one table, the training
table's row type), `validate`, the container command, the environment a child reads, the file
names, and which input files each child takes. Standard library only.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import replace

from . import hyperparameters, job
from .hyperparameters import Hyperparameter, InvalidHyperparameter, Value, add_arguments, format_value

SUBCOMMAND = "prepare"  # python -m bert_train prepare ...
MERGE_FLAG = "--merge"  # only merge the children's partial manifests into manifest.json

FORMAT = "bert-batch-tokenized"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARDS_DIR = "shards"
PARTIALS_DIR = "partials"

# Shard columns: token ids (int32 lists), token type ids (int8 lists; sentence pairs only), the
# label as text (the label set is known only once every child is done), the length in tokens.
COL_INPUT_IDS = "input_ids"
COL_TOKEN_TYPE_IDS = "token_type_ids"
COL_LABEL = "label"
COL_LENGTH = "length"
COLUMNS = (COL_INPUT_IDS, COL_TOKEN_TYPE_IDS, COL_LABEL, COL_LENGTH)
ROW_GROUP_ROWS = 8192  # rows per Parquet row group: the unit of shuffling and reading
MAX_CHILDREN = 10_000  # AWS Batch's largest array job

# Measured preparation rate (bench/data_scale.py, bench/results/data_scale.json: WordPiece, rows of
# 2-4 SST-2 sentences, 300 MB with 2 workers on the shared 2-core machine: 2.83 MB/s per core), for
# estimates before a run; compressed and Parquet inputs count COMPRESSED_TEXT_RATIO times their size.
PREPARE_MB_PER_SECOND_PER_CORE = 2.8
COMPRESSED_TEXT_RATIO = 4.0

# The array job: child i of n (flags --child-index / --num-children win).
ENV_ARRAY_SIZE = "AWS_BATCH_JOB_ARRAY_SIZE"
ENV_ARRAY_INDEX = job.ENV_BATCH_ARRAY_INDEX

STORE_LONG_TEXT = ("truncate", "head+tail")  # --long-text values a store can be prepared with
_H = Hyperparameter
OPTIONS: tuple[Hyperparameter, ...] = (
    _H("input", str, None, "the data: a file, a folder, or an s3:// prefix of shards (.jsonl, .csv, .tsv, "
       "each optionally .gz or .zst, and .parquet)", "data", parameter="input_uri", required=True, non_empty=True),
    _H("output", str, None, "the store: a directory or s3:// prefix (manifest.json is written last)", "data",
       parameter="store_uri", required=True, non_empty=True),
    hyperparameters.BY_NAME["model"],  # its tokenizer; the same flag as training's
    hyperparameters.BY_NAME["vocab"],
    hyperparameters.BY_NAME["max_seq_length"],
    # One row per text: `chunk` (windows) is for data files; the trainer refuses it with a store.
    replace(hyperparameters.BY_NAME["long_text"], choices=STORE_LONG_TEXT,
            help="texts longer than --max-seq-length: truncate (keep the start) or head+tail (a quarter of the "
            "tokens from the start, the rest from the end); training asks for the same"),
    hyperparameters.BY_NAME["text_column"],
    hyperparameters.BY_NAME["text_pair_column"],
    hyperparameters.BY_NAME["label_column"],
    hyperparameters.BY_NAME["problem_type"],  # how the label column reads
    hyperparameters.BY_NAME["label_separator"],
    _H("num_children", int, None, f"how many children share the input files (default ${ENV_ARRAY_SIZE}, else 1)",
       "children", minimum=1, maximum=MAX_CHILDREN),
    _H("child_index", int, None, f"the child this process is (default ${ENV_ARRAY_INDEX}, else 0)", "children",
       minimum=0, maximum=MAX_CHILDREN - 1),
    _H("workers", int, None, "tokenizer processes of this child (default: every CPU)", "children",
       minimum=1, maximum=1024),
    _H("rows_per_shard", int, 1_000_000, "rows per output shard at most", "children", minimum=ROW_GROUP_ROWS),
    hyperparameters.BY_NAME["cache_dir"],
)
BY_NAME: dict[str, Hyperparameter] = {row.name: row for row in OPTIONS}
# Ref:: parameter name -> row, in command order.
JOB_PARAMETERS: dict[str, Hyperparameter] = {row.parameter: row for row in OPTIONS if row.parameter}
# Settings that change the tokenized rows: a store prepared with other values is prepared again.
SETTINGS = ("model", "vocab", "max_seq_length", "long_text", "text_column", "text_pair_column", "label_column",
            "problem_type", "label_separator")


def validate(values: Mapping[str, object]) -> dict[str, Value]:
    """The given values checked and converted (None or "" for an optional string: not given).
    Raises InvalidHyperparameter with one line naming the flag and the value."""
    out: dict[str, Value] = {}
    for name, raw in values.items():
        row = BY_NAME.get(name)
        if row is None:
            raise InvalidHyperparameter(f"unknown option {name!r} (known: {', '.join(BY_NAME)})")
        if raw is None or (raw == "" and row.type is str and not row.required):
            continue
        out[name] = row.parse(raw)
    missing = [row.flag for row in OPTIONS if row.required and row.name not in out]
    if missing:
        raise InvalidHyperparameter(f"{', '.join(missing)}: required")
    hyperparameters.check_long_text(out)
    children, index = out.get("num_children"), out.get("child_index")
    if isinstance(children, int) and isinstance(index, int) and index >= children:
        raise InvalidHyperparameter(f"--child-index {index}: must be < --num-children {children}")
    return out


def children(values: Mapping[str, Value], env: Mapping[str, str]) -> tuple[int, int]:
    """(child index, number of children): the flags, else the array job's variables, else (0, 1)."""
    count = values.get("num_children")
    if count is None:
        count = BY_NAME["num_children"].parse(env.get(ENV_ARRAY_SIZE) or "1")
    index = values.get("child_index")
    if index is None:
        index = BY_NAME["child_index"].parse(env.get(ENV_ARRAY_INDEX) or "0")
    assert isinstance(count, int) and isinstance(index, int)
    if index >= count:
        raise InvalidHyperparameter(f"child {index}: must be < {count} children")
    return index, count


def child_files(files: int, child: int, count: int) -> range:
    """Indexes (in sorted order) of the input files child `child` of `count` tokenizes: contiguous,
    sizes differing by at most one (a child with none only writes its partial manifest)."""
    return range(child * files // count, (child + 1) * files // count)


def shard_name(input_index: int, part: int) -> str:
    return f"{SHARDS_DIR}/in-{input_index:06d}-{part:04d}.parquet"


def partial_name(child: int, count: int) -> str:
    return f"{PARTIALS_DIR}/child-{child:05d}-of-{count:05d}.json"


def add_options(parser: argparse.ArgumentParser, rows: Sequence[Hyperparameter] = OPTIONS) -> None:
    """One flag per row (values stay strings; `validate` converts them), and --merge."""
    add_arguments(parser, rows)
    parser.add_argument(MERGE_FLAG, action="store_true",
                        help="only merge the children's partial manifests into manifest.json")


def command(values: Mapping[str, Value], *, merge: bool = False) -> list[str]:
    """The container command for validated `values`: ["prepare", "--input", ..., ...]."""
    args = [SUBCOMMAND]
    for name, value in values.items():
        args += [BY_NAME[name].flag, format_value(value)]
    return args + ([MERGE_FLAG] if merge else [])


def job_command() -> list[str]:
    """["prepare", "--input", "Ref::input_uri", ...] for every job parameter: the prepare array
    job definition's command."""
    args = [SUBCOMMAND]
    for parameter, row in JOB_PARAMETERS.items():
        args += [row.flag, f"Ref::{parameter}"]
    return args
