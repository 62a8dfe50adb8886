"""bertbatch prepare: the container's prepare command from the contract's flags, an estimate
before it starts, a store on this machine; bad flags in the table's words."""

from __future__ import annotations

import json
import re
import shlex
import sys

import pytest

from bertbatch_contract import discovery, layout, store

from .conftest import FIXTURES
from .helpers import one_line_error, stage_model

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
    assert target() != target("--long-text", "head+tail")
    assert target("--long-text", "head+tail").startswith("local-runs/stores/train-")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--local", "--input", TRAIN, "--children", "4"], "--children: --local prepares in one process"),
    (["--local", "--input", TRAIN, "-o", "json"], "prepare --local prints the store's folder, not a record"),
    (["--local", "--input", "s3://b/train.tsv"], "--local takes local paths"),
    (["--local", "--input", "nope.tsv"], "--input nope.tsv: no such file or folder"),
    (["--local", "--input", VOCAB], "unknown file type"),
    (["--local", "--input", TRAIN, "--max-seq-length", "4"], "--max-seq-length 4: must be an integer >= 8"),
    (["--local", "--input", TRAIN, "--workers", "0"], "--workers 0: must be an integer >= 1"),
    (["--local", "--input", TRAIN, "--long-text", "chunk"], "--long-text chunk: must be one of truncate, head+tail"),
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


# --- on the platform: an array job on the prepare queue, then the merge ----------------------------
def shards(platform, prefix: str, count: int) -> list[str]:
    body = (FIXTURES / "sst2" / "train.tsv").read_bytes()
    return [platform.put_dataset(f"{prefix}/part-{i:03d}.tsv", body) for i in range(count)]


@pytest.fixture
def staged(platform):
    return stage_model(platform.s3, platform.artifacts_bucket, "bert-base-uncased")


def test_the_platform_runs_one_child_per_file_then_the_merge(platform, bb, submit_spy, staged):
    shards(platform, "datasets/reviews", 3)
    platform.put_dataset("datasets/reviews/_SUCCESS", b"")  # markers are not data
    r = bb("prepare", "--input", "reviews/", "--max-seq-length", "64", "-o", "json")
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout.strip().splitlines()[-1])
    children, merge = submit_spy
    assert children["jobQueue"] == platform.names[discovery.QUEUE_PREPARE]
    assert children["jobDefinition"] == platform.names[discovery.JOB_DEFINITION_PREPARE]
    assert children["arrayProperties"] == {"size": 3}
    assert merge["dependsOn"] == [{"jobId": record["children_job_id"]}]
    assert "arrayProperties" not in merge
    data = f"s3://{platform.data_bucket}"
    store_uri = record["store"]
    assert store_uri.startswith(f"{data}/{layout.PREPARED_PREFIX}reviews-") and store_uri.endswith("/")
    child_flags = dict(zip(children["containerOverrides"]["command"][1::2],
                           children["containerOverrides"]["command"][2::2], strict=True))
    assert children["containerOverrides"]["command"][0] == store.SUBCOMMAND
    assert child_flags == {"--input": f"{data}/datasets/reviews/", "--output": store_uri, "--model": staged,
                           "--max-seq-length": "64", "--workers": "4", "--num-children": "3"}
    assert merge["containerOverrides"]["command"] == [
        *children["containerOverrides"]["command"][:-2], store.MERGE_FLAG, "--num-children", "3"]
    assert {k: record[k] for k in ("files", "children", "queue")} == {
        "files": 3, "children": 3, "queue": platform.names[discovery.QUEUE_PREPARE]}
    # The estimate comes first, on stderr, with the Spot cost of the CPU environment's types.
    assert re.search(r"Preparing 3 file\(s\), about [0-9.]+ MB of text, in 3 child\(ren\) of 4 vCPUs, 3 at a time: "
                     r"estimated .*, about \$[0-9.]+ of Spot CPU", r.stderr), r.stderr


def test_children_can_be_fewer_than_files_and_one_child_is_a_plain_job(platform, bb, submit_spy, staged):
    shards(platform, "datasets/big", 4)
    assert bb("prepare", "--input", "big/", "--children", "2").exit_code == 0
    assert submit_spy[0]["arrayProperties"] == {"size": 2}
    submit_spy.clear()
    assert bb("prepare", "--input", "big/part-001.tsv").exit_code == 0
    assert "arrayProperties" not in submit_spy[0]  # one file: one child, no array
    assert submit_spy[0]["containerOverrides"]["command"][-2:] == ["--num-children", "1"]


def test_the_same_input_and_settings_name_the_same_store(platform, bb, submit_spy, staged):
    shards(platform, "datasets/r", 1)
    first = json.loads(bb("prepare", "--input", "r/", "-o", "json").stdout)["store"]
    again = json.loads(bb("prepare", "--input", "r/", "--workers", "2", "-o", "json").stdout)["store"]
    other = json.loads(bb("prepare", "--input", "r/", "--max-seq-length", "32", "-o", "json").stdout)["store"]
    assert first == again != other


@pytest.mark.parametrize(("args", "fragment"), [
    (["--input", "empty/"], "no data files (expected names ending in"),
    (["--input", "r/", "--vocab", VOCAB], "--vocab: a file on this machine that no job can read"),
    (["--input", "r/", "--store", "stores/here"], "--store stores/here: a job writes to S3"),
    (["--input", "r/", "--model", "bert-large-uncased"], "model 'bert-large-uncased' is not staged"),
    (["--input", "r/", "--max-seq-length", "4"], "--max-seq-length 4: must be an integer >= 8"),
])
def test_platform_requests_are_checked_before_anything_is_submitted(platform, bb, submit_spy, staged, args,
                                                                      fragment):
    shards(platform, "datasets/r", 1)
    platform.put_dataset("datasets/empty/README.md", b"not data")
    one_line_error(bb("prepare", *args), fragment)
    assert submit_spy == []


def test_dry_run_prints_both_requests_and_submits_nothing(platform, bb, submit_spy, staged):
    shards(platform, "datasets/r", 2)
    r = bb("prepare", "--input", "r/", "--dry-run")
    assert r.exit_code == 0, r.output
    requests = json.loads(r.stdout)
    assert requests["children"]["arrayProperties"] == {"size": 2}
    assert requests["merge"]["dependsOn"] == [{"jobId": "<children-job-id>"}]
    assert submit_spy == []
