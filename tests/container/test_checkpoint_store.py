"""The checkpoint store on its own: manifest last, incomplete/corrupt skipped, keep the last K
verified, attempts that never mix, and an S3 that fails (through the fault-injecting stand-in)."""

from __future__ import annotations

import json
import logging

import boto3
import pytest

from bert_train import storage
from bert_train.checkpoint import MANIFEST, CheckpointStore, step_dir, write_hashed
from bert_train.errors import StoreUnavailable
from bert_train.retries import Waits

from .conftest import FakeClock, slow_s3_failures, stored_file

NO_WAIT = (0.0, 0.0)  # two quick retries: the tests' retry_delays


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
    stored_file(root, 30, "model.safetensors").write_bytes(b"weights 3X")
    with caplog.at_level(logging.WARNING, "bert_train"):
        found = [s for s, _ in store.candidates(tmp_path / "scratch")]
    assert found == [20]
    assert f"skipping checkpoint step-000000030: corrupt ({store.attempt}/model.safetensors does not match " \
           "its sha256)" in caplog.text

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

    state = {"w": torch.arange(300_000, dtype=torch.float32), "step": 7}  # > 1 MB
    entry = ckpt.write_hashed(tmp_path / "state.pt", ckpt.torch_bytes(state))
    data = (tmp_path / "state.pt").read_bytes()
    assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 7

    # the store takes the digests from write_files and does not read the files back for them
    def write(directory):
        return {"model.safetensors": ckpt.write_hashed(directory / "model.safetensors", b"w" * 100),
                "trainer_state.pt": ckpt.write_hashed(directory / "trainer_state.pt", ckpt.torch_bytes(state))}

    def no_rereading(path):
        raise AssertionError(f"{path.name} was read back to hash it")

    root = tmp_path / "ckpt"
    store = CheckpointStore(str(root), tmp_path / "staging", keep=2, run_id="r")
    monkeypatch.setattr(ckpt, "_sha256", no_rereading)
    store.save(5, write, wait=True)
    monkeypatch.undo()
    manifest = json.loads((root / step_dir(5) / MANIFEST).read_text())
    assert manifest["files"]["model.safetensors"] == {"key": f"{store.attempt}/model.safetensors", "bytes": 100,
                                                      "sha256": hashlib.sha256(b"w" * 100).hexdigest()}
    assert [s for s, _ in store.candidates(tmp_path / "scratch")] == [5]  # verified on load by reading
    stored_file(root, 5, "model.safetensors").write_bytes(b"w" * 99 + b"x")
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

    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket="ckpt-bucket")
    events = _recording_uploads(monkeypatch, fail="optimizer.pt")
    store = CheckpointStore("s3://ckpt-bucket/run", tmp_path / "staging", keep=2, run_id="r", retry_delays=())
    with pytest.raises(StoreUnavailable, match="optimizer.pt: cannot upload"):
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


def _payload(text: str):
    def write(directory):
        (directory / "model.safetensors").write_bytes(text.encode() * 50)
    return write


def _s3_store(tmp_path, name: str = "a", **kwargs) -> CheckpointStore:
    options = {"keep": 2, "run_id": "r", "retry_delays": NO_WAIT, **kwargs}
    return CheckpointStore("s3://ckpt-bucket/run", tmp_path / f"staging-{name}", **options)


@pytest.fixture
def bucket(s3_faults, moto_s3):
    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket="ckpt-bucket")
    return s3_faults


def test_failed_upload_is_retried_and_training_goes_on(bucket, tmp_path, caplog):
    # issue 1: a 500 and a reset on the way: retried, the checkpoint arrives
    bucket.fail("PutObject", "step-000000010/", times=1)
    bucket.fail("PutObject", "step-000000010/", times=1, kind="reset")
    store = _s3_store(tmp_path)
    store.save(10, _payload("ten"))
    store.wait()
    assert len(bucket.hits) == 2
    assert [s for s, _ in store.candidates(tmp_path / "scratch")] == [10]

    # every try fails for step 20: logged and kept locally; the next save does not raise, and 30 arrives
    bucket.fail("PutObject", "step-000000020/")
    with caplog.at_level(logging.WARNING, "bert_train"):
        store.save(20, _payload("twenty"))
        store.save(30, _payload("thirty"))
        store.close()
    assert "checkpoint step-000000020 could not be stored" in caplog.text
    assert "training goes on and the next checkpoint tries again" in caplog.text
    assert [s for s, _ in store.candidates(tmp_path / "scratch")] == [30, 10]
    assert not (tmp_path / "staging-a" / step_dir(20)).exists()  # the local copy went once 30 was stored


