"""`python -m bert_train prepare`: tokenize a dataset once into a store the trainer streams from.

    python -m bert_train prepare --input s3://data/datasets/big/ --output s3://data/stores/big/ \
        --model s3://artifacts/models/bert-base/ [--max-seq-length 128] [--text-column C] \
        [--text-pair-column C] [--label-column C] [--num-children N --child-index I] [--workers W]
    python -m bert_train prepare --merge --input ... --output ... (same settings)

Flags and the store's names are `bertbatch_contract.store` (one place for the job interface).
Preparation is a map over the input files: child I of N (defaults `$AWS_BATCH_JOB_ARRAY_INDEX` of
`$AWS_BATCH_JOB_ARRAY_SIZE`) tokenizes its contiguous group of files (`store.child_files`) into
Parquet shards and writes its partial manifest last; the child that finds every partial present
(or `--merge`) writes `manifest.json`. A bad row stops the child before anything of its output is
written (shards are staged, then moved or uploaded): one line naming the file and line, exit 2. A
retried child rewrites only its own files; a child (and the merge) whose record already
describes the same sources, tokenizer and settings rewrites nothing.

Tokenizing runs in `--workers` processes (default: every CPU), in batches of `CHUNK_ROWS` rows
(`tokenize_pool`); reading and checking the rows stays in this process.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertbatch_contract import job, tasks
from bertbatch_contract import store as contract
from bertbatch_contract.hyperparameters import InvalidHyperparameter

from . import data, long_text, modeling, sources, storage, token_store
from .config import PROG, BadInput
from .tokenize_pool import Tokenize

log = logging.getLogger(PROG)
CHUNK_ROWS = 4 * contract.ROW_GROUP_ROWS  # rows per tokenizer batch (whole row groups)


@dataclass(frozen=True)
class Settings:
    """What the tokenized rows depend on, besides the sources."""

    model: str
    max_seq_length: int
    long_text: str
    text_column: str
    text_pair_column: str | None
    label_column: str
    problem_type: str = tasks.SINGLE_LABEL
    label_separator: str = ","

    def columns(self) -> data.Columns:
        return data.Columns(self.text_column, self.label_column, self.text_pair_column, self.problem_type,
                            self.label_separator)


@dataclass
class Job:
    input: str
    output: str
    settings: Settings
    sources: list[sources.Source]
    fingerprint: str  # the tokenizer's
    child: int
    children: int
    workers: int | None
    rows_per_shard: int
    tokenizer: Any = None
    key: dict[str, Any] = field(default_factory=dict)

    def uri(self, name: str) -> str:
        return storage.join(self.output, name)


def store_key(settings: Settings, srcs: Sequence[sources.Source], fingerprint: str) -> dict[str, Any]:
    """What a store's content is a function of: equal keys, equal stores."""
    listing = json.dumps([s.record() for s in srcs], sort_keys=True).encode()
    return {"format": contract.FORMAT, "version": contract.FORMAT_VERSION, "tokenizer": fingerprint,
            "max_seq_length": settings.max_seq_length, "long_text": settings.long_text,
            "text_column": settings.text_column,
            "text_pair_column": settings.text_pair_column, "label_column": settings.label_column,
            "problem_type": settings.problem_type, "label_separator": settings.label_separator,
            "sources": hashlib.sha256(listing).hexdigest()}


def _value(values: Mapping[str, Any], name: str) -> Any:
    """The flag's value, else the table's default."""
    value = values.get(name)
    return contract.BY_NAME[name].default if value is None else value


def build_job(values: Mapping[str, Any], env: Mapping[str, str]) -> Job:
    """Every check before any work: flags, children, the input listing, the tokenizer."""
    try:
        child, count = contract.children(values, env)
    except InvalidHyperparameter as exc:
        raise BadInput(str(exc)) from None
    settings = Settings(model=_value(values, "model"), max_seq_length=_value(values, "max_seq_length"),
                        long_text=_value(values, "long_text"),
                        text_column=_value(values, "text_column"), text_pair_column=values.get("text_pair_column"),
                        label_column=_value(values, "label_column"), problem_type=_value(values, "problem_type"),
                        label_separator=_value(values, "label_separator"))
    cache_dir = (values.get("cache_dir") or env.get(job.ENV_CACHE_DIR)
                 or os.path.join(os.path.expanduser("~"), ".cache", "bert_train"))
    vocab = values.get("vocab")
    if settings.model.startswith("random:") and vocab:
        data.check_vocab(vocab)
    tokenizer, _ = modeling.build_tokenizer(settings.model, vocab, cache_dir)
    from . import tokenize_pool

    srcs = sources.list_sources(values["input"])
    fp = tokenize_pool.fingerprint(tokenizer)
    try:
        storage.check_writable(values["output"])
    except storage.Refused as exc:  # S3 failing to answer stays a StorageError: exit 74, retried
        raise BadInput(f"store location {exc}") from None
    return Job(input=values["input"], output=values["output"], settings=settings, sources=srcs, fingerprint=fp,
               child=child, children=count, workers=values.get("workers"),
               rows_per_shard=_value(values, "rows_per_shard"),
               tokenizer=tokenizer, key=store_key(settings, srcs, fp))


