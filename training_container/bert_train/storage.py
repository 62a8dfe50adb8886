"""Reading and writing `s3://` URIs and local paths through one small interface.

All S3 access goes through `make_s3_client()`, which honours AWS_ENDPOINT_URL_S3 /
AWS_ENDPOINT_URL (a moto server in tests, a VPC endpoint or MinIO elsewhere). Errors become
`StorageError` with one line that names the URI.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path


class StorageError(Exception):
    """A read or write failed; the message names the URI."""


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
    # Standard retries ride out throttling and brief network loss during a long upload.
    return boto3.client(
        "s3", endpoint_url=endpoint, config=Config(retries={"mode": "standard", "max_attempts": 8})
    )


def _describe(exc: Exception) -> str:
    try:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            return f"{err.get('Code', 'error')}: {err.get('Message') or 'no message'}"
    except ImportError:  # pragma: no cover - boto3 is always installed in the image
        pass
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            return make_s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise StorageError(f"{uri}: cannot read ({_describe(exc)})") from None
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError:
        raise StorageError(f"{uri}: file not found") from None
    except OSError as exc:
        raise StorageError(f"{uri}: cannot read ({exc.strerror or exc})") from None


def write_bytes(uri: str, data: bytes) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            make_s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        except Exception as exc:
            raise StorageError(f"{uri}: cannot write ({_describe(exc)})") from None
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, never half


def upload_file(local: str | Path, uri: str) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            make_s3_client().upload_file(str(local), bucket, key)  # multipart for big files
        except Exception as exc:
            raise StorageError(f"{uri}: cannot upload ({_describe(exc)})") from None
        return
    dest = Path(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(local, tmp)
    os.replace(tmp, dest)


def download_file(uri: str, local: str | Path) -> None:
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            make_s3_client().download_file(bucket, key, str(local))
        except Exception as exc:
            raise StorageError(f"{uri}: cannot download ({_describe(exc)})") from None
        return
    try:
        shutil.copyfile(uri, local)
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


def delete(uri: str) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            make_s3_client().delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise StorageError(f"{uri}: cannot delete ({_describe(exc)})") from None
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