def test_no_checkpoint_stored_for_too_long_stops_with_the_retryable_error(bucket, tmp_path):
    bucket.fail("PutObject")  # S3 takes nothing
    store = _s3_store(tmp_path, give_up_after=0.0)
    store.save(10, _payload("ten"))  # fails in the background: past the limit at once
    with pytest.raises(StoreUnavailable, match=r"no checkpoint reached s3://ckpt-bucket/run for .* minutes"):
        store.save(20, _payload("twenty"))
    store.close()
    kept = tmp_path / "staging-a" / step_dir(10) / store.attempt / "model.safetensors"
    assert kept.read_bytes() == b"ten" * 50  # the local checkpoint is kept


def test_after_sigterm_no_retry_waits_or_starts_past_the_deadline(bucket, tmp_path, caplog):
    # S3 is down and every request takes 20 s to fail; SIGTERM leaves 50 s
    clock = FakeClock()
    slow_s3_failures(clock, 20.0)
    bucket.fail("PutObject")
    store = _s3_store(tmp_path, retry_delays=(2.0, 10.0, 30.0), waits=Waits(clock=clock, sleep=clock.sleep))
    deadline = clock() + 50.0
    store.stop_within(50.0)
    with caplog.at_level(logging.WARNING, "bert_train"), pytest.raises(StoreUnavailable, match="could not be stored"):
        store.save(10, _payload("ten"), wait=True)
    store.close()
    # a try at 0 s (fails at 20), a 2 s wait, a try at 22 (fails at 42): a 10 s wait and a 20 s try
    # would end past 50
    assert clock.sleeps == [2.0] and len(bucket.hits) == 2
    assert clock() <= deadline
    assert "not retrying: 8 s left before the stop deadline" in caplog.text


def test_a_deadline_already_past_starts_no_upload(bucket, tmp_path):
    clock = FakeClock()
    store = _s3_store(tmp_path, waits=Waits(clock=clock, sleep=clock.sleep))
    store.stop_within(0.0)
    with pytest.raises(StoreUnavailable, match="the time left after the stop signal is spent"):
        store.save(10, _payload("ten"), wait=True)
    store.close()
    assert bucket.hits == [] and clock.sleeps == []


def test_one_s3_request_with_all_its_retries_fits_in_the_sigterm_budget(moto_s3):
    from bertbatch_contract import job

    config = storage.make_s3_client().meta.config
    attempts = config.retries["total_max_attempts"]
    # botocore's standard mode waits up to 2**i s (throttling) before retry i, at most 20 s
    backoff = sum(min(2.0 ** i, 20.0) for i in range(attempts - 1))
    worst = attempts * (config.connect_timeout + config.read_timeout) + backoff
    assert config.retries["mode"] == "standard"
    assert worst <= job.SIGTERM_CHECKPOINT_BUDGET_SECONDS


def _two_checkpoints(tmp_path) -> CheckpointStore:
    store = _s3_store(tmp_path, name="writer")
    store.save(10, _payload("ten"))
    store.save(20, _payload("twenty"))
    store.close()
    return _s3_store(tmp_path, name="reader")


def test_s3_read_errors_on_resume_are_not_taken_for_absence(bucket, tmp_path, caplog):
    reader = _two_checkpoints(tmp_path)
    # issue 2: a 500 on the newest manifest, every time: stop rather than train from scratch over it
    bucket.fail("GetObject", "step-000000020/manifest.json")
    with pytest.raises(StoreUnavailable, match=r"cannot read checkpoint step-000000020 .*InternalError"):
        list(reader.candidates(tmp_path / "scratch"))
    # a reset downloading a file it names, every time: the same
    bucket.clear()
    bucket.fail("GetObject", "step-000000020/attempt-", kind="reset")
    with pytest.raises(StoreUnavailable, match="cannot read checkpoint step-000000020"):
        list(reader.candidates(tmp_path / "scratch"))
    # the listing fails: the same
    bucket.clear()
    bucket.fail("ListObjectsV2")
    with pytest.raises(StoreUnavailable, match="cannot list the checkpoints"):
        list(reader.candidates(tmp_path / "scratch"))
    # a fault that passes: retried, and the newest is used
    bucket.clear()
    bucket.fail("GetObject", "step-000000020/manifest.json", times=2)
    with caplog.at_level(logging.WARNING, "bert_train"):
        assert next(reader.candidates(tmp_path / "scratch"))[0] == 20
    assert "failed (s3://ckpt-bucket/run/step-000000020/manifest.json: cannot read (InternalError" in caplog.text


