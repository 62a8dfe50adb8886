"""The trainer's side of a tokenized store: opening it, checking it against the run's settings,
and the evaluation set (a data file or a store, held in memory; it is small).

Training from a store reads no rows before step 1: the step plan comes from the manifest's row
count, the label set and the token ids used from the manifest, and the shards' presence from one
listing. A store prepared with another tokenizer or max length is refused with one line.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertbatch_contract import store as contract
from bertbatch_contract import tasks

from . import data, fsx, long_text, storage, stream, token_store
from .config import BadInput, TrainConfig
from .tasks import Task
from .tokenize_pool import fingerprint

log = logging.getLogger("bert_train")


@dataclass
class TrainStore:
    uri: str
    manifest: dict[str, Any]
    reader: token_store.Reader
    layout: stream.Layout

    @property
    def rows(self) -> int:
        return self.layout.rows

    @property
    def problem_type(self) -> str:
        return str(self.manifest.get("problem_type") or tasks.SINGLE_LABEL)  # stores from before problem types

    def labels(self) -> list[str]:
        return data.check_label_set([str(x) for x in self.manifest["labels"]], self.uri, self.problem_type)

    def label_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.manifest.get("label_counts", {}).items()}

    def truncated_rows(self) -> int | None:
        """Rows longer than the store's --max-seq-length (None: prepared before stores counted them)."""
        count = self.manifest.get("truncated_rows")
        return int(count) if count is not None else None

    def used_ids(self) -> set[int]:
        return {int(i) for i in self.manifest["used_token_ids"]}

    def check(self, config: TrainConfig, tokenizer: Any) -> None:
        """The store was tokenized as this run would tokenize, and every shard is there."""
        where = storage.join(self.uri, contract.MANIFEST)
        if self.manifest["tokenizer"]["fingerprint"] != fingerprint(tokenizer):
            raise BadInput(f"{where}: prepared with another tokenizer ({self.manifest['tokenizer']['model']}) than "
                           f"--model {config.model}'s; prepare it again with this model")
        if self.problem_type != config.problem_type:
            raise BadInput(f"{where}: prepared with --problem-type {self.problem_type}, not {config.problem_type}; "
                           "pass that or prepare it again")
        if self.manifest["max_seq_length"] != config.max_seq_length:
            raise BadInput(f"{where}: prepared with --max-seq-length {self.manifest['max_seq_length']}, not "
                           f"{config.max_seq_length}; pass that or prepare it again")
        if config.long_text == long_text.CHUNK:
            raise BadInput(f"--long-text chunk: not supported with a tokenized store ({self.uri} holds one row per "
                           "text); train from the data files, or prepare the store with --long-text head+tail")
        prepared = self.manifest.get("long_text", long_text.TRUNCATE)  # older stores: truncated
        if prepared != config.long_text:
            raise BadInput(f"{where}: prepared with --long-text {prepared}, not {config.long_text}; pass that or "
                           "prepare it again")
        self.reader.check()

    @property
    def pairs(self) -> bool:
        return self.manifest["text_pair_column"] is not None

    def rows_source(self, task: Task, *, token_types: bool = True) -> stream.Rows:
        """The rows, with the stored token type ids of pairs when the model takes them."""
        return stream.Rows(self.reader, self.layout, task, pairs=self.pairs and token_types)


def open_store(uri: str, work_dir: str) -> TrainStore | None:
    """The store at `uri`, or None when `uri` is not a store (no manifest.json there). Shards of
    an S3 store are downloaded under `work_dir` as they are reached (one directory per rank)."""
    if not uri or sources_only(uri):
        return None
    location = fsx.input_location(uri) if not storage.is_s3(uri) else uri
    try:
        manifest = token_store.read_json(storage.join(location, contract.MANIFEST))
    except storage.StorageError:
        return None  # reading it as data files reports the problem
    if manifest is None:
        return None
    manifest = token_store.load_manifest(location)
    if storage.is_s3(location):
        location = fsx_copy(location, manifest) or location
    shard_cache = Path(work_dir) / "store-shards" / f"rank{os.environ.get('RANK', '0')}"
    reader = token_store.Reader(location, manifest, shard_cache)
    return TrainStore(uri=uri, manifest=manifest, reader=reader, layout=stream.Layout(manifest))


def fsx_copy(uri: str, manifest: dict[str, Any]) -> str | None:
    """The store's directory on FSx (the data bucket's datasets/ prefix is mirrored there) when it
    holds the same manifest and every shard at its recorded size: read in place, nothing is
    downloaded. Otherwise None (not imported yet, or another version of the store): S3."""
    path = fsx.mirror_of(uri)
    if path is None:
        return None
    try:
        same = json.loads((path / contract.MANIFEST).read_text()) == manifest
    except (OSError, ValueError):
        same = False
    missing = [s["file"] for s in manifest["shards"]
               if not (path / s["file"]).is_file() or (path / s["file"]).stat().st_size != s["bytes"]] if same else []
    if not same or missing:
        log.info("store %s is not complete on FSx (%s): reading it from S3", uri,
                 f"{len(missing)} shard(s) missing" if same else "no identical manifest.json")
        return None
    log.info("reading store %s from FSx (%s)", uri, path)
    return str(path)


def sources_only(uri: str) -> bool:
    """A name with a data file's extension is a file, never a store."""
    from . import sources

    return sources.is_file_name(uri)


def read_eval(config: TrainConfig, tokenizer: Any, task: Task, work_dir: str, *,
              token_types: bool = True) -> data.Encoded | None:
    """The evaluation set in memory: a data file (or folder/prefix) tokenized here, or a store's rows."""
    store = open_store(config.eval, work_dir)
    if store is not None:
        store.check(config, tokenizer)
        unknown = task.unknown(json.dumps([x]) if task.problem_type == tasks.MULTI_LABEL else x
                               for x in store.manifest["labels"])
        if unknown is not None:
            raise BadInput(f"{config.eval}: label {unknown!r} does not appear in the training data "
                           f"(labels: {', '.join(task.labels)})")
        try:
            enc = store.rows_source(task, token_types=token_types).all()
            enc.truncated = store.truncated_rows() or 0
            return enc
        finally:
            store.reader.close()
    examples = data.read_examples(fsx.input_location(config.eval), config.text_column, config.label_column,
                                  config.text_pair_column, problem_type=config.problem_type,
                                  separator=config.label_separator)
    data.check_eval_labels(examples, task, config.eval)
    return fsx.encode_cached(examples, tokenizer, task, long_text.Fit.of(config), cache_dir=fsx.token_cache_dir(),
                             token_types=token_types)
