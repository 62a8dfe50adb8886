"""Checkpoints that survive Spot and a failing S3: local write, background upload with retries,
manifest last, keep the last K verified ones and the best evaluation's.

Layout under the checkpoint location (a local directory or s3:// prefix):

    step-000000500/manifest.json                    the published checkpoint: names its files
    step-000000500/<attempt>/model.safetensors      weights
    step-000000500/<attempt>/optimizer.pt           AdamW state
    step-000000500/<attempt>/trainer_state.pt       scheduler, grad scaler, RNG states of every
                                                    rank, data position, early-stopping state,
                                                    running totals

Each attempt (one process writing checkpoints: a Batch retry, the On-Demand resubmission, a copy
started by hand) writes its files under its own `<attempt>` key and never over another's, then
publishes them with one PUT of the manifest, which names each file's key, size and sha256. Two
attempts of one run writing the same step leave two sets of files and one manifest naming one
whole set, so a reader never sees a mix. (Format 1 manifests, files beside the manifest, are
still read.)

A step without a manifest is incomplete (the upload was cut off); one whose manifest is not of
the expected shape, or whose files are missing, do not match it or do not load, is corrupt. Both
are skipped on resume, with a log line. An error other than "no such key" is not taken for
absence: reads are retried with backoff, and a checkpoint that still cannot be read stops the run
with StoreUnavailable instead of letting it train from scratch over it.

An upload that fails is retried with backoff, file by file; a checkpoint that still fails is
logged and kept in the staging directory, and training goes on: the next checkpoint tries again.
Only when no checkpoint has reached the store for `give_up_after` seconds does `save()` raise
StoreUnavailable. After the stop signal (`stop_within`), no retry waits and no try starts past its
deadline (retries.RetryLadder): the checkpoint it asks for is stored before SIGKILL, or given up.

Keep-K counts only checkpoints this process verified (published itself, or read back and
checked), so corrupt or unread ones never push out a good one, and the newest verified one is
never deleted.

The manifest's sha256 values are computed from the serialised bytes as they are written
(`write_hashed`), not by reading 1.3 GB back; on resume every file is read and checked against
them.

The file format is here too: `snapshot()` copies what a checkpoint holds to CPU memory (the only
part training waits for), `write_snapshot()` writes the three files, `load()` reads them back
into the model, optimizer, schedule and grad scaler.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from bertbatch_contract import layout

from . import storage
from .errors import Diverged, StoreUnavailable
from .retries import RetryLadder, Waits

log = logging.getLogger("bert_train")

MANIFEST = layout.CHECKPOINT_MANIFEST
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.pt"
FORMAT_VERSION = 2  # 2: files under an attempt key named by the manifest; 1: files beside it
_READABLE_FORMATS = (1, FORMAT_VERSION)
_STEP_DIR = re.compile(r"step-(\d{9})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a file or attempt name: no "/", no ".."
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Seconds to wait before each retry of a checkpoint read or upload, on top of botocore's own
# retries of each request (storage.S3_MAX_ATTEMPTS); after SIGTERM, only those that end before
# the deadline (retries.RetryLadder).
RETRY_DELAYS = (2.0, 10.0, 30.0)
DEFAULT_GIVE_UP_SECONDS = 30 * 60.0


Digests = dict[str, dict[str, Any]]  # file name -> {"bytes": ..., "sha256": ...}
T = TypeVar("T")


def step_dir(step: int) -> str:
    return layout.checkpoint_dir(step)


def new_attempt_id() -> str:
    """A key no other attempt uses: UTC start time (sorts by age) and a random suffix."""
    return f"attempt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_hashed(path: Path, data: bytes | bytearray | memoryview) -> dict[str, Any]:
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


def build_manifest(directory: Path, step: int, run_id: str, digests: Digests | None = None) -> dict[str, Any]:
    """The manifest of every file in `directory`, whose name is the attempt key the files are
    published under. `digests` holds entries already computed while writing (`write_hashed`); an
    entry is used only if the file on disk has its size, and files without one are hashed by
    reading them."""
    digests = digests or {}
    missing = sorted(set(digests) - {p.name for p in directory.iterdir()})
    if missing:
        raise FileNotFoundError(f"checkpoint files reported but not in {directory}: {', '.join(missing)}")
    attempt = directory.name
    files: Digests = {}
    for p in sorted(directory.iterdir()):
        if p.name != MANIFEST and p.is_file():
            size = p.stat().st_size
            known = digests.get(p.name)
            sha256 = known["sha256"] if known is not None and known["bytes"] == size else _sha256(p)
            files[p.name] = {"key": f"{attempt}/{p.name}", "bytes": size, "sha256": sha256}
    return {"format": FORMAT_VERSION, "run_id": run_id, "step": step, "attempt": attempt, "created": time.time(),
            "files": files}


@dataclass(frozen=True)
class FileEntry:
    key: str  # relative to the step directory
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    step: int
    attempt: str  # "" in format 1
    files: dict[str, FileEntry]  # file name -> entry


def parse_manifest(raw: bytes, step: int) -> Manifest:
    """The manifest of the checkpoint at `step`, checked for shape; ValueError says what is wrong."""
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("corrupt manifest (not JSON)") from None
    if not isinstance(doc, dict):
        raise ValueError(f"corrupt manifest (a JSON {type(doc).__name__}, not an object)")
    fmt = doc.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt not in _READABLE_FORMATS:
        raise ValueError(f"unknown checkpoint format {fmt!r}")
    if doc.get("step") != step or isinstance(doc.get("step"), bool):
        raise ValueError(f"corrupt manifest (step {doc.get('step')!r} in the directory of step {step})")
    attempt = doc.get("attempt") if fmt >= 2 else ""
    if not isinstance(attempt, str) or (fmt >= 2 and not _NAME.fullmatch(attempt)):
        raise ValueError(f"corrupt manifest (attempt {attempt!r})")
    files = doc.get("files")
    if not isinstance(files, dict) or not files:
        raise ValueError("corrupt manifest ('files' is not a non-empty object)")
    entries: dict[str, FileEntry] = {}
    for name, meta in files.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"corrupt manifest (file name {name!r})")
        if not isinstance(meta, dict):
            raise ValueError(f"corrupt manifest (the entry of {name} is not an object)")
        size, digest = meta.get("bytes"), meta.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"corrupt manifest (the entry of {name} has no valid 'bytes')")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ValueError(f"corrupt manifest (the entry of {name} has no valid 'sha256')")
        key = f"{attempt}/{name}" if fmt >= 2 else name
        if fmt >= 2 and meta.get("key") != key:
            raise ValueError(f"corrupt manifest (the entry of {name} has key {meta.get('key')!r}, not {key!r})")
        entries[name] = FileEntry(key=key, size=size, sha256=digest)
    return Manifest(step=step, attempt=attempt, files=entries)


def verify(directory: Path, manifest: Manifest) -> str | None:
    """None if every file named by the manifest is in `directory` and matches it, else what is wrong."""
    for name, entry in manifest.files.items():
        p = directory / name
        if not p.is_file():
            return f"{entry.key} is missing"
        if p.stat().st_size != entry.size:
            return f"{entry.key} has {p.stat().st_size} bytes, manifest says {entry.size}"
        if _sha256(p) != entry.sha256:
            return f"{entry.key} does not match its sha256"
    return None


class CheckpointLocation:
    """The checkpoints stored under `uri` (a local directory or an s3:// prefix): listing, fetching
    and verifying them. A read that fails is retried after each of `retry_delays` (retries.RetryLadder,
    with the clock and sleep of `waits`)."""

    def __init__(self, uri: str, *, retry_delays: Sequence[float] = RETRY_DELAYS, waits: Waits | None = None) -> None:
        self.uri = uri
        self.remote = storage.is_s3(uri)
        self.retries = RetryLadder(retry_delays, waits)
        self._verified: set[int] = set()  # steps this process published or read back and checked

    def stop_within(self, seconds: float) -> None:
        """The stop signal came: no retry of a read or an upload waits, and no try starts, past
        `seconds` from now (a try under way is bounded by the S3 client's timeouts)."""
        self.retries.stop_within(seconds)

    def _list(self) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for rel in storage.list_files(self.uri):
            top, _, name = rel.partition("/")
            m = _STEP_DIR.fullmatch(top)
            if m and name:
                out.setdefault(int(m.group(1)), set()).add(name)
        return out

    def steps(self) -> list[int]:
        """Steps that have anything stored, newest first; StoreUnavailable if they cannot be listed."""
        try:
            listed = self.retries.run(f"listing {self.uri}", self._list)
        except storage.StorageError as exc:
            raise StoreUnavailable(f"cannot list the checkpoints ({exc}); stopping rather than starting "
                                   "from scratch over them") from None
        return sorted(listed, reverse=True)

    def fetch(self, step: int, scratch: Path, *, only: Sequence[str] = ()) -> Path:
        """Local, verified copy of the checkpoint at `step` (of the files named in `only`, when
        given); raises ValueError if it is incomplete or corrupt, StoreUnavailable if it cannot be read."""
        src = storage.join(self.uri, step_dir(step))
        manifest_uri = storage.join(src, MANIFEST)
        try:
            raw = self.retries.run(f"reading {manifest_uri}", functools.partial(storage.read_bytes, manifest_uri))
        except storage.NotFound:
            raise ValueError("incomplete (no manifest)") from None
        except storage.StorageError as exc:
            raise self._unreadable(step, exc) from None
        manifest = parse_manifest(raw, step)
        if only:  # e.g. the best model's weights without the optimizer state, twice their size
            missing = sorted(set(only) - set(manifest.files))
            if missing:
                raise ValueError(f"corrupt ({', '.join(missing)} not in the manifest)")
            manifest = Manifest(step=step, attempt=manifest.attempt,
                                files={name: manifest.files[name] for name in only})
        if self.remote:
            local = scratch / step_dir(step)
            shutil.rmtree(local, ignore_errors=True)
            for name, entry in manifest.files.items():
                uri = storage.join(src, entry.key)
                try:
                    self.retries.run(f"downloading {uri}", functools.partial(storage.download_file, uri, local / name))
                except storage.NotFound:
                    raise ValueError(f"corrupt ({entry.key} is missing)") from None
                except storage.StorageError as exc:
                    raise self._unreadable(step, exc) from None
        else:
            local = Path(src) / manifest.attempt
        problem = verify(local, manifest)
        if problem:
            raise ValueError(f"corrupt ({problem})")
        if not only:
            self._verified.add(step)
        return local

    @staticmethod
    def _unreadable(step: int, exc: storage.StorageError) -> StoreUnavailable:
        return StoreUnavailable(f"cannot read checkpoint {step_dir(step)} ({exc}); stopping rather than "
                                "training from scratch over it")

    def candidates(self, scratch: Path) -> Iterator[tuple[int, Path]]:
        """Complete, verified checkpoints, newest first; skipped ones are logged. Raises
        StoreUnavailable when the store cannot be read."""
        for step in self.steps():
            try:
                yield step, self.fetch(step, scratch)
            except ValueError as exc:
                log.warning("skipping checkpoint %s: %s", step_dir(step), exc)


class CheckpointStore(CheckpointLocation):
    """Saves checkpoints under `uri`; for s3:// it stages them in `staging_dir` first.

    `save()` hands the writing, hashing and uploading to one background thread and returns at
    once: the caller passes a `write_files` that writes a snapshot it has already taken, so
    training can go on meanwhile. `write_files(directory)` may return the manifest entries of
    the files it wrote with `write_hashed` ({name: {"bytes", "sha256"}}); other files are hashed
    by reading them. For s3:// the manifest is uploaded only once every file is in place; with
    `wait=True` the files go up concurrently, and a checkpoint that cannot be stored raises
    StoreUnavailable. The next save (or `wait()`) waits for the previous one, so checkpoints
    complete in step order. `on_complete(step, seconds)` is called when a checkpoint is complete
    at its destination. `attempt` is the key this process writes its files under (default: a new
    unique one); `retry_delays` the waits before each retry of a read or an upload, `waits` the
    clock and sleep they use (CheckpointLocation). After `stop_within(seconds)` (the stop signal)
    no retry waits, and no try starts, past that deadline.
    """

    def __init__(self, uri: str, staging_dir: str | Path, keep: int, run_id: str,
                 on_complete: Callable[[int, float], None] | None = None, *, attempt: str | None = None,
                 give_up_after: float = DEFAULT_GIVE_UP_SECONDS, retry_delays: Sequence[float] = RETRY_DELAYS,
                 waits: Waits | None = None) -> None:
        super().__init__(uri, retry_delays=retry_delays, waits=waits)
        self.staging = Path(staging_dir)
        self.keep = keep
        self.run_id = run_id
        self.on_complete = on_complete
        self.attempt = attempt or new_attempt_id()
        self.give_up_after = give_up_after
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: Future[None] | None = None
        self._last_stored = time.monotonic()  # give_up_after counts from here (the start, or the last success)
        self._latest_failure: str | None = None  # why the newest checkpoint did not reach the store
        self._kept_locally: Path | None = None  # the newest checkpoint that could not be uploaded
        self._unavailable: StoreUnavailable | None = None
        self.best_step: int | None = None  # never pruned: the best evaluation's checkpoint (keep_best)

    def keep_best(self, step: int | None) -> None:
        """Never prune the checkpoint at `step`: the best evaluation's weights, published at the end.
        Also set by `save(best_step=...)`, once that checkpoint is stored."""
        self.best_step = step

    # --- saving -------------------------------------------------------------------------------
    def save(self, step: int, write_files: Callable[[Path], Digests | None], *, wait: bool = False,
             best_step: int | None = None) -> float:
        """Write a checkpoint via `write_files(directory)`; returns the seconds the caller was blocked.
        `best_step`: the best evaluation's step as this checkpoint's state records it; it becomes
        the one kept by `keep_best` once this checkpoint is stored (a resume from it needs that
        one), not before. Raises StoreUnavailable once no checkpoint has reached the store for
        `give_up_after` s (and, with `wait`, when this one did not)."""
        t0 = time.monotonic()
        self.wait()
        if self._unavailable is not None:
            raise self._unavailable
        self._pending = self._pool.submit(self._write, step, write_files, t0, wait, best_step)
        if wait:
            self.wait()
            self._raise_if_latest_failed()
        return time.monotonic() - t0

    def _raise_if_latest_failed(self) -> None:
        if self._latest_failure is not None:
            raise StoreUnavailable(self._latest_failure)

    def _write(self, step: int, write_files: Callable[[Path], Digests | None], t0: float, urgent: bool,
               best_step: int | None) -> None:
        name = step_dir(step)
        local = (self.staging if self.remote else Path(self.uri)) / name / self.attempt
        if local.exists():
            shutil.rmtree(local)
        local.mkdir(parents=True)
        try:
            digests = write_files(local)
            # Raises FileNotFoundError if a written file is gone: an overlapping attempt that is
            # further on pruned this step, and a manifest naming missing files would be corrupt.
            manifest = json.dumps(build_manifest(local, step, self.run_id, digests), indent=1).encode()
            self._publish(name, local, manifest, urgent)
        except OSError as exc:  # the local copy: a full disk, or an overlapping attempt pruned this step
            self._not_stored(step, local, storage.StorageError(f"{local}: cannot write ({exc})"))
            return
        except storage.StorageError as exc:
            self._not_stored(step, local, exc)
            return
        self._stored(step, local)
        if best_step is not None:
            self.keep_best(best_step)
        self._prune()
        if self.on_complete:
            self.on_complete(step, time.monotonic() - t0)

    def _publish(self, name: str, local: Path, manifest: bytes, urgent: bool) -> None:
        if not self.remote:
            storage.write_bytes(str(local.parent / MANIFEST), manifest)  # atomic rename: now it is complete
            return
        dest = storage.join(self.uri, name)
        # Returns when every file is uploaded and raises if any failed, in which case there is
        # no manifest and the checkpoint stays incomplete. A checkpoint the caller waits for
        # (the one after SIGTERM) sends all its files at once; a background one sends them one
        # after the other, because training goes on meanwhile and shares the CPU with it.
        storage.upload_files([(p, storage.join(dest, self.attempt, p.name)) for p in sorted(local.iterdir())],
                             max_workers=storage.UPLOAD_FILES_AT_ONCE if urgent else 1, upload=self._upload)
        manifest_uri = storage.join(dest, MANIFEST)
        self.retries.run(f"writing {manifest_uri}", functools.partial(storage.write_bytes, manifest_uri, manifest))

    def _upload(self, local: str | Path, uri: str) -> None:
        self.retries.run(f"uploading {uri}", functools.partial(storage.upload_file, local, uri))

    def _stored(self, step: int, local: Path) -> None:
        self._verified.add(step)
        self._last_stored = time.monotonic()
        self._latest_failure = None
        if self.remote:
            shutil.rmtree(local.parent, ignore_errors=True)  # the S3 copy is the one that matters
            if self._kept_locally is not None:
                shutil.rmtree(self._kept_locally.parent, ignore_errors=True)
                self._kept_locally = None

    def _not_stored(self, step: int, local: Path, exc: storage.StorageError) -> None:
        """Keep the newest checkpoint that failed in the staging directory (and only that one)."""
        if self._kept_locally is not None and self._kept_locally != local:
            shutil.rmtree(self._kept_locally.parent, ignore_errors=True)
        self._kept_locally = local
        self._latest_failure = f"checkpoint {step_dir(step)} could not be stored ({exc}); it is kept in {local}"
        waited = time.monotonic() - self._last_stored
        if waited > self.give_up_after:
            self._unavailable = StoreUnavailable(
                f"no checkpoint reached {self.uri} for {waited / 60:.1f} minutes; last error: {exc}; "
                f"the newest checkpoint is kept in {local}")
            log.error("%s; stopping at the next checkpoint", self._unavailable)
        else:
            log.warning("%s; training goes on and the next checkpoint tries again", self._latest_failure)

    def wait(self) -> None:
        """Block until the pending checkpoint is done (stored, or kept locally and logged);
        re-raises any error other than a storage one."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self, *, require_stored: bool = False) -> None:
        """Wait for the pending checkpoint; with `require_stored`, raise StoreUnavailable if the
        newest one did not reach the store (the exit after SIGTERM promises it did)."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
        if require_stored:
            self._raise_if_latest_failed()

    def _prune(self) -> None:
        """Keep the newest `keep` verified checkpoints and the best one (`keep_best`); delete every
        other older one, manifest first."""
        kept = sorted(self._verified, reverse=True)[: self.keep]
        if not kept:
            return
        try:
            listed = self.retries.run(f"listing {self.uri}", self._list)
        except storage.StorageError as exc:
            log.warning("old checkpoints not deleted this time: %s", exc)
            return
        for s in sorted(listed):
            if s < min(kept) and s != self.best_step:
                try:
                    storage.delete_tree(storage.join(self.uri, step_dir(s)), first=MANIFEST)
                except storage.StorageError as exc:
                    log.warning("old checkpoint %s not deleted this time: %s", step_dir(s), exc)
                    continue
                self._verified.discard(s)
                log.info("deleted old checkpoint %s", step_dir(s))


def first_nonfinite(model: torch.nn.Module) -> str | None:
    """The name of the first parameter holding a NaN or an infinity, or None (one device sync)."""
    named = list(model.named_parameters())
    if not named or bool(torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).all()):
        return None
    return next(n for n, p in named if not bool(torch.isfinite(p.detach()).all()))


# --- the file format ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trainable:
    """What a checkpoint saves and restores besides the trainer state."""

    model: torch.nn.Module  # the bare model, not its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


@dataclass(frozen=True)
class Snapshot:
    """CPU copies of everything in one checkpoint, taken at a step boundary."""

    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    trainer_state: dict[str, Any]


def cpu_copy(obj: T) -> T:
    """A deep copy with every tensor copied to CPU memory: a snapshot the optimizer cannot change
    while a background thread writes it."""
    copied: Any
    if isinstance(obj, torch.Tensor):
        copied = obj.detach().to("cpu", copy=True)
    elif isinstance(obj, dict):
        copied = {k: cpu_copy(v) for k, v in obj.items()}
    elif isinstance(obj, (list, tuple)):
        copied = type(obj)(cpu_copy(v) for v in obj)
    else:
        copied = obj
    return copied


def torch_bytes(obj: object) -> memoryview:
    """`torch.save(obj)` into memory (one more copy of the state while its file is written)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer()


def snapshot(parts: Trainable, *, state: dict[str, Any], rng: list[dict[str, Any]], global_batch: int,
             world_size: int, steps_per_epoch: int, labels: list[str]) -> Snapshot:
    """Copy a checkpoint's contents to CPU memory. `state` is the TrainState as a dict, `rng` the
    RNG states of every rank. Raises Diverged rather than checkpoint non-finite weights (a NaN
    checkpoint would count as the newest good one and push the real ones out)."""
    bad = first_nonfinite(parts.model)
    if bad is not None:
        raise Diverged(f"weight {bad} is NaN or infinite at step {state.get('step')}: no checkpoint written, "
                       "no model published (lower --learning-rate or --max-grad-norm)")
    return Snapshot(
        model_state=cpu_copy(parts.model.state_dict()),
        optimizer_state=cpu_copy(parts.optimizer.state_dict()),
        trainer_state=cpu_copy({
            "state": state, "scheduler": parts.scheduler.state_dict(), "scaler": parts.scaler.state_dict(),
            "rng": rng, "global_batch": global_batch, "world_size": world_size,
            "steps_per_epoch": steps_per_epoch, "labels": labels,
        }),
    )


def write_snapshot(snap: Snapshot, directory: Path) -> Digests:
    """The three files, serialised in memory and written with their sha256 computed from those
    bytes (the manifest's), beside the write instead of reading back."""
    from safetensors.torch import save as safetensors_bytes

    return {
        MODEL_FILE: write_hashed(directory / MODEL_FILE, safetensors_bytes(snap.model_state)),
        OPTIMIZER_FILE: write_hashed(directory / OPTIMIZER_FILE, torch_bytes(snap.optimizer_state)),
        STATE_FILE: write_hashed(directory / STATE_FILE, torch_bytes(snap.trainer_state)),
    }


def read_weights(path: Path, model: torch.nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    """The weights of the verified checkpoint directory `path`; ValueError if they do not fit `model`."""
    from safetensors.torch import load_file

    weights = load_file(str(path / MODEL_FILE), device=str(device))
    if set(weights) != set(model.state_dict()):
        raise ValueError("its weights do not fit this model")
    return weights


def load_weights(path: Path, model: torch.nn.Module) -> None:
    """Only the weights of the verified checkpoint directory `path` into `model` (the best
    evaluation's, to publish). Read into CPU memory, one copy of the weights (BERT-large: 1.3 GB),
    so the accelerator's memory is not doubled; ValueError if they do not fit."""
    model.load_state_dict(read_weights(path, model, torch.device("cpu")))


def load(path: Path, parts: Trainable, *, device: torch.device, global_batch: int,
         labels: list[str]) -> dict[str, Any]:
    """Restore `parts` from the verified checkpoint directory `path`; returns the saved trainer
    state ("state": the TrainState fields, "rng": one RNG state per rank). Raises ValueError,
    before changing anything, if the checkpoint belongs to a differently shaped run."""
    saved: dict[str, Any] = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    if saved["global_batch"] != global_batch or saved["labels"] != labels:
        raise ValueError(f"written with global batch {saved['global_batch']} and labels {saved['labels']}; "
                         f"this run has {global_batch} and {labels}")
    optimizer_state = torch.load(path / OPTIMIZER_FILE, map_location=device, weights_only=True)
    weights = read_weights(path, parts.model, device)
    params = [p for group in parts.optimizer.param_groups for p in group["params"]]
    for index, moments in optimizer_state.get("state", {}).items():
        # e.g. written by a trainer that kept every word-embedding row in AdamW (vocab_rows)
        if index >= len(params) or moments["exp_avg"].shape != params[index].shape:
            raise ValueError("its optimizer state does not fit this model's parameters")
    parts.model.load_state_dict(weights)
    parts.optimizer.load_state_dict(optimizer_state)
    parts.scheduler.load_state_dict(saved["scheduler"])
    parts.scaler.load_state_dict(saved["scaler"])
    return saved