def test_only_verified_checkpoints_count_toward_keep(tmp_path):
    root = tmp_path / "ckpt"
    earlier = CheckpointStore(str(root), tmp_path / "staging", keep=3, run_id="r")
    for step in (10, 60, 100):
        earlier.save(step, _payload(f"old {step}"))
    earlier.close()
    for step in (10, 60, 100):  # every earlier checkpoint is corrupt
        stored_file(root, step, "model.safetensors").write_bytes(b"garbage")
    fresh = CheckpointStore(str(root), tmp_path / "staging", keep=1, run_id="r")
    assert list(fresh.candidates(tmp_path / "scratch")) == []  # so it starts from scratch...
    fresh.save(50, _payload("new 50"))
    fresh.close()
    # ...and keeps what it wrote: only 10 (older than its newest verified one) is deleted
    assert sorted(p.name for p in root.iterdir()) == [step_dir(50), step_dir(60), step_dir(100)]
    assert [s for s, _ in fresh.candidates(tmp_path / "scratch")] == [50]


WRONG_SHAPES = {
    "a list": "[]",
    "files a list": '{"format": 2, "step": 20, "attempt": "a", "files": []}',
    "entry without a hash": '{"format": 2, "step": 20, "attempt": "a", "files": {"m": {"key": "a/m", "bytes": 1}}}',
    "bytes a string": '{"format": 2, "step": 20, "attempt": "a", "files": {"m": {"key": "a/m", "bytes": "1", '
                      '"sha256": "' + "0" * 64 + '"}}}',
    "key outside its attempt": '{"format": 2, "step": 20, "attempt": "a", "files": {"m": {"key": "../m", "bytes": 1, '
                               '"sha256": "' + "0" * 64 + '"}}}',
    "format true": '{"format": true, "step": 20, "files": {}}',
    "another step": '{"format": 2, "step": 7, "attempt": "a", "files": {}}',
    "not JSON": "{",
}


@pytest.mark.parametrize("manifest", WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_manifest_of_the_wrong_shape_is_skipped(tmp_path, caplog, manifest):
    root = tmp_path / "ckpt"
    store = CheckpointStore(str(root), tmp_path / "staging", keep=3, run_id="r")
    store.save(10, _payload("ten"))
    store.save(20, _payload("twenty"))
    store.close()
    (root / step_dir(20) / MANIFEST).write_text(manifest)
    with caplog.at_level(logging.WARNING, "bert_train"):
        assert [s for s, _ in store.candidates(tmp_path / "scratch")] == [10]
    assert "skipping checkpoint step-000000020: " in caplog.text
    assert any(w in caplog.text for w in ("corrupt manifest", "unknown checkpoint format"))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_attempts_writing_one_step_never_mix(moto_s3, tmp_path, monkeypatch, where):
    """Attempt A uploads its files; attempt B writes the same step from start to end; only then
    does A publish its manifest. The reader must see one whole checkpoint (before: A's manifest
    over B's files, so neither could be used)."""
    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket="ckpt-bucket")
    uri = "s3://ckpt-bucket/run" if where == "s3" else str(tmp_path / "ckpt")
    a = CheckpointStore(uri, tmp_path / "staging-a", keep=2, run_id="r")
    b = CheckpointStore(uri, tmp_path / "staging-b", keep=2, run_id="r")
    real_write = storage.write_bytes
    interleaved = []

    def write_bytes(target, data):
        if target.endswith(MANIFEST) and json.loads(data)["attempt"] == a.attempt and not interleaved:
            interleaved.append(target)
            b.save(10, _payload("attempt B"), wait=True)  # all of B, between A's files and A's manifest
        real_write(target, data)

    monkeypatch.setattr(storage, "write_bytes", write_bytes)
    a.save(10, _payload("attempt A"), wait=True)
    a.close()
    b.close()
    assert interleaved
    reader = CheckpointStore(uri, tmp_path / "staging-r", keep=2, run_id="r")
    found = list(reader.candidates(tmp_path / "scratch"))
    assert [s for s, _ in found] == [10]
    assert (found[0][1] / "model.safetensors").read_bytes() == b"attempt A" * 50  # the last published, whole


