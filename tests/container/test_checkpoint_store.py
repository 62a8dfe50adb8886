"""The checkpoint store on its own: manifest last, incomplete/corrupt skipped, keep the last K."""

from __future__ import annotations

import json
import logging

from bert_train.checkpoint import MANIFEST, CheckpointStore, step_dir


def _write(payload: bytes):
    def write(directory):
        (directory / "model.safetensors").write_bytes(payload)
        (directory / "trainer_state.pt").write_bytes(payload[::-1])
    return write


def test_manifest_keep_and_skip(tmp_path, caplog):
    root = tmp_path / "ckpt"
    done = []
    store = CheckpointStore(str(root), tmp_path / "staging", keep=2, run_id="r",
                            on_complete=lambda s, sec: done.append(s))
    for step in (10, 20, 30):
        store.save(step, _write(f"weights {step}".encode()))
    store.close()
    assert done == [10, 20, 30]
    # only the newest two survive; each has a manifest that lists its files
    assert sorted(p.name for p in root.iterdir()) == [step_dir(20), step_dir(30)]
    manifest = json.loads((root / step_dir(30) / MANIFEST).read_text())
    assert manifest["step"] == 30 and set(manifest["files"]) == {"model.safetensors", "trainer_state.pt"}

    # newest is corrupt -> the previous one is used
    (root / step_dir(30) / "model.safetensors").write_bytes(b"weights 3X")
    with caplog.at_level(logging.WARNING, "bert_train"):
        found = [s for s, _ in store.candidates(tmp_path / "scratch")]
    assert found == [20]
    assert "skipping checkpoint step-000000030: corrupt (model.safetensors does not match its sha256)" in caplog.text

    # a checkpoint without a manifest (upload cut off) is incomplete
    (root / step_dir(40)).mkdir()
    (root / step_dir(40) / "model.safetensors").write_bytes(b"partial")
    caplog.clear()
    with caplog.at_level(logging.WARNING, "bert_train"):
        assert [s for s, _ in store.candidates(tmp_path / "scratch")] == [20]
    assert "skipping checkpoint step-000000040: incomplete (no manifest)" in caplog.text


def test_sha256_computed_while_writing(tmp_path, monkeypatch):
    import hashlib

    import torch

    from bert_train import checkpoint as ckpt

    from bert_train.train import _torch_bytes

    state = {"w": torch.arange(300_000, dtype=torch.float32), "step": 7}  # > 1 MB
    entry = ckpt.write_hashed(tmp_path / "state.pt", _torch_bytes(state))
    data = (tmp_path / "state.pt").read_bytes()
    assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 7

    # the store takes the digests from write_files and does not read the files back for them
    def write(directory):
        return {"model.safetensors": ckpt.write_hashed(directory / "model.safetensors", b"w" * 100),
                "trainer_state.pt": ckpt.write_hashed(directory / "trainer_state.pt", _torch_bytes(state))}

    def no_rereading(path):
        raise AssertionError(f"{path.name} was read back to hash it")

    root = tmp_path / "ckpt"
    store = CheckpointStore(str(root), tmp_path / "staging", keep=2, run_id="r")
    monkeypatch.setattr(ckpt, "_sha256", no_rereading)
    store.save(5, write, wait=True)
    monkeypatch.undo()
    manifest = json.loads((root / step_dir(5) / MANIFEST).read_text())
    assert manifest["files"]["model.safetensors"] == {"bytes": 100, "sha256": hashlib.sha256(b"w" * 100).hexdigest()}
    assert [s for s, _ in store.candidates(tmp_path / "scratch")] == [5]  # verified on load by reading
    (root / step_dir(5) / "model.safetensors").write_bytes(b"w" * 99 + b"x")
    assert [s for s, _ in store.candidates(tmp_path / "scratch")] == []
    store.close()


