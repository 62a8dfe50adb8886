"""Batch inference I/O: the rows to score, and the part files, shard manifests and manifest written.

Rows are read with the data module's reader (`data.read_table`: a file, folder or prefix of
shards, format by extension, the same CSV/TSV dialects and JSONL text rules) but need no label,
and may carry an id column passed through.

Output (`bertbatch_contract.layout`): each shard writes `part-<i>.jsonl` (joined from the
segments `predict_segments` flushes while scoring), then `part-<i>.manifest.json` with its row
count and the part's sha256. A shard whose manifest exists
and whose part matches it is done, so a retry skips it. The top-level `manifest.json` is written
by the shard that finds every shard done after writing its own (S3 is read-after-write
consistent, so of two shards finishing together the later one to list sees both).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bertbatch_contract import layout, tables, tasks

from . import data, readers, sources, storage
from .config import BadInput
from .errors import unreadable_input


@dataclass(frozen=True)
class Row:
    number: int  # 0-based data row in file order: what shards are cut by
    line: int  # line in the file, for messages
    text: str
    pair: str | None
    id: str | None


def iter_rows(uri: str, text_column: str, pair_column: str | None = None, id_column: str | None = None,
              rows: range | None = None) -> Iterator[Row]:
    """The data rows of the input as a stream (those numbered in `rows`, if given: the reading
    stops after the last). Raises BadInput naming the file and line."""
    wanted = [text_column] + [c for c in (pair_column, id_column) if c]
    for n, (file, line, values) in enumerate(data.read_table(uri, wanted)):
        if rows is not None and n >= rows.stop:
            return
        if rows is not None and n < rows.start:
            continue
        yield Row(number=n, line=line, text=data.text_field(values[text_column], text_column, file, line),
                  pair=data.text_field(values[pair_column], pair_column, file, line) if pair_column else None,
                  id=None if not id_column or values[id_column] is None else str(values[id_column]))


def count_rows(uri: str, text_column: str, pair_column: str | None = None, id_column: str | None = None) -> int:
    """How many data rows the input has (`readers.count_rows` per file: JSONL and TSV lines are
    counted, not parsed), in bounded memory. An input without rows is read in full for the
    precise error (empty file, missing column)."""
    total = 0
    for source in sources.list_sources(uri):
        try:
            total += readers.count_rows(source.uri)
        except tables.TableError as exc:
            raise BadInput(exc.at(source.uri)) from None
        except storage.StorageError as exc:
            raise unreadable_input(source.uri, exc) from None
    if not total:
        for _ in iter_rows(uri, text_column, pair_column, id_column):
            pass
        raise BadInput(f"{uri}: no data rows")
    return total


def read_rows(uri: str, text_column: str, pair_column: str | None = None, id_column: str | None = None) -> list[Row]:
    """Every data row of the input, in memory. Raises BadInput naming the file and line."""
    out = list(iter_rows(uri, text_column, pair_column, id_column))
    if not out:
        raise BadInput(f"{uri}: no data rows")
    return out


# --- output ---------------------------------------------------------------------------------------


def prediction_line(row: Row, scorer: Scorer, scores: Sequence[float], *, truncated: bool = False) -> str:
    """One line of a part file: the row, then what the model says (`Scorer.fields`); `truncated`:
    the row was longer than --max-seq-length."""
    record: dict[str, Any] = {"row": row.number}
    if row.id is not None:
        record["id"] = row.id
    if truncated:
        record["truncated"] = True
    record.update(scorer.fields(scores))
    return json.dumps(record, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Scorer:
    """How a trained run's outputs read (its label_map.json): the problem type, the labels in
    the model's order, and the multi-label thresholds tuned on its eval set."""

    problem_type: str
    labels: tuple[str, ...]
    thresholds: tuple[float, ...] = ()

    def fields(self, scores: Sequence[float]) -> dict[str, Any]:
        """The label and class probabilities, the labels over their thresholds and every label's
        probability, or the value."""
        if self.problem_type == tasks.REGRESSION:
            return {"value": float(scores[0])}
        probabilities = {label: float(p) for label, p in zip(self.labels, scores, strict=True)}
        if self.problem_type == tasks.MULTI_LABEL:
            chosen = [x for x, p, t in zip(self.labels, scores, self.thresholds, strict=True) if p >= t]
            return {"labels": chosen, "probabilities": probabilities}
        best = max(range(len(self.labels)), key=lambda i: scores[i])
        return {"label": self.labels[best], "probabilities": probabilities}


@dataclass(frozen=True)
class Job:
    """What every shard of one prediction run agrees on; a shard manifest that disagrees belongs to
    another run and is never taken as this shard's result."""

    output: str
    model: str
    input: str
    shards: int
    total_rows: int

    def uri(self, name: str) -> str:
        return storage.join(self.output, name)


read_json = storage.read_json  # the shard manifests and the prediction's manifest


def finished_shard(run: Job, shard: int) -> dict[str, Any] | None:
    """The shard's manifest when the shard is done: its manifest exists, describes this run, and
    its part file matches the recorded sha256. None when it has to be (re)scored. BadInput when
    the output location holds another run's shard."""
    manifest = read_json(run.uri(layout.prediction_shard_manifest(shard)))
    if manifest is None:
        return None
    theirs = (manifest.get("model"), manifest.get("input"), manifest.get("shards"), manifest.get("total_rows"))
    if theirs != (run.model, run.input, run.shards, run.total_rows):
        raise BadInput(f"{run.output}: holds another prediction run (shard {shard}: model {theirs[0]}, input "
                       f"{theirs[1]}, {theirs[2]} shards, {theirs[3]} rows); use a new output location")
    try:
        part = storage.read_bytes(run.uri(layout.prediction_part(shard)))
    except storage.NotFound:
        return None
    if hashlib.sha256(part).hexdigest() != manifest.get("sha256"):
        return None
    return manifest


def write_manifest_if_complete(run: Job, scorer: Scorer, *, shard_written: bool) -> bool:
    """Write the top-level manifest when every shard is done: if it is not there yet, or this
    process has just (re)written a shard, whose entry it must then carry. True when the manifest
    exists afterwards."""
    if not shard_written and read_json(run.uri(layout.PREDICTION_MANIFEST)) is not None:
        return True
    present = set(storage.list_files(run.output))
    if not all(layout.prediction_shard_manifest(i) in present for i in range(run.shards)):
        return False
    parts = []
    for shard in range(run.shards):
        manifest = read_json(run.uri(layout.prediction_shard_manifest(shard)))
        if manifest is None:
            return False
        parts.append(manifest)
    record = {
        "format": layout.PREDICTION_MANIFEST_FORMAT, "model": run.model, "input": run.input,
        "problem_type": scorer.problem_type, "labels": list(scorer.labels),
        "shards": run.shards, "total_rows": sum(int(p["rows"]) for p in parts),
        # rows longer than --max-seq-length (None: a shard written before shards counted them)
        "truncated_rows": None if any("truncated_rows" not in p for p in parts) else
        sum(int(p["truncated_rows"]) for p in parts),
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "parts": parts,
    }
    storage.write_bytes(run.uri(layout.PREDICTION_MANIFEST), (json.dumps(record, indent=2) + "\n").encode())
    return True
