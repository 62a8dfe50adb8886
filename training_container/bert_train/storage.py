"""Reading and writing `s3://` URIs and local paths through one small interface.

All S3 access goes through `make_s3_client()`, which honours AWS_ENDPOINT_URL_S3 /
AWS_ENDPOINT_URL (a moto server in tests, a VPC endpoint or MinIO elsewhere). Errors become
`StorageError` with one line that names the URI. Its subclasses are S3's definite answers about
what the caller named: `NotFound` (no such object) and `Refused` (no such bucket, or no
permission there), which retrying does not change. A plain StorageError is S3 failing to answer
(throttling, a 5xx, a timeout, a lost connection): worth retrying. `s3_error` is the one place
that sorts botocore's errors into the three.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# Uploads: checkpoint files are hundreds of MB. Each file goes up in multipart parts of
# UPLOAD_PART_BYTES, UPLOAD_PART_CONCURRENCY parts at a time, and `upload_files` sends up to
# UPLOAD_FILES_AT_ONCE files at once; the client's connection pool is sized for all of them.
# (16 MB rather than 64 MB parts: against a moto server on 2 cores, 64 MB parts were slower; on
# real S3 either keeps a 1.3 GB checkpoint to under a hundred requests.)
UPLOAD_PART_BYTES = 16 * 1024 * 1024
UPLOAD_PART_CONCURRENCY = 10
UPLOAD_FILES_AT_ONCE = 3
# botocore's own retries (standard mode: throttling, 5xx, connection errors) for every request:
# S3_MAX_ATTEMPTS tries in all, each bounded by the timeouts. One request with all its tries
# (3 x (5 + 20) s, plus at most 1 + 2 s of backoff) fits within the seconds the checkpoint after
# SIGTERM has (job.SIGTERM_CHECKPOINT_BUDGET_SECONDS); the checkpoint store's retries between
# whole tries stop at that deadline (retries.RetryLadder). The read timeout is per socket read
# or send, not per request: a 16 MB part that makes progress is never cut off.
S3_MAX_ATTEMPTS = 3
S3_CONNECT_TIMEOUT_SECONDS = 5
S3_READ_TIMEOUT_SECONDS = 20
# Error codes that mean "there is no such object", not "S3 could not answer".
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# Error codes that mean the bucket the caller named is wrong for this role: it does not exist, or
# the role may not use it. Throttling (SlowDown), 5xx and network errors are not among them.
_REFUSED_CODES = frozenset({"AccessDenied", "NoSuchBucket", "AllAccessDisabled", "InvalidBucketName", "403"})


class StorageError(Exception):
    """A read or write failed; the message names the URI."""


class NotFound(StorageError):
    """The object or file does not exist (S3 answered: no such key)."""


class Refused(StorageError):
    """S3 answered that the location cannot be used (no such bucket, access denied), or a local
    path is not a writable directory: the caller's location is wrong, and a retry will not help."""


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise StorageError(f"{uri}: not an s3://bucket/key URI")
    return bucket, key


def join(base: str, *parts: str) -> str:
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


