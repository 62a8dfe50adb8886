"""bertbatch prepare: the container's prepare command from the contract's flags, an estimate
before it starts, a store on this machine; bad flags in the table's words."""

from __future__ import annotations

import json
import shlex
import sys

import pytest

from bertbatch_contract import store

from .conftest import FIXTURES
from .helpers import one_line_error

TRAIN = str(FIXTURES / "sst2" / "train.tsv")
VOCAB = str(FIXTURES / "vocab.txt")


def test_dry_run_is_the_containers_prepare_command(bb, tmp_path):
    r = bb("prepare", "--local", "--input", TRAIN, "--model", "random:tiny", "--vocab", VOCAB,
           "--max-seq-length", "64", "--workers", "2", "--store", tmp_path / "s", "--dry-run")
    assert r.exit_code == 0, r.output
    argv = shlex.split(r.output.strip())
    assert argv[:4] == [sys.executable, "-m", "bert_train", store.SUBCOMMAND]
    assert dict(zip(argv[4::2], argv[5::2], strict=True)) == {
        "--input": TRAIN, "--output": str(tmp_path / "s"), "--model": "random:tiny", "--vocab": VOCAB,
        "--max-seq-length": "64", "--workers": "2"}
    assert {store.BY_NAME[n].flag for n in ("input", "output", "model", "workers")} <= set(argv)


def test_the_default_store_is_keyed_by_input_and_settings(bb):
    def target(*extra: str) -> str:
        r = bb("prepare", "--local", "--input", TRAIN, "--model", "random:tiny", "--vocab", VOCAB, *extra, "--dry-run")
        argv = shlex.split(r.output.strip())
        return argv[argv.index("--output") + 1].replace("\\", "/")

    assert target().startswith("local-runs/stores/train-")
    assert target() == target("--workers", "1")  # how it runs does not change what it makes
    assert target() != target("--max-seq-length", "32")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--input", TRAIN], "pass --local"),
    (["--local", "--input", "s3://b/train.tsv"], "--local takes local paths"),
    (["--local", "--input", "nope.tsv"], "--input nope.tsv: no such file or folder"),
    (["--local", "--input", VOCAB], "unknown file type"),
    (["--local", "--input", TRAIN, "--max-seq-length", "4"], "--max-seq-length 4: must be an integer >= 8"),
    (["--local", "--input", TRAIN, "--workers", "0"], "--workers 0: must be an integer >= 1"),
])
def test_bad_requests_are_one_line(bb, args, fragment):
    one_line_error(bb("prepare", *args), fragment)


def test_a_local_store_with_an_estimate_first(bb, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    lines = (FIXTURES / "sst2" / "train.tsv").read_text().splitlines()
    for i in range(2):
        (folder / f"part-{i}.tsv").write_text("\n".join([lines[0], *lines[1 + i * 100:1 + (i + 1) * 100]]) + "\n")
    r = bb("prepare", "--local", "--input", folder, "--model", "random:tiny", "--vocab", VOCAB, "--workers", "1",
           "--store", tmp_path / "store")
    assert r.exit_code == 0, r.output
    assert "Preparing 2 file(s)" in r.output and "estimated" in r.output
    manifest = json.loads((tmp_path / "store" / store.MANIFEST).read_text())
    assert manifest["rows"] == 200 and len(manifest["shards"]) == 2
