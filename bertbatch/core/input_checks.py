"""What only the CLI checks, before any AWS call: run names, timeouts, integer options such as
--gpus, and sweep grid files. Errors are one line that names the flag.

Hyperparameter values are checked by the contract's table (`jobs.ref_parameters`), not here.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from pathlib import Path

from bertbatch_contract import hyperparameters as hp
from bertbatch_contract import runs

from ..jobs import ref_parameters as job_parameters
from .errors import BertBatchError


# --- run ids --------------------------------------------------------------------------------
def run_id(run_name: str | None, model: str | None, *, flag: str = "--run-name") -> str:
    """The checked --run-name, or a generated run id named after the model."""
    if run_name is not None:  # given, even as '': checked, never silently replaced
        try:
            return runs.check_run_id(run_name, what=flag)
        except runs.InvalidRunId as exc:
            raise BertBatchError(str(exc)) from None
    return runs.generate_run_id(model or str(hp.default("model")))


# --- timeouts -------------------------------------------------------------------------------
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")


def parse_timeout(value: str) -> int:
    """'90m', '6h', '1d' or plain seconds -> seconds (Batch needs at least 60)."""
    m = _DURATION.fullmatch(value)
    if not m:
        raise BertBatchError(f"--timeout {value or repr(value)}: use seconds or a duration like 90m, 6h, 1d")
    seconds = int(float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]])
    if seconds < 60:
        raise BertBatchError(f"--timeout {value}: AWS Batch needs at least 60 seconds")
    return seconds


def check_int(flag: str, value: int | None, lo: int, hi: int | None = None) -> None:
    if value is None:
        return
    if value < lo or (hi is not None and value > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise BertBatchError(f"{flag} {value}: must be {rng}")


def check_number(flag: str, value: float | None, *, minimum: float, exclusive: bool = False) -> None:
    """A finite number >= minimum (> minimum if exclusive); click's FLOAT accepts nan and inf."""
    if value is None:
        return
    if not math.isfinite(value) or value < minimum or (exclusive and value == minimum):
        raise BertBatchError(f"{flag} {value}: must be a number {'>' if exclusive else '>='} {minimum:g}")


# --- sweep grids ----------------------------------------------------------------------------
MAX_GRID_JSON = 6000  # bytes; Batch limits the size of container overrides
MIN_ARRAY_SIZE, MAX_ARRAY_SIZE = 2, 10_000  # AWS Batch array job sizes


def normalize_name(name: str) -> str:
    """A grid column as a job parameter name: '--learning-rate' and 'learning-rate' -> learning_rate."""
    return name.strip().lstrip("-").replace("-", "_")


def _read_text(path: str) -> str:
    """The grid file as text: UTF-8, with or without a byte-order mark (Excel writes one)."""
    p = Path(path)
    if not p.is_file():
        raise BertBatchError(f"--grid {path}: no such file")
    data = p.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BertBatchError(
            f"--grid {path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): save it as UTF-8"
        ) from None


def _check_size(path: str, rows: int) -> None:
    if rows > MAX_ARRAY_SIZE:
        raise BertBatchError(
            f"--grid {path}: {rows:,} rows, more than the {MAX_ARRAY_SIZE:,} children an AWS Batch array job can have"
        )


def _combinations(path: str, data: dict[str, object]) -> list[dict[str, object]]:
    """Every combination of an object of lists, counted before any is built."""
    keys = list(data)
    lists = [v if isinstance(v, list) else [v] for v in data.values()]
    _check_size(path, math.prod(len(values) for values in lists))
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*lists)]


def _csv_row(path: str, line: int, header: list[str], fields: list[str]) -> dict[str, object]:
    """One CSV row by column: every column given and not empty, else one line naming the file,
    the line and the column (a missing or empty cell would otherwise train with the default)."""
    if len(fields) < len(header):
        raise BertBatchError(f"--grid {path}:{line}: column {header[len(fields)]!r} is missing "
                             f"({len(fields)} fields, the header has {len(header)})")
    if len(fields) > len(header):
        raise BertBatchError(f"--grid {path}:{line}: {len(fields)} fields, the header has {len(header)} "
                             f"(after column {header[-1]!r})")
    for column, value in zip(header, fields, strict=True):
        if not value.strip():
            raise BertBatchError(f"--grid {path}:{line}: column {column!r} is empty: give every cell a value "
                                 "(an empty cell does not mean the default)")
    return dict(zip(header, fields, strict=True))


def _read_csv(path: str, text: str) -> list[dict[str, object]]:
    """The rows of a CSV grid under its header; blank lines are skipped."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    rows = [_csv_row(path, reader.line_num, header, fields) for fields in reader if fields]
    _check_size(path, len(rows))
    return rows


def _read_rows(path: str) -> list[dict[str, object]]:
    text = _read_text(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, text)
    if suffix != ".json":
        raise BertBatchError(f"--grid {path}: use a .json or .csv file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BertBatchError(f"--grid {path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict):
        return _combinations(path, data)
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        _check_size(path, len(data))
        return data
    raise BertBatchError(f"--grid {path}: expected a list of objects or an object of lists")


def load_grid(path: str) -> list[dict[str, str]]:
    """Rows of hyperparameters (job parameter name -> string) from a grid file.

    JSON: a list of objects ([{"learning_rate": 2e-5}, ...]) or an object of lists
    ({"learning_rate": [2e-5, 3e-5], "epochs": [2, 3]}: every combination).
    CSV: a header of hyperparameter names, one row per job.
    """
    rows = _read_rows(path)
    if not rows:
        raise BertBatchError(f"--grid {path}: no rows")
    out = []
    for i, row in enumerate(rows):
        named: dict[str, object] = {}
        for key, value in row.items():
            name = normalize_name(str(key))
            if name not in job_parameters.BY_PARAMETER:
                known = ", ".join(job_parameters.BY_PARAMETER)
                raise BertBatchError(f"--grid {path}: row {i}: unknown hyperparameter {key!r} (known: {known})")
            named[name] = value
        try:
            out.append(job_parameters.check_parameters(named))
        except BertBatchError as exc:
            raise BertBatchError(f"--grid {path}: row {i}: {exc.message}") from None
    if len(json.dumps(out)) > MAX_GRID_JSON:
        raise BertBatchError(f"--grid {path}: too large to pass to the job (over {MAX_GRID_JSON} bytes of JSON)")
    return out
