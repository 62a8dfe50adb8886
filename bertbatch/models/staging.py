"""Staged models: base models copied to s3://<artifacts>/models/<name>/ from the user's machine,
because jobs cannot reach a model hub (the job subnets have no internet route).

A model is staged when its manifest (`layout.MODEL_MANIFEST`, written last) exists: an import
interrupted half-way leaves none and is not staged. Every uploaded object carries its sha256
as metadata, so importing the same files again uploads nothing.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3.exceptions
import botocore.exceptions

from bertbatch_contract import discovery, layout

from ..core.aws_clients import error_code, is_not_found, one_line
from ..core.errors import BertBatchError
from ..core.session import Session
from ..runs.artifacts import human_size, read_json_object
from ..ui.progress_view import TransferView

# A staged name: one S3 path segment. A hub id "org/name" is staged as "org--name".
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
NAME_RULE = "letters, digits, '.', '_' and '-', at most 96, starting with a letter or digit"
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
PASS_THROUGH = ("s3://",)  # models a job loads without staging
# random:* models need --vocab PATH, a file on this machine that no job parameter carries.
RANDOM_REFUSAL = ("random:* models are built on this machine for tests and benchmarks: use bertbatch local, "
                  "or stage a model with bertbatch models import DIR")
SHA256_METADATA = "sha256"
CORRUPT = "corrupt"  # read_manifest's key for a manifest it could not read

CONFIG_FILE = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model", "vocab.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
# From a hub repository: config, tokenizer and PyTorch weights only (not TF, Flax, ONNX, Core ML).
HUB_FILES = ("*.json", "*.txt", "*.model")
HUB_WEIGHTS = (("*.safetensors",), ("*.bin",))  # safetensors when the repository has them


def check_name(name: str, *, what: str = "--name") -> str:
    if ".." in name or not NAME.fullmatch(name):
        raise BertBatchError(f"{what} {name!r}: a model name is {NAME_RULE}")
    return name


staged_name = layout.staged_model_name  # one rule for the CLI, the job definitions and the container


# --- the files of a model directory ---------------------------------------------------------------
@dataclass(frozen=True)
class ModelFile:
    path: str  # relative, with '/'
    local: Path
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):  # .cache/, .git/
            yield path


def check_directory(directory: Path) -> list[ModelFile]:
    """The files to upload; BertBatchError naming what is missing if this is not a model with its
    tokenizer (checked before anything is uploaded)."""
    if not directory.is_dir():
        raise BertBatchError(f"{directory}: no such directory")
    config = directory / CONFIG_FILE
    if not config.is_file():
        raise BertBatchError(f"{directory}: no {CONFIG_FILE}: not a model directory")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BertBatchError(f"{config}: not valid JSON ({exc})") from None
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise BertBatchError(f"{directory}: no tokenizer files (one of {', '.join(TOKENIZER_FILES)})")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in directory.iterdir() if p.is_file()):
        raise BertBatchError(f"{directory}: no model weights (*.safetensors or *.bin)")
    return [ModelFile(path=p.relative_to(directory).as_posix(), local=p, size=p.stat().st_size, sha256=_sha256(p))
            for p in _walk(directory)]


def download_from_hub(model: str) -> Path:
    """A hub model's config, tokenizer and weights in the local Hugging Face cache."""
    from huggingface_hub import snapshot_download  # heavy, and only this command needs it

    try:
        path = Path(snapshot_download(repo_id=model, allow_patterns=[*HUB_FILES, *HUB_WEIGHTS[0]]))
        if not any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir() if p.is_file()):
            path = Path(snapshot_download(repo_id=model, allow_patterns=[*HUB_FILES, *HUB_WEIGHTS[1]]))
    except Exception as exc:  # the hub's errors (not found, gated, offline) have no common base
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BertBatchError(f"cannot download {model!r} from the Hugging Face hub: {first}") from None
    return path


# --- S3 ---------------------------------------------------------------------------------------
def read_manifest(s3: Any, bucket: str, name: str) -> dict[str, Any] | None:
    """The staged model's manifest, None when there is none. One that is not a JSON object is
    {CORRUPT: '<uri>: <reason>'} (`manifest_problem`): listed as corrupt, refused by submit,
    replaced by `models import --replace`."""
    key = layout.model_manifest_key(name)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    try:
        return read_json_object(body, layout.s3_uri(bucket, key))
    except BertBatchError as exc:
        return {CORRUPT: exc.message}