def child_key(j: Job, child: int) -> dict[str, Any]:
    """What one child's output is a function of: the store key less the other children's files."""
    files = contract.child_files(len(j.sources), child, j.children)
    return {**{k: v for k, v in j.key.items() if k != "sources"}, "files": [files.start, files.stop],
            "total_files": len(j.sources), "sources": [j.sources[i].record() for i in files]}


# --- one child -------------------------------------------------------------------------------------


@dataclass
class Tally:
    rows: int = 0
    tokens: int = 0
    truncated: int = 0  # rows longer than --max-seq-length
    max_length: int = 0
    labels: collections.Counter[str] = field(default_factory=collections.Counter)
    used: np.ndarray | None = None  # bool per token id

    def add(self, lengths: np.ndarray, ids: np.ndarray, labels: Sequence[str], vocab_size: int,
            problem_type: str) -> None:
        self.rows += len(lengths)
        self.tokens += int(lengths.sum())
        self.max_length = max(self.max_length, int(lengths.max(initial=0)))
        self.labels.update(data.label_counts(labels, problem_type))
        if self.used is None:
            self.used = np.zeros(vocab_size, dtype=bool)
        self.used[ids] = True

    def used_ids(self) -> list[int]:
        return [] if self.used is None else np.flatnonzero(self.used).tolist()


def _chunks(uri: str, settings: Settings, labels_out: collections.deque[list[str]]) -> Iterator[Any]:
    """(texts, pairs) of CHUNK_ROWS checked rows at a time; their labels go to `labels_out`."""
    columns = settings.columns()
    pair_col = columns.pair
    texts: list[str] = []
    pairs: list[str] | None = [] if pair_col else None
    labels: list[str] = []
    for file, line, row in data.file_rows(uri, columns.wanted):
        e = data.example(row, file, line, columns)
        texts.append(e.text)
        if pairs is not None and e.pair is not None:
            pairs.append(e.pair)
        labels.append(e.label)
        if len(texts) == CHUNK_ROWS:
            labels_out.append(labels)
            yield texts, pairs
            texts, pairs, labels = [], [] if pair_col else None, []
    if texts:
        labels_out.append(labels)
        yield texts, pairs


def run_child(j: Job, staging: Path) -> dict[str, Any]:
    """Tokenize this child's input files into `staging`; returns the partial record. Raises
    BadInput on the first bad row (the caller removes `staging`)."""
    files = contract.child_files(len(j.sources), j.child, j.children)
    tally, shards = Tally(), []
    vocab_size = len(j.tokenizer)
    t0 = time.monotonic()
    in_bytes = 0
    with Tokenize(j.tokenizer, j.settings.max_seq_length, workers=j.workers, mode=j.settings.long_text) as tok:
        for index in files:
            source = j.sources[index]
            writer = token_store.ShardWriter(staging, index, j.rows_per_shard, j.settings.text_pair_column is not None)
            pending: collections.deque[list[str]] = collections.deque()
            for enc in tok.map(_chunks(source.uri, j.settings, pending)):
                labels = pending.popleft()
                writer.write(token_store.table_of(enc, labels))
                tally.add(enc.lengths, enc.ids, labels, vocab_size, j.settings.problem_type)
                tally.truncated += enc.truncated
            shards += writer.close()
            in_bytes += source.size
            log.info("%s: %d rows so far (%.1f MB/s)", source.uri, tally.rows,
                     in_bytes / 1e6 / max(time.monotonic() - t0, 1e-9))
    return {"format": contract.FORMAT, "version": contract.FORMAT_VERSION, "key": child_key(j, j.child),
            "child": j.child,
            "children": j.children, "files": [files.start, files.stop], "rows": tally.rows, "tokens": tally.tokens,
            "truncated_rows": tally.truncated,
            "max_length": tally.max_length, "labels": dict(sorted(tally.labels.items())),
            "used_token_ids": tally.used_ids(), "shards": shards, "seconds": round(time.monotonic() - t0, 3),
            "input_bytes": in_bytes}


def _partial_done(j: Job, partial: dict[str, Any] | None) -> bool:
    """The child's record describes this job, and its shards are in the store."""
    if partial is None or partial.get("key") != child_key(j, j.child):
        return False
    present = set(storage.list_files(storage.join(j.output, contract.SHARDS_DIR)))
    return all(s["file"].removeprefix(contract.SHARDS_DIR + "/") in present for s in partial.get("shards", []))