@functools.lru_cache(maxsize=1)
def make_s3_client():
    """The one S3 client (boto3 clients are thread-safe; the upload thread shares it)."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    # Standard retries ride out throttling and brief network loss during a long upload; one
    # pooled connection for every part that can be in flight at once (see upload_files).
    return boto3.client(
        "s3", endpoint_url=endpoint,
        config=Config(retries={"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS},
                      connect_timeout=S3_CONNECT_TIMEOUT_SECONDS, read_timeout=S3_READ_TIMEOUT_SECONDS,
                      max_pool_connections=max(10, UPLOAD_FILES_AT_ONCE * UPLOAD_PART_CONCURRENCY)),
    )


@functools.lru_cache(maxsize=1)
def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=UPLOAD_PART_BYTES, multipart_chunksize=UPLOAD_PART_BYTES,
                          max_concurrency=UPLOAD_PART_CONCURRENCY)


def _describe(exc: BaseException) -> str:
    try:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            return f"{err.get('Code', 'error')}: {err.get('Message') or 'no message'}"
    except ImportError:  # pragma: no cover - boto3 is always installed in the image
        pass
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def s3_error(uri: str, doing: str, exc: BaseException) -> StorageError:
    """The one-line error for a failed S3 call: NotFound when S3 said the key does not exist,
    Refused when it said the bucket does not exist or may not be used (or botocore rejected the
    bucket name itself), a plain StorageError (retryable) for anything else."""
    from botocore.exceptions import ClientError, ParamValidationError

    message = f"{uri}: cannot {doing} ({_describe(exc)})"
    code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
    if code in _NOT_FOUND_CODES:
        return NotFound(message)
    if code in _REFUSED_CODES or isinstance(exc, ParamValidationError):
        return Refused(message)
    return StorageError(message)


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            return make_s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise s3_error(uri, "read", exc) from None
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{uri}: file not found") from None
    except OSError as exc:
        raise StorageError(f"{uri}: cannot read ({exc.strerror or exc})") from None


def write_bytes(uri: str, data: bytes) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            make_s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        except Exception as exc:
            raise s3_error(uri, "write", exc) from None
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_beside(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, never half


def _temporary_beside(path: Path) -> Path:
    """A temporary name next to `path`, unique to this writer: two processes writing the same
    file never share one, so each os.replace publishes a whole file."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def upload_file(local: str | Path, uri: str) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            # Multipart; on failure s3transfer aborts the multipart upload it started.
            make_s3_client().upload_file(str(local), bucket, key, Config=_transfer_config())
        except Exception as exc:
            raise StorageError(f"{uri}: cannot upload ({_describe(exc)})") from None
        return
    dest = Path(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_beside(dest)
    shutil.copyfile(local, tmp)
    os.replace(tmp, dest)


def upload_files(pairs: Iterable[tuple[str | Path, str]], max_workers: int = UPLOAD_FILES_AT_ONCE,
                 upload: Callable[[str | Path, str], None] | None = None) -> None:
    """Upload several (local path, URI) pairs concurrently. Returns only when every upload has
    finished; if any failed, raises the first failure's StorageError (in the order given) after
    the others have finished too, so nothing is still being written when the caller moves on
    (e.g. to the manifest that marks a checkpoint complete, which must come after all of them).
    `upload(local, uri)` replaces `upload_file` for each file (e.g. to retry it)."""
    pairs = list(pairs)
    send = upload or upload_file
    if len(pairs) <= 1 or max_workers <= 1:
        for local, uri in pairs:
            send(local, uri)
        return
    with ThreadPoolExecutor(max_workers=min(max_workers, len(pairs)), thread_name_prefix="upload") as pool:
        futures = [pool.submit(send, local, uri) for local, uri in pairs]
    # Leaving the `with` waited for all of them.
    for (_, uri), future in zip(pairs, futures, strict=True):
        exc = future.exception()
        if exc is not None:
            if isinstance(exc, StorageError):
                raise exc
            raise StorageError(f"{uri}: cannot upload ({_describe(exc)})") from None


def download_file(uri: str, local: str | Path) -> None:
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            make_s3_client().download_file(bucket, key, str(local))
        except Exception as exc:
            raise s3_error(uri, "download", exc) from None
        return
    try:
        shutil.copyfile(uri, local)
    except FileNotFoundError:
        raise NotFound(f"{uri}: file not found") from None
    except OSError as exc:
        raise StorageError(f"{uri}: cannot read ({exc.strerror or exc})") from None


def list_files(prefix_uri: str) -> list[str]:
    """Relative paths of all files under a prefix/directory (sorted; empty if none)."""
    if is_s3(prefix_uri):
        bucket, key = split_s3(prefix_uri)
        prefix = key.rstrip("/") + "/" if key else ""
        out: list[str] = []
        try:
            for page in make_s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                out.extend(obj["Key"][len(prefix):] for obj in page.get("Contents", []))
        except Exception as exc:
            raise StorageError(f"{prefix_uri}: cannot list ({_describe(exc)})") from None
        return sorted(out)
    root = Path(prefix_uri)
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def list_objects(prefix_uri: str) -> list[tuple[str, int, str]]:
    """(relative path, size, version) of every file under a prefix/directory, sorted; the
    version is the S3 ETag, or a local file's modification time in nanoseconds."""
    if is_s3(prefix_uri):
        bucket, key = split_s3(prefix_uri)
        prefix = key.rstrip("/") + "/" if key else ""
        out: list[tuple[str, int, str]] = []
        try:
            for page in make_s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                out.extend((obj["Key"][len(prefix):], int(obj["Size"]), str(obj["ETag"]).strip('"'))
                           for obj in page.get("Contents", []))
        except Exception as exc:
            raise StorageError(f"{prefix_uri}: cannot list ({_describe(exc)})") from None
        return sorted(out)
    root = Path(prefix_uri)
    return sorted((str(p.relative_to(root)), (st := p.stat()).st_size, str(st.st_mtime_ns))
                  for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def stat(uri: str) -> tuple[int, str]:
    """(size, version) of one object or file (see list_objects); NotFound when it is absent. On
    S3 this is a GET whose body is not read, so a missing key reads as the same error a read gives."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            response = make_s3_client().get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise s3_error(uri, "read", exc) from None
        response["Body"].close()
        return int(response["ContentLength"]), str(response["ETag"]).strip('"')
    try:
        st = Path(uri).stat()
    except FileNotFoundError:
        raise NotFound(f"{uri}: file not found") from None
    except OSError as exc:
        raise StorageError(f"{uri}: cannot read ({exc.strerror or exc})") from None
    return st.st_size, str(st.st_mtime_ns)


def delete(uri: str) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            make_s3_client().delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise s3_error(uri, "delete", exc) from None
        return
    Path(uri).unlink(missing_ok=True)


def delete_tree(prefix_uri: str, first: str | None = None) -> None:
    """Delete everything under a prefix; `first` (e.g. the manifest) goes before the rest, so
    an interrupted delete leaves something that is recognisably incomplete."""
    files = list_files(prefix_uri)
    if first in files:
        files.remove(first)
        files.insert(0, first)
    for rel in files:
        delete(join(prefix_uri, rel))
    if not is_s3(prefix_uri):
        shutil.rmtree(prefix_uri, ignore_errors=True)


def check_writable(uri: str) -> None:
    """Raise Refused unless `uri` can take files, StorageError when S3 cannot say (throttling, a
    5xx, the network): for s3://, a multipart upload is started under it and aborted (the bucket
    exists and this role may write there); a local path must be a directory, or not exist yet
    under a writable directory. Creates nothing locally. The error names `uri`."""
    if is_s3(uri):
        _probe_s3_write(uri, join(uri, f".write-probe-{uuid.uuid4().hex[:12]}"))
        return
    path = Path(uri)
    if path.exists() and not path.is_dir():
        raise Refused(f"{uri}: not a directory")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise Refused(f"{uri}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise Refused(f"{uri}: {existing} is not writable")


def _probe_s3_write(uri: str, probe: str) -> None:
    """Start a multipart upload at `probe` and abort it: it needs the same s3:PutObject (and KMS
    data key) as a real write, but no s3:DeleteObject, and leaves no object, version or delete
    marker in a versioned bucket (the job roles may not delete under runs/). Errors name `uri`,
    the location the user gave, sorted by `s3_error`."""
    bucket, key = split_s3(probe)
    client = make_s3_client()
    try:
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    except Exception as exc:
        raise s3_error(uri, "write", exc) from None
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception as exc:
        raise s3_error(uri, "abort the write probe's upload", exc) from None


def read_json(uri: str) -> dict[str, Any] | None:
    """The JSON object at `uri`; None when absent or not a JSON object (StorageError if it cannot be
    read): the records a later step rewrites whole (manifests, partial records)."""
    try:
        raw = read_bytes(uri)
    except NotFound:
        return None
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None