def manifest_problem(manifest: dict[str, Any] | None) -> str | None:
    """'<uri>: <reason>' of a manifest `read_manifest` could not read, else None."""
    return str(manifest[CORRUPT]) if manifest and CORRUPT in manifest else None


def refuse_corrupt(model: str, name: str, manifest: dict[str, Any] | None) -> None:
    problem = manifest_problem(manifest)
    if problem is not None:
        raise BertBatchError(f"--model {model}: staged model {name!r} has a corrupt manifest, {problem}: "
                             f"import it again (bertbatch models import SOURCE --name {name} --replace)")


def _stored_sha256(s3: Any, bucket: str, key: str) -> str | None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return (head.get("Metadata") or {}).get(SHA256_METADATA)


def manifest_of(name: str, source: str, files: list[ModelFile], now: _dt.datetime | None = None) -> dict[str, Any]:
    created = (now or _dt.datetime.now(_dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"format": layout.MODEL_MANIFEST_FORMAT, "name": name, "source": source, "created": created,
            "total_bytes": sum(f.size for f in files), "files": [f.as_dict() for f in files]}


@dataclass
class Imported:
    name: str
    uri: str
    uploaded: int  # files uploaded now
    skipped: int  # files already there with the same sha256
    total_bytes: int
    unchanged: bool  # the same files were staged already: nothing written


def same_files(manifest: dict[str, Any] | None, files: list[ModelFile]) -> bool:
    if not manifest or "files" not in manifest:
        return False
    return sorted((f["path"], f["size"], f["sha256"]) for f in manifest["files"]) == sorted(
        (f.path, f.size, f.sha256) for f in files)


def stage(s3: Any, bucket: str, name: str, source: str, files: list[ModelFile], *, replace: bool = False,
          view: TransferView | None = None, echo: Callable[[str], None] | None = None) -> Imported:
    """Upload `files` to models/<name>/ and write the manifest last."""
    prefix = layout.model_prefix(name)
    uri = layout.s3_uri(bucket, prefix)
    total = sum(f.size for f in files)
    existing = read_manifest(s3, bucket, name)
    if _objects(s3, bucket, prefix + layout.MODEL_VERSIONS_DIR)[:1]:  # staging deletes files it does not know
        raise BertBatchError(f"model {name!r} is a registered model (bertbatch models show {name}): choose another "
                             "--name")
    if same_files(existing, files):
        return Imported(name, uri, 0, len(files), total, unchanged=True)
    if existing is not None and not replace:
        raise BertBatchError(f"model {name!r} is already staged at {uri} with other files "
                             f"(source {existing.get('source', '?')}): pass --replace, or choose another --name")
    if existing is not None:  # not staged while it changes: a job cannot read half of each
        s3.delete_object(Bucket=bucket, Key=layout.model_manifest_key(name))
    uploaded = skipped = 0
    for f in files:
        key = prefix + f.path
        if _stored_sha256(s3, bucket, key) == f.sha256:
            skipped += 1
            continue
        callback = view.callback(f.path) if view is not None else None
        _upload(s3, bucket, key, f, callback, name)
        if view is not None:
            view.done(str(f.local), layout.s3_uri(bucket, key), human_size(f.size))
        uploaded += 1
    keep = {prefix + f.path for f in files}
    for obj in _objects(s3, bucket, prefix):  # files of an earlier version that this one lacks
        if obj["Key"] not in keep and obj["Key"] != layout.model_manifest_key(name):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.put_object(Bucket=bucket, Key=layout.model_manifest_key(name), ContentType="application/json",
                  Body=json.dumps(manifest_of(name, source, files), indent=2).encode())
    return Imported(name, uri, uploaded, skipped, total, unchanged=False)


def _upload(s3: Any, bucket: str, key: str, f: ModelFile, callback: Callable[[int], None] | None, name: str) -> None:
    """One file, its sha256 as metadata; a failure is one line (the manifest is not written, so
    the model is not staged, and importing again uploads only what is missing)."""
    try:
        s3.upload_file(str(f.local), bucket, key, ExtraArgs={"Metadata": {SHA256_METADATA: f.sha256}},
                       Callback=callback)
    except boto3.exceptions.S3UploadFailedError as exc:
        cause = exc.__context__  # boto3 raises it while handling the ClientError
        reason = error_code(cause) if isinstance(cause, botocore.exceptions.ClientError) else one_line(str(exc))
        raise BertBatchError(f"cannot upload {f.local} to {layout.s3_uri(bucket, key)} ({reason}): model {name!r} "
                             "is not staged; run the import again to finish it") from None


def _objects(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(page.get("Contents", []))
    return out


@dataclass(frozen=True)
class StagedModel:
    name: str
    uri: str
    manifest: dict[str, Any] | None  # None: incomplete (no manifest)

    @property
    def state(self) -> str:
        if self.manifest is None:
            return "incomplete"
        return "corrupt" if manifest_problem(self.manifest) else "staged"

    def record(self) -> dict[str, Any]:
        m = self.manifest or {}
        problem = manifest_problem(self.manifest)
        return {"name": self.name, "state": self.state, "uri": self.uri,
                "files": len(m["files"]) if isinstance(m.get("files"), list) else None,
                "size": m.get("total_bytes"), "source": m.get("source"), "imported": m.get("created"),
                "corrupt": [problem] if problem else []}


def list_models(s3: Any, bucket: str) -> list[StagedModel]:
    out: list[StagedModel] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=layout.MODELS_PREFIX,
                                                               Delimiter="/"):
        for cp in page.get("CommonPrefixes", []):
            name = cp["Prefix"][len(layout.MODELS_PREFIX):].rstrip("/")
            out.append(StagedModel(name, layout.s3_uri(bucket, cp["Prefix"]), read_manifest(s3, bucket, name)))
    return sorted(out, key=lambda m: m.name)


# --- submit --model -----------------------------------------------------------------------------
def refuse_random(model: str, flag: str = "--model") -> None:
    if model.startswith("random:"):
        raise BertBatchError(f"{flag} {model}: {RANDOM_REFUSAL}")


def _check_staged_uri(session: Session, uri: str) -> None:
    """A models/<name>/ prefix of this platform's artifacts bucket (the job definitions' default
    model) must be staged: the job would fail at start otherwise."""
    name = layout.staged_model_name_of(uri)
    bucket = session.get(discovery.ARTIFACTS_BUCKET)
    if name is None or not uri.startswith(layout.s3_uri(bucket)):
        return
    manifest = read_manifest(session.client("s3"), bucket, name)
    refuse_corrupt(uri, name, manifest)
    if manifest is None:
        hub_id = name.replace("--", "/")
        raise BertBatchError(f"model {hub_id!r} is not staged and jobs cannot reach the internet: "
                             f"run bertbatch models import {hub_id}")


def resolve(session: Session, model: str) -> str:
    """What a job gets for `model`: a staged name -> its s3:// prefix; NAME@ALIAS / NAME@N (the
    registry) -> the version's run output; s3:// as given; random:* refused; a hub name that is
    not staged -> as given, unless jobs cannot reach the internet."""
    refuse_random(model)
    if model.startswith(PASS_THROUGH):
        _check_staged_uri(session, model)
        return model
    from . import registry

    if registry.is_reference(model):
        store = registry.S3Store(session.client("s3"), session.get(discovery.ARTIFACTS_BUCKET))
        return str(registry.resolve(store, model)["uri"])
    mount = session.deployment.fsx_mount_path
    if mount and model.startswith(mount.rstrip("/") + "/"):  # a model directory on FSx
        return model
    bucket = session.get(discovery.ARTIFACTS_BUCKET)
    name = staged_name(model)
    if NAME.fullmatch(name) and ".." not in name:
        manifest = read_manifest(session.client("s3"), bucket, name)
        refuse_corrupt(model, name, manifest)
        if manifest is not None:
            return layout.s3_uri(bucket, layout.model_prefix(name))
    if session.deployment.values.get(discovery.INTERNET_EGRESS) == "false":
        hint = (f"run bertbatch models import {model}" if HUB_ID.fullmatch(model)
                else "stage it with bertbatch models import")
        raise BertBatchError(f"model {model!r} is not staged and jobs cannot reach the internet: {hint}")
    return model
