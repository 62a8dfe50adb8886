"""Checkpoints that survive Spot: local write, background upload, manifest last, keep the last K.

Layout under the checkpoint location (a local directory or s3:// prefix):

    step-000000500/model.safetensors    weights
    step-000000500/optimizer.pt         AdamW state
    step-000000500/trainer_state.pt     scheduler, grad scaler, RNG states of every rank, data
                                        position, early-stopping state, running totals
    step-000000500/manifest.json        written LAST: size and sha256 of every file above

A checkpoint without a manifest is incomplete (the upload was cut off); one whose files do not
match their manifest, or do not load, is corrupt. Both are skipped on resume, with a log line.

The manifest's sha256 values are computed from the serialised bytes as they are written
(`write_hashed`), not by reading 1.3 GB back; on resume every file is read and checked against
them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

from . import contract, storage

log = logging.getLogger("bert_train")

MANIFEST = contract.CHECKPOINT_MANIFEST
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.pt"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d{9})$")


def step_dir(step: int) -> str:
    return contract.CHECKPOINT_DIR_FORMAT.format(step=step)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_hashed(path: Path, data) -> dict:
    """Write the bytes-like `data` (a serialised checkpoint file) to `path` and return its
    manifest entry, {"bytes": ..., "sha256": ...}, hashed from the same bytes in memory. The
    hash runs on a helper thread beside the write (both release the GIL), so on two or more
    cores it costs little extra time, and the file is never read back."""
    view = memoryview(data).cast("B")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as helper:
        digest = helper.submit(lambda: hashlib.sha256(view).hexdigest())
        with open(path, "wb") as f:
            f.write(view)  # a buffered file writes all of it or raises
        return {"bytes": view.nbytes, "sha256": digest.result()}


def build_manifest(directory: Path, step: int, run_id: str, digests: dict[str, dict] | None = None) -> dict:
    """The manifest of every file in `directory`. `digests` holds entries already computed while
    writing (`write_hashed`); an entry is used only if the file on disk has its size, and files
    without one are hashed by reading them."""
    digests = digests or {}
    missing = sorted(set(digests) - {p.name for p in directory.iterdir()})
    if missing:
        raise RuntimeError(f"checkpoint files reported but not written: {', '.join(missing)}")
    files = {}
    for p in sorted(directory.iterdir()):
        if p.name != MANIFEST and p.is_file():
            size = p.stat().st_size
            known = digests.get(p.name)
            if known is not None and known["bytes"] == size:
                files[p.name] = {"bytes": size, "sha256": known["sha256"]}
            else:
                files[p.name] = {"bytes": size, "sha256": _sha256(p)}
    return {"format": FORMAT_VERSION, "run_id": run_id, "step": step, "created": time.time(), "files": files}


def verify(directory: Path, manifest: dict) -> str | None:
    """None if every file matches the manifest, else what is wrong."""
    for name, meta in manifest.get("files", {}).items():
        p = directory / name
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != meta["bytes"]:
            return f"{name} has {p.stat().st_size} bytes, manifest says {meta['bytes']}"
        if _sha256(p) != meta["sha256"]:
            return f"{name} does not match its sha256"
    return None


class CheckpointStore:
    """Saves checkpoints under `uri`; for s3:// it stages them in `staging_dir` first.

    `save()` hands the writing, hashing and uploading to one background thread and returns at
    once: the caller passes a `write_files` that writes a snapshot it has already taken, so
    training can go on meanwhile. `write_files(directory)` may return the manifest entries of
    the files it wrote with `write_hashed` ({name: {"bytes", "sha256"}}); other files are hashed
    by reading them. For s3:// the manifest is uploaded only once every file is in place; with
    `wait=True` the files go up concurrently. The next save (or `wait()`) waits for the previous one, so
    checkpoints complete in step order. `on_complete(step, seconds)` is called when a checkpoint
    is complete at its destination.
    """

    def __init__(self, uri: str, staging_dir: str | Path, keep: int, run_id: str,
                 on_complete: Callable[[int, float], None] | None = None):
        self.uri = uri
        self.remote = storage.is_s3(uri)
        self.staging = Path(staging_dir)
        self.keep = keep
        self.run_id = run_id
        self.on_complete = on_complete
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: Future | None = None

    # --- saving -------------------------------------------------------------------------------
    def save(self, step: int, write_files: Callable[[Path], dict | None], *, wait: bool = False) -> float:
        """Write a checkpoint via `write_files(directory)`; returns the seconds the caller was blocked."""
        t0 = time.monotonic()
        self.wait()
        self._pending = self._pool.submit(self._write, step, write_files, t0, wait)
        if wait:
            self.wait()
        return time.monotonic() - t0

    def _write(self, step: int, write_files: Callable[[Path], dict | None], t0: float, urgent: bool) -> None:
        name = step_dir(step)
        local = (self.staging if self.remote else Path(self.uri)) / name
        if local.exists():
            shutil.rmtree(local)
        local.mkdir(parents=True)
        digests = write_files(local)
        manifest = json.dumps(build_manifest(local, step, self.run_id, digests), indent=1).encode()
        if self.remote:
            dest = storage.join(self.uri, name)
            # Returns when every file is uploaded and raises if any failed, in which case there is
            # no manifest and the checkpoint stays incomplete. A checkpoint the caller waits for
            # (the one after SIGTERM) sends all its files at once; a background one sends them one
            # after the other, because training goes on meanwhile and shares the CPU with it.
            storage.upload_files([(p, storage.join(dest, p.name)) for p in sorted(local.iterdir())],
                                 max_workers=storage.UPLOAD_FILES_AT_ONCE if urgent else 1)
            storage.write_bytes(storage.join(dest, MANIFEST), manifest)  # last: now it is complete
            shutil.rmtree(local, ignore_errors=True)  # the S3 copy is the one that matters
        else:
            storage.write_bytes(str(local / MANIFEST), manifest)
        self._prune()
        if self.on_complete:
            self.on_complete(step, time.monotonic() - t0)

    def wait(self) -> None:
        """Block until the pending upload is done; re-raises its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    def _prune(self) -> None:
        """Keep the newest `keep` complete checkpoints; delete older ones, manifest first."""
        dirs = self._list()
        complete = [s for s, files in dirs.items() if MANIFEST in files]
        kept = sorted(complete, reverse=True)[: self.keep]
        if not kept:
            return
        for s in sorted(dirs):
            if s < min(kept):
                storage.delete_tree(storage.join(self.uri, step_dir(s)), first=MANIFEST)
                log.info("deleted old checkpoint %s", step_dir(s))

    # --- finding ------------------------------------------------------------------------------
    def _list(self) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for rel in storage.list_files(self.uri):
            top, _, name = rel.partition("/")
            m = _STEP_DIR.match(top)
            if m and name:
                out.setdefault(int(m.group(1)), set()).add(name)
        return out

    def steps(self) -> list[int]:
        return sorted(self._list(), reverse=True)

    def fetch(self, step: int, scratch: Path) -> Path:
        """Local, verified copy of the checkpoint at `step`; raises ValueError if unusable."""
        src = storage.join(self.uri, step_dir(step))
        try:
            manifest = json.loads(storage.read_bytes(storage.join(src, MANIFEST)))
        except storage.StorageError:
            raise ValueError("incomplete (no manifest)") from None
        except json.JSONDecodeError:
            raise ValueError("corrupt manifest") from None
        if manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"unknown checkpoint format {manifest.get('format')!r}")
        if self.remote:
            local = scratch / step_dir(step)
            shutil.rmtree(local, ignore_errors=True)
            for name in manifest["files"]:
                try:
                    storage.download_file(storage.join(src, name), local / name)
                except storage.StorageError as exc:
                    raise ValueError(str(exc)) from None
        else:
            local = Path(src)
        problem = verify(local, manifest)
        if problem:
            raise ValueError(f"corrupt ({problem})")
        return local

    def candidates(self, scratch: Path) -> Iterator[tuple[int, Path]]:
        """Complete, verified checkpoints, newest first; skipped ones are logged."""
        for step in self.steps():
            try:
                yield step, self.fetch(step, scratch)
            except ValueError as exc:
                log.warning("skipping checkpoint %s: %s", step_dir(step), exc)
