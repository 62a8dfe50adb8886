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
