"""Run ids: one format, one validation.

A run id names a training run everywhere: the RUN_ID job variable, the run-id job tag,
`checkpoints/<run-id>/` and `runs/<run-id>/`. It survives Batch retries and the On-Demand
fallback, so a resubmitted job resumes from the run's checkpoints.
"""

from __future__ import annotations

import datetime as _dt
import re
import secrets

MAX_LENGTH = 100
PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_LENGTH - 1}}}")
RULE = f"use 1-{MAX_LENGTH} letters, digits, '-' or '_', starting with a letter or digit"
# Children of an array job (a sweep) are <run-id>-<index>; Batch allows 10,000 children.
MAX_ARRAY_SUFFIX = len("-9999")


class InvalidRunId(ValueError):
    """str() is the one-line message: the value and the rule."""


def check_run_id(run_id: str, *, what: str = "run id") -> str:
    """`run_id` unchanged if it is valid, else InvalidRunId naming `what` (a flag, a variable)."""
    if not isinstance(run_id, str) or not PATTERN.fullmatch(run_id):
        raise InvalidRunId(f"{what} {run_id!r}: {RULE}")
    return run_id


def _slug(text: str) -> str:
    text = text.rstrip("/").rsplit("/", 1)[-1].replace(":", "-")
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "run"


def generate_run_id(model: str = "", *, now: _dt.datetime | None = None) -> str:
    """A readable, unique run id: <model>-<YYYYMMDD-HHMMSS>-<4 hex>,
    e.g. bert-base-uncased-20261121-190500-3fa2."""
    now = now or _dt.datetime.now(_dt.UTC)
    return f"{_slug(model)}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def array_run_id(run_id: str, array_index: int | str) -> str:
    """Run id of one child of an array job (a sweep): <RUN_ID>-<AWS_BATCH_JOB_ARRAY_INDEX>.

    Children share RUN_ID; each writes runs/<run-id>-<index>/ and checkpoints/<run-id>-<index>/.
    """
    return f"{run_id}-{int(array_index)}"
