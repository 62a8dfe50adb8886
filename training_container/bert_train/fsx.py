"""The FSx fast path: read datasets from the Lustre mount, and cache tokenized datasets on it.

FSx mirrors `s3://<data-bucket>/datasets/` at `<FSX_MOUNT_PATH>/datasets/` (a data repository
association with auto-import). A job given an S3 URI under the data bucket's datasets prefix
reads the file from the mount instead when the mount holds the same bytes (checked by size),
and falls back to S3 with a log line when it does not (not imported yet, or the host's Lustre
mount failed: the launch template leaves a marker file in the bare mount directory then).

Tokenizing is cached on FSx under a key of (examples, tokenizer, max length, --long-text), so the children of
a sweep and the retries of a job tokenize a dataset once. Without FSx nothing here does anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bertbatch_contract import job, layout

from . import data, long_text, storage
from .errors import StoreUnavailable
from .tasks import Task

log = logging.getLogger("bert_train")
CACHE_FORMAT = 3  # bump when the cached record changes shape (2: --long-text windows and counts; 3: targets)


def _mount(env: Mapping[str, str]) -> Path | None:
    mount = env.get(job.ENV_FSX_MOUNT)
    return Path(mount) if mount else None


def mount_failure(env: Mapping[str, str]) -> str | None:
    """The reason this host's Lustre mount failed (the marker's text), or None if it did not."""
    mount = _mount(env)
    marker = mount / job.FSX_MOUNT_FAILED_MARKER if mount else None
    if marker is None or not marker.exists():
        return None
    try:
        return marker.read_text(encoding="utf-8", errors="replace").strip() or "no reason given"
    except OSError:
        return "marker unreadable"


def _s3_size(uri: str) -> int:
    bucket, key = storage.split_s3(uri)
    return int(storage.make_s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"])


def mirror_of(uri: str, env: Mapping[str, str] | None = None) -> Path | None:
    """The FSx path that mirrors an s3:// URI under the data bucket's datasets/ prefix, when this
    host has the file system mounted; None otherwise (a warning when the mount failed)."""
    env = os.environ if env is None else env
    mount, data_uri = _mount(env), (env.get(job.ENV_DATA_URI) or "").rstrip("/")
    if mount is None or not data_uri or not storage.is_s3(uri) or not uri.startswith(data_uri + "/"):
        return None
    failure = mount_failure(env)
    if failure:
        log.warning("FSx is not mounted on this host (%s): reading %s from S3", failure, uri)
        return None
    return mount / layout.DATASETS_PREFIX / uri[len(data_uri) + 1:]


def input_location(uri: str, env: Mapping[str, str] | None = None, *,
                   s3_size: Callable[[str], int] | None = None) -> str:
    """Where to read `uri` from: its FSx path when the mount holds the same bytes, else `uri`.

    A path on the mount itself (`/fsx/...`) on a host whose mount failed raises StoreUnavailable
    (retryable: another host will have it) instead of reading an empty directory."""
    env = os.environ if env is None else env
    mount = _mount(env)
    if mount is None or not uri:
        return uri
    failure = mount_failure(env)
    if not storage.is_s3(uri):
        if failure and Path(uri).is_relative_to(mount):
            raise StoreUnavailable(f"{uri}: FSx is not mounted on this host ({failure})")
        return uri
    path = mirror_of(uri, env)
    if path is None:
        return uri
    if not path.is_file():
        log.info("%s is not on FSx yet (%s): reading it from S3", uri, path)
        return uri
    try:
        expected = (s3_size or _s3_size)(uri)
    except Exception as exc:  # the S3 read that follows reports the real problem
        log.info("could not compare %s with FSx (%s): reading it from S3", uri, exc)
        return uri
    if path.stat().st_size != expected:
        log.warning("%s on FSx has %d bytes, S3 has %d (import in progress?): reading it from S3",
                    path, path.stat().st_size, expected)
        return uri
    log.info("reading %s from FSx (%s)", uri, path)
    return str(path)


def token_cache_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """The tokenized-dataset cache on FSx, or None without a working mount."""
    env = os.environ if env is None else env
    mount = _mount(env)
    if mount is None or mount_failure(env):
        return None
    return mount / job.FSX_CACHE_DIR / "tokenized"


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast tokenizer: its whole definition, vocabulary included
        definition = backend.to_str()
    else:
        definition = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(f"{type(tokenizer).__name__}\n{definition}".encode()).hexdigest()


def cache_key(examples: Sequence[data.Example], tokenizer: Any, task: Task, max_seq_length: int | long_text.Fit, *,
              token_types: bool = True) -> str:
    fit = long_text.Fit.of_length(max_seq_length)
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_FORMAT, _tokenizer_fingerprint(tokenizer), fit.max_length, fit.mode,
                              fit.overlap, task.key, token_types]).encode())
    for e in examples:
        digest.update(json.dumps([e.text, e.pair, e.label], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def encode_cached(examples: Sequence[data.Example], tokenizer: Any, task: Task,
                  max_seq_length: int | long_text.Fit, *, cache_dir: Path | None,
                  token_types: bool = True) -> data.Encoded:
    """`data.encode`, read from the cache when an earlier job tokenized the same thing."""
    if cache_dir is None or not examples:
        return data.encode(examples, tokenizer, task, max_seq_length, token_types=token_types)
    path = cache_dir / f"{cache_key(examples, tokenizer, task, max_seq_length, token_types=token_types)}.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        encoded = data.Encoded(input_ids=record["input_ids"], token_type_ids=record["token_type_ids"],
                               labels=record["labels"], window_starts=record["window_starts"],
                               truncated=record["truncated"])
        if len(encoded) == len(examples):
            log.info("tokenized %d examples from the FSx cache (%s)", len(encoded), path.name)
            return encoded
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable tokenized cache %s: %s", path, exc)
    encoded = data.encode(examples, tokenizer, task, max_seq_length, token_types=token_types)
    _store(path, encoded)
    return encoded


def _store(path: Path, encoded: data.Encoded) -> None:
    """Written to a temporary file and renamed: a reader never sees half a record, and two jobs
    writing the same key at once leave one whole copy."""
    record = {"input_ids": encoded.input_ids, "token_type_ids": encoded.token_type_ids, "labels": encoded.labels,
              "window_starts": encoded.window_starts, "truncated": encoded.truncated}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only or full file system: training goes on without a cache
        log.warning("could not write the tokenized cache %s: %s", path, exc)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
