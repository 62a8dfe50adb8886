"""A shard's predictions written as they are made: segments of `layout.PREDICTION_SEGMENT_ROWS`
rows, each one whole object (written to a temporary name and renamed locally; one PUT on S3), so
a SIGKILL loses at most the segment being scored, and a rerun continues after the last whole
segment. When the shard is done the segments are joined into its part file (sha256 taken on the
way), its manifest is written, and the segments are deleted.

`part-<i>.progress.json` names the run the segments belong to (model, input, shards, rows); a
shard whose progress names another run is refused like another run's finished shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bertbatch_contract import layout

from . import storage
from .config import BadInput
from .predict_io import Job, read_json


def _identity(run: Job) -> dict[str, Any]:
    return {"model": run.model, "input": run.input, "shards": run.shards, "total_rows": run.total_rows,
            "segment_rows": layout.PREDICTION_SEGMENT_ROWS}


def resume_point(run: Job, shard: int, rows: range) -> int:
    """How many whole segments of this shard are already written (0 when none, or when the
    progress record is missing); BadInput when they belong to another run."""
    progress = read_json(run.uri(layout.prediction_progress(shard)))
    if progress is None:
        return 0
    if progress != _identity(run):
        raise BadInput(f"{run.output}: holds another prediction run's segments of shard {shard} "
                       f"({layout.prediction_progress(shard)}); use a new output location")
    present = set(storage.list_files(run.output))
    done = 0
    while layout.prediction_segment(shard, done) in present:
        expected = min(layout.PREDICTION_SEGMENT_ROWS, len(rows) - done * layout.PREDICTION_SEGMENT_ROWS)
        body = storage.read_bytes(run.uri(layout.prediction_segment(shard, done)))
        lines = body.decode().splitlines()
        first = rows.start + done * layout.PREDICTION_SEGMENT_ROWS
        if len(lines) != expected or json.loads(lines[0]).get("row") != first:
            break  # not the segment this run would write there: scored again
        done += 1
    return done


def start(run: Job, shard: int) -> None:
    storage.write_bytes(run.uri(layout.prediction_progress(shard)), (json.dumps(_identity(run)) + "\n").encode())


def write_segment(run: Job, shard: int, segment: int, lines: list[str]) -> None:
    storage.write_bytes(run.uri(layout.prediction_segment(shard, segment)), "".join(lines).encode())


def finish(run: Job, shard: int, rows: range) -> dict[str, Any]:
    """Join the segments into the part file, then its manifest (last: the shard is done; it counts
    the rows marked truncated), then delete the segments and the progress record."""
    segments = [layout.prediction_segment(shard, k) for k in range(-(-len(rows) // layout.PREDICTION_SEGMENT_ROWS))]
    digest, size, truncated = hashlib.sha256(), 0, 0
    fd, tmp = tempfile.mkstemp(prefix="bert_train-part-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as out:
            for name in segments:
                body = storage.read_bytes(run.uri(name))
                digest.update(body)
                size += len(body)
                truncated += sum(1 for line in body.splitlines() if json.loads(line).get("truncated"))
                out.write(body)
        storage.upload_file(Path(tmp), run.uri(layout.prediction_part(shard)))
    finally:
        Path(tmp).unlink(missing_ok=True)
    manifest = {
        "format": layout.PREDICTION_MANIFEST_FORMAT, "shard": shard, "shards": run.shards,
        "file": layout.prediction_part(shard), "first_row": rows.start, "rows": len(rows),
        "sha256": digest.hexdigest(), "bytes": size, "truncated_rows": truncated,
        "model": run.model, "input": run.input, "total_rows": run.total_rows,
    }
    storage.write_bytes(run.uri(layout.prediction_shard_manifest(shard)), (json.dumps(manifest) + "\n").encode())
    for name in segments:
        storage.delete(run.uri(name))
    storage.delete(run.uri(layout.prediction_progress(shard)))
    return manifest
