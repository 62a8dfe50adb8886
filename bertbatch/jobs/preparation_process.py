"""Preparing a dataset on this machine: `python -m bert_train prepare` as a subprocess into a
store under `local-runs/stores/`, named by a key of the input and the settings (the trainer
itself rewrites nothing when the files and the tokenizer are unchanged), with a time estimate
printed before it starts.

The CLI does not import the container: flags come from `bertbatch_contract.store`, the
estimate from its measured rate.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from bertbatch_contract import store, tables
from bertbatch_contract.hyperparameters import InvalidHyperparameter

from ..core.errors import BertBatchError
from . import child_process

STORES_DIR = Path("local-runs") / "stores"


def is_store(path: str) -> bool:
    return (Path(path) / store.MANIFEST).is_file()


def data_files(path: str, flag: str = "--input") -> list[Path]:
    """The data files at a local path (a file, or a folder of shards), as the container lists them."""
    p = Path(path)
    if p.is_file():
        if tables.data_format(p.name) is None:
            raise BertBatchError(f"{flag} {path}: unknown file type (expected one of {tables.extensions()})")
        return [p]
    if not p.is_dir():
        raise BertBatchError(f"{flag} {path}: no such file or folder")
    files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith((".", "_"))
                   and tables.data_format(f.name) is not None)
    if not files:
        raise BertBatchError(f"{flag} {path}: no data files (expected names ending in {tables.extensions()})")
    return files


def text_bytes(files: list[Path]) -> int:
    """The input's size as text: compressed files count `store.COMPRESSED_TEXT_RATIO` times."""
    total = 0
    for f in files:
        kind = tables.data_format(f.name)
        ratio = store.COMPRESSED_TEXT_RATIO if kind and (kind.compression or kind.fmt == "parquet") else 1.0
        total += int(f.stat().st_size * ratio)
    return total


def estimate_line(files: list[Path], workers: int) -> str:
    size = text_bytes(files)
    rate = store.PREPARE_MB_PER_SECOND_PER_CORE * workers
    seconds = size / 1e6 / rate
    return (f"Preparing {len(files)} file(s), about {size / 1e6:,.1f} MB of text, on {workers} core(s): "
            f"estimated {duration(seconds)} (at {store.PREPARE_MB_PER_SECOND_PER_CORE:g} MB/s per core)")


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def store_name(input_id: str, values: Mapping[str, str]) -> str:
    """<input name>-<key>: one store per input (a resolved path or a URI) and settings."""
    key = json.dumps({"input": input_id, **{k: v for k, v in sorted(values.items()) if k in store.SETTINGS}})
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    name = input_id.rstrip("/").rsplit("/", 1)[-1].split(".")[0] or "data"
    return f"{name}-{digest}"


def default_output(input_path: str, values: Mapping[str, str]) -> Path:
    """local-runs/stores/<input name>-<key>: one store per input and settings."""
    return STORES_DIR / store_name(str(Path(input_path).resolve()), values)


def command(values: Mapping[str, str], python: str | None = None) -> list[str]:
    """argv of `python -m bert_train prepare` for checked `values` (field name -> text)."""
    args = [python or sys.executable, "-m", "bert_train", store.SUBCOMMAND]
    for name, value in values.items():
        args += [store.BY_NAME[name].flag, value]
    return args


def check(values: Mapping[str, object]) -> dict[str, str]:
    """The prepare flags checked by the contract's table (the container's own check): given ones
    as text, by field name. BertBatchError with the table's one-line message."""
    try:
        checked = store.validate(values)
    except InvalidHyperparameter as exc:
        raise BertBatchError(str(exc)) from None
    return {name: str(values[name]).strip() for name in checked}


def run(argv: list[str]) -> int:
    """Run prepare; its log (stderr) passes through. Returns its exit status (SIGTERM and SIGINT
    are forwarded to it and waited for: `child_process`)."""
    return child_process.run(argv, env=dict(os.environ, PYTHONUNBUFFERED="1")).status
