"""What an input location holds: one data file, or the data files (shards) under a local
folder or an `s3://` prefix, each with its size and version (S3 ETag, local modification time).

A shard is any file whose name has a readable extension (`tables.data_format`); hidden files and
names starting with `_` (`_SUCCESS`, `.crc`) are skipped, other names are skipped with a log line.
Shards are read in the order of their names.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from bertbatch_contract import tables

from . import storage
from .config import BadInput
from .errors import unreadable_input

log = logging.getLogger("bert_train")


@dataclass(frozen=True)
class Source:
    uri: str
    size: int
    version: str  # S3 ETag, or the local file's modification time in nanoseconds

    def record(self) -> dict[str, object]:
        return {"uri": self.uri, "size": self.size, "version": self.version}


def is_file_name(uri: str) -> bool:
    return tables.data_format(uri) is not None


def list_sources(uri: str) -> list[Source]:
    """The data files at `uri`; BadInput (one line, naming `uri`) when there are none or the
    location cannot be read."""
    try:
        if is_file_name(uri) or (not storage.is_s3(uri) and os.path.isfile(uri)):
            return [_one(uri)]
        if not storage.is_s3(uri) and not os.path.isdir(uri):
            raise BadInput(f"{uri}: file not found")
        entries = storage.list_objects(uri)
    except storage.StorageError as exc:
        raise unreadable_input(uri, exc) from None
    found, skipped = [], []
    for rel, size, version in entries:
        name = rel.rsplit("/", 1)[-1]
        if name.startswith((".", "_")):
            continue
        if is_file_name(name):
            found.append(Source(storage.join(uri, rel), size, version))
        else:
            skipped.append(rel)
    if skipped:
        log.info("%s: skipping %d file(s) that are not data (%s)", uri, len(skipped), ", ".join(skipped[:3]))
    if not found:
        raise BadInput(f"{uri}: no data files (expected names ending in {tables.extensions()})")
    return found


def _one(uri: str) -> Source:
    if not is_file_name(uri):
        raise BadInput(f"{uri}: unknown file type (expected one of {tables.extensions()})")
    size, version = storage.stat(uri)
    return Source(uri, size, version)
