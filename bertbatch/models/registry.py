"""The model registry: fine-tuned models by name, with numbered versions and movable aliases.

    models/<name>/versions/000003.json   one record per version, written once (IfNoneMatch="*")
    models/<name>/aliases/production.json   the version an alias points at, moved by each promote

(`bertbatch_contract.layout`). A version points at a finished training run's output
(runs/<run-id>/). Promoting a run that already has a version of that name reuses it, so promoting
is idempotent. Two promotes at once cannot both write version 3: the record is created with an
S3 conditional write, and the loser takes the next number.

The records live in a `Store`: the artifacts bucket (Batch runs) or the local runs directory of
`bertbatch local`, which mirrors the bucket's layout (local runs).
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import botocore.exceptions

from bertbatch_contract import layout, runs

from ..core.aws_clients import error_code, is_not_found
from ..core.errors import BertBatchError
from ..runs import artifacts

ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
ALIAS_RULE = "an alias is 1-63 letters, digits, '-' or '_', starting with a letter"
# NAME@ALIAS or NAME@3 (a version number).
REFERENCE = re.compile(r"(?P<name>[^@]+)@(?P<target>[^@]+)")
MAX_PROMOTE_RACES = 20  # a conditional write lost this often in a row means something else is wrong


class Store(Protocol):
    """Where the records are: keys as in the artifacts bucket."""

    def read(self, key: str) -> bytes | None: ...
    def write(self, key: str, body: bytes) -> None: ...
    def create(self, key: str, body: bytes) -> bool:
        """Write `key` only if it does not exist; False when it does."""
        ...
    def keys(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def uri(self, key: str) -> str: ...


@dataclass
class S3Store:
    s3: Any
    bucket: str

    def read(self, key: str) -> bytes | None:
        try:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except botocore.exceptions.ClientError as exc:
            if is_not_found(exc):
                return None
            raise
        return body

    def write(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def create(self, key: str, body: bytes) -> bool:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json",
                               IfNoneMatch="*")
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def keys(self, prefix: str) -> list[str]:
        out: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(obj["Key"] for obj in page.get("Contents", []))
        return out

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def uri(self, key: str) -> str:
        return layout.s3_uri(self.bucket, key)


@dataclass
class DirectoryStore:
    """The bucket's layout under a local directory (`bertbatch local`'s local-runs/)."""

    root: Path

    def read(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def write(self, key: str, body: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(body)
        tmp.replace(path)  # readers see the old record or the new one, never half of one

    def create(self, key: str, body: bytes) -> bool:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("xb") as fh:  # O_EXCL: the local counterpart of IfNoneMatch="*"
                fh.write(body)
        except FileExistsError:
            return False
        return True

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return str(self.root / key)


# --- records --------------------------------------------------------------------------------------
def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(store: Store, key: str) -> dict[str, Any] | None:
    body = store.read(key)
    return None if body is None else artifacts.read_json_object(body, store.uri(key))


def _dump(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, indent=2, sort_keys=False) + "\n").encode()


def check_alias(alias: str) -> str:
    if not ALIAS.fullmatch(alias) or alias.isdigit():
        raise BertBatchError(f"--alias {alias!r}: {ALIAS_RULE}")
    return alias


def _read_records(store: Store, prefix: str) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(key, record) of every readable record under `prefix`, and '<uri>: <reason>' of every
    one that is not: a corrupt record is reported, never in the way of the others."""
    records: list[tuple[str, dict[str, Any]]] = []
    corrupt: list[str] = []
    for key in store.keys(prefix):
        if not key.endswith(".json"):
            continue
        record = _readable(store, key, corrupt)
        if record is None:
            continue
        if not isinstance(record.get("version"), int):
            corrupt.append(f"{store.uri(key)}: no version number")
            continue
        records.append((key, record))
    return records, corrupt


def _readable(store: Store, key: str, corrupt: list[str] | None = None) -> dict[str, Any] | None:
    """The record at `key`, or None when there is none or it is not a JSON object (then its
    '<uri>: <reason>' is added to `corrupt`)."""
    try:
        return _json(store, key)
    except BertBatchError as exc:
        if corrupt is not None:
            corrupt.append(exc.message)
        return None


def versions(store: Store, name: str) -> list[dict[str, Any]]:
    """Every readable version record of `name`, oldest first (`corrupt_records`: the others)."""
    found, _ = _read_records(store, layout.model_prefix(name) + layout.MODEL_VERSIONS_DIR)
    return sorted((record for _, record in found), key=lambda r: int(r["version"]))


def aliases(store: Store, name: str) -> dict[str, int]:
    """alias -> version of `name`, from its readable alias records."""
    found, _ = _read_records(store, layout.model_prefix(name) + layout.MODEL_ALIASES_DIR)
    return {str(record.get("alias") or key.rsplit("/", 1)[-1].removesuffix(".json")): int(record["version"])
            for key, record in found}


def corrupt_records(store: Store, name: str) -> list[str]:
    """'<uri>: <reason>' of each version or alias record of `name` that cannot be read."""
    problems: list[str] = []
    for directory in (layout.MODEL_ALIASES_DIR, layout.MODEL_VERSIONS_DIR):
        problems += _read_records(store, layout.model_prefix(name) + directory)[1]
    return problems


def registered_names(store: Store) -> list[str]:
    """Names with at least one version record."""
    names = set()
    for key in store.keys(layout.MODELS_PREFIX):
        parts = key[len(layout.MODELS_PREFIX):].split("/")
        if len(parts) == 3 and parts[1] + "/" == layout.MODEL_VERSIONS_DIR:
            names.add(parts[0])
    return sorted(names)


