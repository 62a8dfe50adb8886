"""The tokenized store (format and names: `bertbatch_contract.store`): Parquet shards written
with pyarrow, JSON manifests, and reading them back by (shard, row group).

Local stores are read in place (memory-mapped); shards of an `s3://` store are downloaded into a
local cache directory, one at a time as the reader reaches them, and reused while their size
matches the manifest.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bertbatch_contract import store as contract

from . import storage
from .config import BadInput
from .tokenize_pool import Encoded


def schema(pairs: bool) -> pa.Schema:
    fields = [pa.field(contract.COL_INPUT_IDS, pa.large_list(pa.int32()), nullable=False)]
    if pairs:
        fields.append(pa.field(contract.COL_TOKEN_TYPE_IDS, pa.large_list(pa.int8()), nullable=False))
    fields += [pa.field(contract.COL_LABEL, pa.string(), nullable=False),
               pa.field(contract.COL_LENGTH, pa.int32(), nullable=False)]
    return pa.schema(fields)


def table_of(enc: Encoded, labels: Sequence[str]) -> pa.Table:
    offsets = pa.array(enc.offsets, type=pa.int64())
    columns: dict[str, Any] = {contract.COL_INPUT_IDS: pa.LargeListArray.from_arrays(offsets, pa.array(enc.ids))}
    if enc.types is not None:
        columns[contract.COL_TOKEN_TYPE_IDS] = pa.LargeListArray.from_arrays(offsets, pa.array(enc.types))
    columns[contract.COL_LABEL] = pa.array(labels, type=pa.string())
    columns[contract.COL_LENGTH] = pa.array(enc.lengths.astype(np.int32))
    return pa.Table.from_pydict(columns, schema=schema(enc.types is not None))


class ShardWriter:
    """The shards of one input file, in a staging directory: a new part every `rows_per_shard`
    rows, row groups of `contract.ROW_GROUP_ROWS` rows."""

    def __init__(self, staging: Path, input_index: int, rows_per_shard: int, pairs: bool) -> None:
        self.staging, self.input_index, self.rows_per_shard, self.pairs = staging, input_index, rows_per_shard, pairs
        self.records: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows = 0

    def _open(self) -> pq.ParquetWriter:
        name = contract.shard_name(self.input_index, len(self.records))
        path = self.staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.records.append({"file": name, "source": self.input_index, "rows": 0})
        self._rows = 0
        return pq.ParquetWriter(path, schema(self.pairs), compression="zstd")

    def write(self, table: pa.Table) -> None:
        start = 0
        while start < table.num_rows:
            if self._writer is None or self._rows >= self.rows_per_shard:
                self._finish()
                self._writer = self._open()
            take = min(table.num_rows - start, self.rows_per_shard - self._rows)
            self._writer.write_table(table.slice(start, take), row_group_size=contract.ROW_GROUP_ROWS)
            self._rows += take
            start += take

    def _finish(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        record = self.records[-1]
        meta = pq.ParquetFile(self.staging / record["file"]).metadata
        record["rows"] = meta.num_rows
        record["row_groups"] = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        record["bytes"] = (self.staging / record["file"]).stat().st_size

    def close(self) -> list[dict[str, Any]]:
        self._finish()
        return self.records


# --- JSON records ----------------------------------------------------------------------------------


read_json = storage.read_json  # the store's JSON records (manifest, partials)


def write_json(uri: str, value: dict[str, Any]) -> None:
    storage.write_bytes(uri, (json.dumps(value, indent=1) + "\n").encode())


def publish(staging: Path, store_uri: str, files: Sequence[str]) -> None:
    """Move (local) or upload (S3) staged shard files into the store."""
    if storage.is_s3(store_uri):
        storage.upload_files([(staging / f, storage.join(store_uri, f)) for f in files])
        return
    for f in files:
        dest = Path(store_uri) / f
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / f, dest)


# --- reading ---------------------------------------------------------------------------------------


def is_store(uri: str) -> bool:
    """Whether `uri` is a complete store (its manifest exists)."""
    try:
        return read_json(storage.join(uri, contract.MANIFEST)) is not None
    except storage.StorageError:
        return False


def load_manifest(uri: str) -> dict[str, Any]:
    """A store's manifest; BadInput (one line) when there is none or it is of another format."""
    where = storage.join(uri, contract.MANIFEST)
    try:
        manifest = read_json(where)
    except storage.StorageError as exc:
        raise BadInput(str(exc)) from None
    if manifest is None:
        raise BadInput(f"{where}: no store manifest (run `python -m bert_train prepare` first)")
    if (manifest.get("format"), manifest.get("version")) != (contract.FORMAT, contract.FORMAT_VERSION):
        raise BadInput(f"{where}: not a {contract.FORMAT} store of version {contract.FORMAT_VERSION} "
                       f"(found {manifest.get('format')!r} version {manifest.get('version')!r})")
    return manifest


@dataclass(frozen=True)
class RowGroup:
    shard: int  # index into the manifest's shards
    group: int  # row group within the shard
    rows: int


def row_groups(manifest: dict[str, Any]) -> list[RowGroup]:
    return [RowGroup(s, g, n) for s, shard in enumerate(manifest["shards"])
            for g, n in enumerate(shard["row_groups"])]


class Reader:
    """Row groups of a store's shards. An S3 shard is downloaded into `cache_dir` on first use;
    at most `keep` downloaded shards stay on disk."""

    def __init__(self, uri: str, manifest: dict[str, Any], cache_dir: Path, keep: int = 2) -> None:
        self.uri, self.manifest, self.cache_dir, self.keep = uri, manifest, cache_dir, keep
        self._open: dict[int, pq.ParquetFile] = {}

    def _path(self, shard: int) -> str:
        record = self.manifest["shards"][shard]
        uri = storage.join(self.uri, record["file"])
        if not storage.is_s3(self.uri):
            if not os.path.isfile(uri):
                raise BadInput(f"{uri}: shard missing from the store (prepare it again)")
            return uri
        local = self.cache_dir / record["file"]
        if not (local.is_file() and local.stat().st_size == record["bytes"]):
            try:
                storage.download_file(uri, local)
            except storage.NotFound:
                raise BadInput(f"{uri}: shard missing from the store (prepare it again)") from None
        return str(local)

    def file(self, shard: int) -> pq.ParquetFile:
        if shard not in self._open:
            while len(self._open) >= self.keep:
                old = next(iter(self._open))
                self._open.pop(old).close()
                if storage.is_s3(self.uri):
                    (self.cache_dir / self.manifest["shards"][old]["file"]).unlink(missing_ok=True)
            self._open[shard] = pq.ParquetFile(self._path(shard), memory_map=True)
        return self._open[shard]

    def read(self, group: RowGroup, columns: Sequence[str]) -> pa.Table:
        return self.file(group.shard).read_row_group(group.group, columns=list(columns))

    def check(self) -> None:
        """Every shard is there (S3: listed; local: exists), else BadInput naming the first missing."""
        try:
            present = set(storage.list_files(self.uri))
        except storage.StorageError as exc:
            raise BadInput(str(exc)) from None
        for record in self.manifest["shards"]:
            if record["file"] not in present:
                raise BadInput(f"{storage.join(self.uri, record['file'])}: shard missing from the store "
                               "(prepare it again)")

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()
        if storage.is_s3(self.uri):
            shutil.rmtree(self.cache_dir, ignore_errors=True)