def _recording_uploads(monkeypatch, fail: str | None = None):
    """Wrap storage.upload_file / write_bytes: record when each upload starts and ends and when
    the manifest is written; uploads are slowed so that they overlap if run concurrently."""
    import threading
    import time

    from bert_train import storage

    events: list[tuple[float, str, str]] = []
    lock = threading.Lock()
    real_upload, real_write = storage.upload_file, storage.write_bytes

    def upload_file(local, uri):
        name = uri.rsplit("/", 1)[1]
        with lock:
            events.append((time.monotonic(), "start", name))
        time.sleep(0.6 if name == "model.safetensors" else 0.2)  # the first file is the slowest
        try:
            if name == fail:
                raise storage.StorageError(f"{uri}: cannot upload (injected)")
            real_upload(local, uri)
        finally:
            with lock:
                events.append((time.monotonic(), "end", name))

    def write_bytes(uri, data):
        if uri.endswith("/" + MANIFEST):
            with lock:
                events.append((time.monotonic(), "manifest", uri.rsplit("/", 1)[1]))
        real_write(uri, data)

    monkeypatch.setattr(storage, "upload_file", upload_file)
    monkeypatch.setattr(storage, "write_bytes", write_bytes)
    return events


def _three_files(directory):
    for name in ("model.safetensors", "optimizer.pt", "trainer_state.pt"):
        (directory / name).write_bytes(name.encode() * 100)


def _max_in_flight(events) -> int:
    n = peak = 0
    for _, kind, _ in sorted(events):
        n += {"start": 1, "end": -1}.get(kind, 0)
        peak = max(peak, n)
    return peak


def test_s3_uploads_concurrent_manifest_last(moto_s3, tmp_path, monkeypatch):
    import boto3

    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket="ckpt-bucket")
    events = _recording_uploads(monkeypatch)
    store = CheckpointStore("s3://ckpt-bucket/run", tmp_path / "staging", keep=2, run_id="r")
    store.save(10, _three_files, wait=True)  # waited for (the SIGTERM checkpoint): concurrently
    assert _max_in_flight(events) > 1  # the files went up at the same time
    manifest_at = [t for t, kind, _ in events if kind == "manifest"]
    ends = [t for t, kind, _ in events if kind == "end"]
    assert len(manifest_at) == 1 and len(ends) == 3
    assert manifest_at[0] > max(ends)  # ... and the manifest only after every one of them
    assert [s for s, _ in store.candidates(tmp_path / "scratch")] == [10]
    # a background checkpoint (training goes on): one file at a time, manifest still last
    events.clear()
    store.save(20, _three_files)
    store.wait()
    assert _max_in_flight(events) == 1
    assert [kind for _, kind, _ in sorted(events)][-1] == "manifest"
    assert [s for s, _ in store.candidates(tmp_path / "scratch")] == [20, 10]
    store.close()


def test_s3_failed_upload_leaves_no_manifest(moto_s3, tmp_path, monkeypatch, caplog):
    import time

    import boto3
    import pytest

    from bert_train import storage

    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket="ckpt-bucket")
    events = _recording_uploads(monkeypatch, fail="optimizer.pt")
    store = CheckpointStore("s3://ckpt-bucket/run", tmp_path / "staging", keep=2, run_id="r")
    with pytest.raises(storage.StorageError, match="optimizer.pt: cannot upload"):
        store.save(10, _three_files, wait=True)  # waited for: the files go up concurrently
    raised_at = time.monotonic()
    assert not [e for e in events if e[1] == "manifest"]
    # the error surfaced only once the other uploads (the slow weights too) had finished
    assert sorted(name for _, kind, name in events if kind == "end") == ["model.safetensors", "optimizer.pt",
                                                                          "trainer_state.pt"]
    assert max(t for t, kind, _ in events if kind == "end") <= raised_at
    assert MANIFEST not in {rel.rsplit("/", 1)[-1] for rel in storage.list_files("s3://ckpt-bucket/run")}
    with caplog.at_level(logging.WARNING, "bert_train"):
        assert [s for s, _ in store.candidates(tmp_path / "scratch")] == []
    assert "skipping checkpoint step-000000010: incomplete (no manifest)" in caplog.text
    store.close()