# --- promote --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Promoted:
    name: str
    version: int
    alias: str | None
    run_id: str
    uri: str
    created: bool  # a new version was recorded (False: the run already had one)
    previous: int | None  # the version the alias pointed at before, or None


def run_outputs(store: Store, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, training args or {}) of a finished run; BertBatchError when it is not one."""
    try:
        runs.check_run_id(run_id, what="RUN_ID")
    except runs.InvalidRunId as exc:
        raise BertBatchError(str(exc)) from None
    prefix = layout.run_prefix(run_id)
    metrics = _json(store, prefix + layout.METRICS_FILE)
    if metrics is None:
        raise BertBatchError(f"run {run_id} has not finished: no {store.uri(prefix + layout.METRICS_FILE)} "
                             "(only a finished run can be promoted)")
    if store.read(prefix + layout.LABEL_MAP_FILE) is None:
        raise BertBatchError(f"run {run_id}: no {store.uri(prefix + layout.LABEL_MAP_FILE)}: not a model to predict "
                             "with")
    args = _json(store, prefix + layout.TRAINING_ARGS_FILE) or {}
    return metrics, args


def promote(store: Store, run_id: str, name: str, alias: str | None, who: str) -> Promoted:
    """Record a version of `name` for the finished run `run_id` (or reuse its version), then
    point `alias` at it. Everything is read first; if the alias cannot be written, a version
    recorded by this call is removed again, so a failed promote leaves the registry as it was."""
    metrics, args = run_outputs(store, run_id)
    uri = store.uri(layout.run_prefix(run_id))
    existing = versions(store, name)
    previous = aliases(store, name).get(alias) if alias is not None else None
    mine = next((r for r in existing if r.get("run_id") == run_id), None)
    created = mine is None
    if mine is None:
        record = {
            "format": layout.REGISTRY_FORMAT, "name": name, "version": 0, "run_id": run_id, "uri": uri,
            "metrics": metrics,
            "data": {key: args.get(key) for key in ("train", "eval", "text_column", "label_column") if key in args},
            "model": args.get("model"), "created": _now(), "created_by": who,
        }
        mine, created = _create_version(store, name, run_id, record, existing)
    version = int(mine["version"])
    if alias is not None and previous != version:
        _move_alias(store, name, alias, version, who, created=created)
    return Promoted(name=name, version=version, alias=alias, run_id=run_id, uri=str(mine.get("uri") or uri),
                    created=created, previous=previous)


def _create_version(store: Store, name: str, run_id: str, record: dict[str, Any],
                    existing: list[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """(the version record of `run_id`, whether this call created it): the next free number,
    taken with a conditional create."""
    number = max((int(r["version"]) for r in existing), default=0) + 1
    for _ in range(MAX_PROMOTE_RACES):
        record["version"] = number
        if store.create(layout.model_version_key(name, number), _dump(record)):
            return record, True
        # Another promote took this number: it may have been this same run (a corrupt record
        # at this number is skipped: it stays for `models list` to report).
        raced = _readable(store, layout.model_version_key(name, number))
        if raced is not None and raced.get("run_id") == run_id:
            return raced, False
        number += 1
    raise BertBatchError(f"model {name!r}: could not record a version after {MAX_PROMOTE_RACES} concurrent "
                         "promotes; try again")


def _move_alias(store: Store, name: str, alias: str, version: int, who: str, *, created: bool) -> None:
    """Point `alias` at `version`; when that fails, remove the version record if this promote
    created it, and say in one line what state the registry is in."""
    key = layout.model_alias_key(name, alias)
    try:
        store.write(key, _dump({"format": layout.REGISTRY_FORMAT, "name": name, "alias": alias, "version": version,
                                "updated": _now(), "updated_by": who}))
    except (botocore.exceptions.ClientError, OSError) as exc:
        reason = error_code(exc) if isinstance(exc, botocore.exceptions.ClientError) else exc.strerror
        version_key = layout.model_version_key(name, version)
        if created:
            store.delete(version_key)
            state = f"version {version} was removed again: nothing was promoted"
        else:
            state = f"version {version} was already registered and is unchanged"
        raise BertBatchError(f"--alias {alias}: cannot write {store.uri(key)} ({reason}); {state}") from None


# --- NAME@ALIAS -----------------------------------------------------------------------------------
def is_reference(model: str) -> bool:
    return "://" not in model and REFERENCE.fullmatch(model) is not None


def resolve(store: Store, reference: str) -> dict[str, Any]:
    """The version record NAME@ALIAS or NAME@N points at; BertBatchError naming what is missing."""
    m = REFERENCE.fullmatch(reference)
    if m is None:
        raise BertBatchError(f"--model {reference}: expected NAME@ALIAS or NAME@VERSION")
    name, target = m["name"], m["target"]
    if target.isdigit():
        version = int(target)
    else:
        found = aliases(store, name).get(target)
        if found is None:
            known = ", ".join(sorted(aliases(store, name))) or "none"
            raise BertBatchError(f"--model {reference}: model {name!r} has no alias {target!r} (aliases: {known})")
        version = found
    record = _json(store, layout.model_version_key(name, version))
    if record is None:
        hint = "see bertbatch models list" if not versions(store, name) else f"see bertbatch models show {name}"
        raise BertBatchError(f"--model {reference}: model {name!r} has no version {version} ({hint})")
    return record


def caller(sts: Callable[[], Any] | None) -> str:
    """Who promotes: the caller identity's ARN (AWS), else the local user name."""
    if sts is not None:
        return str(sts().get_caller_identity()["Arn"])
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