def test_a_failed_multipart_upload_is_aborted(bucket, moto_s3, tmp_path, monkeypatch):
    """issue 6: a file that goes up in parts and fails half-way leaves no incomplete upload."""
    monkeypatch.setattr(storage, "UPLOAD_PART_BYTES", 5 * 1024 * 1024)
    storage._transfer_config.cache_clear()
    try:
        bucket.fail("UploadPart")
        store = _s3_store(tmp_path, retry_delays=())

        def big(directory):
            (directory / "model.safetensors").write_bytes(b"w" * (11 * 1024 * 1024))

        with pytest.raises(StoreUnavailable, match="model.safetensors: cannot upload"):
            store.save(10, big, wait=True)
        store.close()
        assert any(h.startswith("UploadPart") for h in bucket.hits)
        s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
        assert s3.list_multipart_uploads(Bucket="ckpt-bucket").get("Uploads", []) == []
    finally:
        storage._transfer_config.cache_clear()


@pytest.mark.parametrize("pruned", ["during the write", "before the manifest"])
def test_a_step_pruned_by_an_overlapping_attempt_is_not_published_and_training_goes_on(tmp_path, caplog, pruned):
    """Two attempts of one run share a local checkpoint location; the one further on prunes the
    step the other is still writing. The slower one must neither crash nor publish a manifest
    naming files that are gone (a corrupt checkpoint), and its next checkpoint must work."""
    import shutil

    root = tmp_path / "ckpt"
    store = CheckpointStore(str(root), tmp_path / "staging", keep=2, run_id="r", retry_delays=NO_WAIT)

    def write_then_get_pruned(directory):
        if pruned == "during the write":
            (directory / "model.safetensors").write_bytes(b"weights")
            shutil.rmtree(directory.parent)  # the other attempt's _prune
            (directory / "trainer_state.pt").write_bytes(b"state")
        else:  # written and hashed, as write_snapshot does, then half of it removed
            digests = {name: write_hashed(directory / name, data)
                       for name, data in (("model.safetensors", b"weights"), ("trainer_state.pt", b"state"))}
            (directory / "trainer_state.pt").unlink()  # the other attempt's rmtree, half-way
            return digests
        return None

    with caplog.at_level(logging.WARNING, "bert_train"):
        store.save(2, write_then_get_pruned)
        store.wait()
    assert not (root / step_dir(2) / MANIFEST).exists()
    assert f"checkpoint {step_dir(2)} could not be stored" in caplog.text
    store.save(4, _write(b"weights 4"), wait=True)
    store.close()
    assert [s for s, _ in store.candidates(tmp_path / "scratch")] == [4]


def test_pruning_never_deletes_the_best_checkpoint(tmp_path):
    root = tmp_path / "ckpt"
    store = CheckpointStore(str(root), tmp_path / "staging", keep=1, run_id="r")
    for step in (10, 20, 30):  # the evaluation at 10 stays the best
        store.save(step, _write(f"weights {step}".encode()), best_step=10)
    store.wait()
    assert sorted(p.name for p in root.iterdir()) == [step_dir(10), step_dir(30)]
    # a new best: the old one goes, once the checkpoint whose state names the new one is stored
    store.save(40, _write(b"weights 40"), best_step=40)
    store.close()
    assert sorted(p.name for p in root.iterdir()) == [step_dir(40)]


def test_a_resumed_attempt_keeps_the_best_checkpoint_of_the_one_before(tmp_path):
    root = tmp_path / "ckpt"
    earlier = CheckpointStore(str(root), tmp_path / "staging", keep=1, run_id="r")
    earlier.save(10, _write(b"weights 10"), best_step=10)
    earlier.save(20, _write(b"weights 20"), best_step=10)
    earlier.close()
    resumed = CheckpointStore(str(root), tmp_path / "staging", keep=1, run_id="r")
    resumed.keep_best(10)  # what the checkpoint it resumed from records
    for step in (30, 40):
        resumed.save(step, _write(f"weights {step}".encode()), best_step=10)
    resumed.close()
    assert sorted(p.name for p in root.iterdir()) == [step_dir(10), step_dir(40)]


def test_fetching_only_the_weights_checks_only_them(tmp_path):
    root = tmp_path / "ckpt"
    store = CheckpointStore(str(root), tmp_path / "staging", keep=2, run_id="r")
    store.save(10, _write(b"weights 10"))
    store.close()
    stored_file(root, 10, "trainer_state.pt").write_bytes(b"not read")  # corrupt, but not asked for
    local = store.fetch(10, tmp_path / "scratch", only=("model.safetensors",))
    assert (local / "model.safetensors").read_bytes() == b"weights 10"
    with pytest.raises(ValueError, match=r"corrupt \(optimizer.pt not in the manifest\)"):
        store.fetch(10, tmp_path / "scratch", only=("optimizer.pt",))
