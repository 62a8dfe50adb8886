"""Hyperparameters, run ids, timeouts and sweep grids: validated on this machine, before any
AWS call, with one-line errors that name the flag.

The hyperparameter names are the job definitions' `Ref::` parameters
(`bert_train.contract.JOB_PARAMETERS`), so the CLI, the job definitions and the container flags
cannot drift apart.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import itertools
import json
import math
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bert_train import contract

from .errors import BertBatchError

INPUT_PARAMETERS = ("train_uri", "eval_uri")


def _positive_int(value: str) -> str:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError("must be an integer >= 1") from None
    if n < 1:
        raise ValueError("must be an integer >= 1")
    return str(n)


def _learning_rate(value: str) -> str:
    try:
        lr = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a number > 0, e.g. 2e-5") from None
    if not math.isfinite(lr) or lr <= 0 or lr >= 1:
        raise ValueError("must be a number > 0 and < 1, e.g. 2e-5")
    return value.strip() if isinstance(value, str) else repr(lr)


def _seq_length(value: str) -> str:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError("must be an integer between 8 and 512") from None
    if not 8 <= n <= 512:
        raise ValueError("must be an integer between 8 and 512 (BERT's position embeddings)")
    return str(n)


def _non_empty(value: str) -> str:
    value = str(value).strip()
    if not value:
        raise ValueError("must not be empty")
    return value


@dataclass(frozen=True)
class HyperParameter:
    name: str  # Ref:: parameter name (contract.JOB_PARAMETERS key)
    help: str
    check: Callable[[str], str]

    @property
    def flag(self) -> str:
        return contract.JOB_PARAMETERS[self.name]

    @property
    def default(self) -> str | None:
        return contract.DEFAULT_PARAMETERS.get(self.name)


HYPERPARAMETERS: tuple[HyperParameter, ...] = (
    HyperParameter("model", "Model name or path (random:tiny for a tiny random-init model)", _non_empty),
    HyperParameter("epochs", "Training epochs (integer >= 1)", _positive_int),
    HyperParameter("learning_rate", "Peak learning rate (> 0)", _learning_rate),
    HyperParameter("batch_size", "Batch size per GPU (integer >= 1)", _positive_int),
    HyperParameter("max_seq_length", "Maximum sequence length in tokens (8..512)", _seq_length),
    HyperParameter("text_column", "Name of the text column in the TSV/CSV", _non_empty),
    HyperParameter("label_column", "Name of the label column in the TSV/CSV", _non_empty),
)
BY_NAME = {h.name: h for h in HYPERPARAMETERS}

# Every Ref:: parameter is either an input or a hyperparameter the CLI knows how to check.
assert set(BY_NAME) | set(INPUT_PARAMETERS) == set(contract.JOB_PARAMETERS), "contract drift"


def normalize_name(name: str) -> str:
    return name.strip().lstrip("-").replace("-", "_")


def validate(values: dict[str, object]) -> dict[str, str]:
    """Check hyperparameters given by name; drop unset ones. Returns name -> string value."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        hp = BY_NAME.get(name)
        if hp is None:
            raise BertBatchError(f"unknown hyperparameter {name!r}")
        try:
            out[name] = hp.check(str(value))
        except ValueError as exc:
            raise BertBatchError(f"{hp.flag} {value}: {exc}") from None
    return out


# --- run ids --------------------------------------------------------------------------------
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


def check_run_id(run_id: str, flag: str = "--run-name") -> str:
    if not _RUN_ID.match(run_id):
        raise BertBatchError(
            f"{flag} {run_id!r}: use 1-100 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return run_id


def _slug(text: str) -> str:
    text = text.rsplit("/", 1)[-1].replace(":", "-")
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "run"


def generate_run_id(model: str | None = None, *, now: _dt.datetime | None = None) -> str:
    """A readable, unique run id: <model>-<YYYYMMDD-HHMMSS>-<4 hex>, e.g. bert-base-uncased-20261121-190500-3fa2."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    model = model or contract.DEFAULT_PARAMETERS["model"]
    return f"{_slug(model)}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


# --- timeouts -------------------------------------------------------------------------------
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_timeout(value: str) -> int:
    """'90m', '6h', '1d' or plain seconds -> seconds (Batch needs at least 60)."""
    m = _DURATION.match(value or "")
    if not m:
        raise BertBatchError(f"--timeout {value}: use seconds or a duration like 90m, 6h, 1d")
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


# --- sweep grids ----------------------------------------------------------------------------
MAX_GRID_JSON = 6000  # bytes; Batch limits the size of container overrides


def load_grid(path: str) -> list[dict[str, str]]:
    """Rows of hyperparameters from a grid file.

    JSON: a list of objects ([{"learning_rate": 2e-5}, ...]) or an object of lists
    ({"learning_rate": [2e-5, 3e-5], "epochs": [2, 3]}: every combination).
    CSV: a header of hyperparameter names, one row per job.
    """
    p = Path(path)
    if not p.is_file():
        raise BertBatchError(f"--grid {path}: no such file")
    text = p.read_text(encoding="utf-8")
    rows: list[dict[str, object]]
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BertBatchError(f"--grid {path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(data, dict):
            keys = list(data)
            lists = [v if isinstance(v, list) else [v] for v in data.values()]
            rows = [dict(zip(keys, combo)) for combo in itertools.product(*lists)]
        elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
            rows = data
        else:
            raise BertBatchError(f"--grid {path}: expected a list of objects or an object of lists")
    elif p.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        rows = [dict(r) for r in reader]
    else:
        raise BertBatchError(f"--grid {path}: use a .json or .csv file")
    if not rows:
        raise BertBatchError(f"--grid {path}: no rows")
    out = []
    for i, row in enumerate(rows):
        clean: dict[str, str] = {}
        for key, value in row.items():
            name = normalize_name(str(key))
            if name not in BY_NAME:
                known = ", ".join(BY_NAME)
                raise BertBatchError(f"--grid {path}: row {i}: unknown hyperparameter {key!r} (known: {known})")
            try:
                clean[name] = BY_NAME[name].check(str(value))
            except ValueError as exc:
                raise BertBatchError(f"--grid {path}: row {i}: {name} {value}: {exc}") from None
        out.append(clean)
    if len(json.dumps(out)) > MAX_GRID_JSON:
        raise BertBatchError(f"--grid {path}: too large to pass to the job (over {MAX_GRID_JSON} bytes of JSON)")
    return out