def child(j: Job) -> tuple[dict[str, Any], bool]:
    """This child's partial record, and whether it was (re)written now."""
    name = contract.partial_name(j.child, j.children)
    partial = token_store.read_json(j.uri(name))
    if _partial_done(j, partial):
        assert partial is not None
        log.info("child %d of %d: %s is up to date; nothing to do", j.child, j.children, name)
        return partial, False
    staging_root = None if storage.is_s3(j.output) else j.output
    if staging_root:
        os.makedirs(staging_root, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-child-{j.child:05d}-", dir=staging_root))
    try:
        partial = run_child(j, staging)
        token_store.publish(staging, j.output, [s["file"] for s in partial["shards"]])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    token_store.write_json(j.uri(name), partial)  # last: the child is done
    log.info("child %d of %d: %d rows, %d tokens, %d shard(s) in %.1f s", j.child, j.children, partial["rows"],
             partial["tokens"], len(partial["shards"]), partial["seconds"])
    return partial, True


# --- the merge -------------------------------------------------------------------------------------


def merge(j: Job, *, required: bool) -> dict[str, Any] | None:
    """Write manifest.json from every child's partial record once all are there and describe this
    job; returns the manifest, or None while children are missing (BadInput when `required`)."""
    partials, missing = [], []
    for c in range(j.children):
        partial = token_store.read_json(j.uri(contract.partial_name(c, j.children)))
        (partials.append(partial) if partial is not None and partial.get("key") == child_key(j, c)
         else missing.append(c))
    if missing:
        if required:
            raise BadInput(f"{j.output}: cannot merge yet: no up-to-date partial manifest from child(ren) "
                           f"{', '.join(map(str, missing[:10]))} of {j.children}")
        log.info("manifest not written yet: waiting for %d of %d children", len(missing), j.children)
        return None
    shards = [s for p in partials for s in p["shards"]]
    existing = token_store.read_json(j.uri(contract.MANIFEST))
    if existing is not None and existing.get("key") == j.key and existing.get("shards") == shards:
        log.info("%s is up to date; nothing to do", j.uri(contract.MANIFEST))
        return existing
    labels: collections.Counter[str] = collections.Counter()
    used: set[int] = set()
    for p in partials:
        labels.update(p["labels"])
        used.update(p["used_token_ids"])
    used.update(j.tokenizer.all_special_ids)  # the padding id among them
    manifest = {
        "format": contract.FORMAT, "version": contract.FORMAT_VERSION, "key": j.key,
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "input": j.input, "sources": [s.record() for s in j.sources],
        "tokenizer": {"model": j.settings.model, "fingerprint": j.fingerprint,
                      "pad_token_id": j.tokenizer.pad_token_id, "vocab_size": len(j.tokenizer)},
        "max_seq_length": j.settings.max_seq_length, "long_text": j.settings.long_text,
        "text_column": j.settings.text_column,
        "text_pair_column": j.settings.text_pair_column, "label_column": j.settings.label_column,
        "problem_type": j.settings.problem_type, "label_separator": j.settings.label_separator,
        "rows": sum(p["rows"] for p in partials), "tokens": sum(p["tokens"] for p in partials),
        "truncated_rows": sum(p["truncated_rows"] for p in partials),
        "max_length": max((p["max_length"] for p in partials), default=0),
        "labels": data.order_labels(labels), "label_counts": dict(sorted(labels.items())),
        "used_token_ids": sorted(used), "children": j.children, "shards": shards,
    }
    if manifest["rows"] == 0:
        raise BadInput(f"{j.input}: no data rows")
    token_store.write_json(j.uri(contract.MANIFEST), manifest)
    log.info("store complete: %s (%d rows, %d tokens, %d shards); %d rows longer than --max-seq-length %d: %s",
             j.uri(contract.MANIFEST), manifest["rows"], manifest["tokens"], len(shards), manifest["truncated_rows"],
             j.settings.max_seq_length, long_text.Fit(j.settings.max_seq_length, j.settings.long_text).describe())
    return manifest


# --- the command -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{PROG} {contract.SUBCOMMAND}", allow_abbrev=False,
                                     description="Tokenize a dataset once into a store that training streams from.")
    contract.add_options(parser)
    return parser


def run(values: Mapping[str, Any], *, merge_only: bool = False,
        env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Prepare (this child's part of) the store; returns the manifest once the store is complete."""
    j = build_job(values, os.environ if env is None else env)
    if not merge_only:
        child(j)
    return merge(j, required=merge_only)


class Interrupted(Exception):
    """SIGTERM: Batch stops the container (a Spot reclaim, a cancel)."""


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes (bertbatch_contract.job): 0 done (this child's part; the store when the manifest
    was written); 2 bad input (one line, nothing of this child written); 74 S3 failed (retry); 75
    stopped by SIGTERM (a Spot reclaim: the job's retry strategy runs the child again, and it
    redoes only its own files)."""
    namespace = vars(build_parser().parse_args(argv))
    merge_only = bool(namespace.pop("merge"))
    try:
        values = contract.validate(namespace)
    except InvalidHyperparameter as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return job.EXIT_BAD_INPUT
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format=f"%(asctime)s {PROG} prepare %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run(values, merge_only=merge_only)
    except Interrupted:
        print(f"{PROG}: stopped by SIGTERM; a retry prepares this child's files again", file=sys.stderr)
        return job.EXIT_INTERRUPTED
    except BadInput as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return job.EXIT_BAD_INPUT
    except storage.StorageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return job.EXIT_STORAGE_UNAVAILABLE
    finally:
        signal.signal(signal.SIGTERM, previous)
    return job.EXIT_OK
