"""The throughput benchmark's core (run_glue defaults, the tuned Trainer, the container) and the GPU
script's smoke mode run end to end on the tiny shape and the repo sample.

Structure and padding only: no timing assertion (timings belong in bench/results/, not in tests).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from bertbatch_contract.naming import Naming
from bertbatch_contract.tags import TAG_TEAM
from platform_constructs.batch_compute import QUEUE_MULTI_NODE
from platform_constructs.job_definitions import MULTI_NODE, OPEN_NODE_RANGE
from tests.conftest import FIXTURES, REPO


@pytest.mark.slow
def test_throughput_compare_tiny_on_the_repo_sample():
    from bench import throughput

    data = {"train": str(FIXTURES / "sst2" / "train.tsv"), "eval": str(FIXTURES / "sst2" / "dev.tsv"),
            "vocab": str(FIXTURES / "vocab.txt"), "source": "repo sample"}
    r = throughput.compare(shape="tiny", steps=4, batch_size=16, eval_rows=32, train_rows=400, threads=1, data=data)

    assert r["settings"]["shape"] == "tiny" and r["settings"]["steps"] == 4 and r["settings"]["eval_rows"] == 32
    assert r["same_initial_weights"] is True
    for side in ("baseline", "tuned", "contender"):
        s = r[side]
        assert s["steps"] == 4 and s["samples"] == 64
        for key in ("samples_per_second", "tokens_per_second", "padding_fraction", "peak_rss_mb", "eval_accuracy"):
            assert s[key] is not None, (side, key)
        assert 0 <= s["eval_accuracy"] <= 1
        assert s["real_tokens"] <= s["computed_tokens"]
    # The baseline pads every example to 128 tokens; the container pads each batch to its longest.
    assert r["baseline"]["computed_tokens"] == 4 * 16 * 128
    # The tuned Trainer and the container pad each batch to its longest.
    for side in ("tuned", "contender"):
        assert r[side]["computed_tokens"] < r["baseline"]["computed_tokens"]
        assert r[side]["padding_fraction"] < r["baseline"]["padding_fraction"]
    assert r["contender"]["unpadded"] is False
    # The tuned Trainer takes the precision the container's `auto` picks on this hardware.
    assert r["tuned"]["precision"] == r["contender"]["precision"]
    for ratios in (r["ratio"], r["ratio_vs_tuned"]):
        assert set(ratios) >= {"samples_per_second", "tokens_per_second", "peak_rss"}


@pytest.mark.slow
def test_the_stock_step_side_runs_the_container_without_its_step_work():
    """The A/B side: the container with transformers' forward, torch's dropout, dense embedding
    rows, clip_grad_norm_ and a window of 50 batches, in its own process."""
    from bench import throughput

    data = {"train": str(FIXTURES / "sst2" / "train.tsv"), "eval": str(FIXTURES / "sst2" / "dev.tsv"),
            "vocab": str(FIXTURES / "vocab.txt"), "source": "repo sample"}
    r = throughput.compare(shape="tiny", steps=3, batch_size=16, eval_rows=32, train_rows=400, threads=1, data=data,
                           sides=("contender_stock", "contender"))
    stock, contender = r["contender_stock"], r["contender"]
    assert stock["stock_step"] is True and contender["stock_step"] is False
    assert "window 50 batches" in stock["what"] and "window 500 batches" in contender["what"]
    assert stock["steps"] == contender["steps"] == 3 and stock["initial_weights"] == contender["initial_weights"]
    assert set(r["ratio_vs_stock_step"]) >= {"samples_per_second", "tokens_per_second"}


def test_model_flops_count_the_encoder_parameters_of_the_real_model():
    from transformers import BertConfig, BertForSequenceClassification

    from bench import gpu

    dims = {"layers": 3, "hidden": 64, "intermediate": 96}
    model = BertForSequenceClassification(BertConfig(num_hidden_layers=3, hidden_size=64, intermediate_size=96,
                                                     num_attention_heads=4, vocab_size=100))
    counted = sum(p.numel() for p in [*model.bert.encoder.parameters(), *model.bert.pooler.parameters()])
    assert gpu.non_embedding_parameters(**dims) == counted
    assert gpu.non_embedding_parameters(12, 768, 3072) == 85_645_056  # BERT-base without its embeddings
    assert gpu.training_flops_per_sample(10, **dims) == 6 * counted * 10 + 12 * 3 * 64 * 10**2
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0 and gpu.peak_tflops("NVIDIA A10G") == 125.0
    assert gpu.peak_tflops("Some Other GPU") is None


@pytest.mark.slow
def test_gpu_script_smoke_mode_runs_on_cpu(tmp_path, monkeypatch):
    from bench import common, gpu

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    r = gpu.main(["--smoke", "--steps", "2"])
    assert r["settings"]["smoke"] is True and r["settings"]["steps"] == 2
    for side in ("tuned", "contender"):
        assert r[side]["steps"] == 2 and r[side]["model_tflops_per_second"] > 0
    # Both sequence lengths, each with both sides and their ratios; the longer on joined rows.
    assert list(r["by_max_seq_length"]) == ["64", "128"]
    for one in r["by_max_seq_length"].values():
        assert one["tuned"]["model_tflops_per_second"] > 0 and one["contender"]["model_tflops_per_second"] > 0
        assert set(one["ratio_vs_tuned"]) >= {"samples_per_second", "tokens_per_second"}
    assert r["by_max_seq_length"]["128"]["settings"]["max_seq_length"] == 128
    assert list(tmp_path.glob("quick/gpu-*.json"))


def test_joined_rows_keep_labels_and_reach_the_word_count(tmp_path):
    from bench import gpu

    source = tmp_path / "rows.tsv"
    source.write_text("sentence\tlabel\na b c\t1\nd e\t1\nf g h\t1\ni\t0\nj k\t0\n", encoding="utf-8")
    joined = (tmp_path / "joined.tsv")
    gpu.join_rows(str(source), joined, words=4)
    assert joined.read_text(encoding="utf-8").splitlines() == [
        "sentence\tlabel", "a b c d e\t1", "f g h\t1", "i j k\t0"]


def gpu_result(device: str = "NVIDIA L4", **settings) -> dict:
    """What bench.gpu writes, cut to what --record reads (a hand-made measurement)."""
    return {
        "benchmark": "gpu-throughput",
        "machine": {"date_utc": "2026-12-02T09:30:00Z"},
        "settings": {"device": device, "smoke": False, "batch_size": 32, "max_seq_length": 128, **settings},
        "contender": {"samples": 12800, "computed_tokens": 256000, "computed_tokens_per_second": 61234.5,
                      "tokens_per_second": 58000.0, "samples_per_second": 3061.7, "padding_fraction": 0.05,
                      "precision": "bf16"},
    }


@pytest.mark.parametrize(("device", "gpu_class"), [
    ("NVIDIA A10G", "A10G"), ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"), ("NVIDIA A100-SXM4-40GB", "A100"),
    ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H200", "H200"),
    ("NVIDIA H100 PCIe", None), ("NVIDIA H200 NVL", None), ("Tesla T4", None),
])
def test_gpu_names_map_to_the_throughput_tables_classes(device, gpu_class):
    from bench import gpu

    assert gpu.gpu_class(device) == gpu_class


def test_record_writes_the_measured_tokens_per_second_into_a_copy_of_the_table(tmp_path):
    import json

    from click.testing import CliRunner

    from bench import gpu
    from bertbatch.cli import cli

    shipped = gpu.TABLE.read_bytes()
    table = tmp_path / "gpu_throughput.json"
    table.write_bytes(shipped)
    result = tmp_path / "gpu-nvidia-l4.json"
    result.write_text(json.dumps(gpu_result()))

    entry = gpu.main(["--record", str(result), "--table", str(table)])

    assert gpu.TABLE.read_bytes() == shipped  # the committed table is untouched
    written = json.loads(table.read_text())
    before = json.loads(shipped)
    assert entry["gpu"] == "L4" and written["gpus"]["L4"]["tokens_per_second"] == 61234  # computed tokens/s
    assert written["gpus"]["L4"]["derived_estimate"] is False
    assert written["gpus"]["L4"]["source"] == "gpu-nvidia-l4.json, 2026-12-02"
    assert {g: r for g, r in written["gpus"].items() if g != "L4"} == {g: r for g, r in before["gpus"].items()
                                                                       if g != "L4"}
    assert {k: v for k, v in written.items() if k != "gpus"} == {k: v for k, v in before.items() if k != "gpus"}

    r = CliRunner().invoke(cli, ["estimate", "--rows", "1000", "--throughput", str(table), "--offline",
                                 "--instance-type", "g6.xlarge", "--instance-type", "g5.xlarge"])
    assert r.exit_code == 0, r.output
    assert "measured: L4 (gpu-nvidia-l4.json, 2026-12-02)" in r.output and "derived estimates for A10G" in r.output
    r = CliRunner().invoke(cli, ["estimate", "--rows", "1000", "--throughput", str(table), "--offline", "-o", "json"])
    figures = {o["gpu"]: o["throughput_estimate"] for o in json.loads(r.output)["options"]}
    assert figures["L4"] is False and figures["A10G"] is True


@pytest.mark.parametrize(("result", "args", "fragment"), [
    (gpu_result(smoke=True), [], "a --smoke or CPU run"),
    (gpu_result("cpu"), [], "a --smoke or CPU run"),
    (gpu_result("NVIDIA H100 PCIe"), [], "maps to no GPU class"),
    (gpu_result("NVIDIA H100 PCIe"), ["--gpu-class", "B200"], "GPU class B200 is not in"),
    ({"benchmark": "throughput"}, [], "is not a bench.gpu result"),
])
def test_record_refuses_what_is_no_gpu_measurement_of_a_known_class(tmp_path, result, args, fragment):
    import json

    from bench import gpu

    table = tmp_path / "gpu_throughput.json"
    table.write_bytes(gpu.TABLE.read_bytes())
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result))
    with pytest.raises(SystemExit) as exc:
        gpu.main(["--record", str(path), "--table", str(table), *args])
    assert fragment in str(exc.value) and "\n" not in str(exc.value)
    assert table.read_bytes() == gpu.TABLE.read_bytes()


def test_record_with_an_explicit_class(tmp_path):
    import json

    from bench import gpu

    table = tmp_path / "gpu_throughput.json"
    table.write_bytes(gpu.TABLE.read_bytes())
    path = tmp_path / "result.json"
    path.write_text(json.dumps(gpu_result("NVIDIA H100 PCIe")))
    assert gpu.record(path, table, gpu="H100")["gpu"] == "H100"
    assert json.loads(table.read_text())["gpus"]["H100"]["derived_estimate"] is False


@pytest.mark.slow
def test_data_scale_runs_end_to_end_on_tiny_sizes():
    """Generated shards, prepare against the plain loop, the trainer on a store and on the raw
    file, one prediction shard child: every number is there (none is judged: timings are noisy)."""
    from bench import common, data_scale

    r = data_scale.run(sizes=[0.1, 0.3], predict_mb=0.3, predict_rows=500, workers=1, steps=2,
                       data=common.find_data(prefer_shared=False))
    for name in ("0.1MB", "0.3MB"):
        prep = r["prepare"][name]
        assert prep["rows"] > 0 and prep["mb_per_second_per_core"] > 0 and prep["shards"] == 8
        assert r["train"][name]["store"]["peak_rss_mb"] > 0
        assert r["train"][name]["store"]["first_line_seconds"] is not None
        assert r["predict"][name]["rows"] > 0 and r["predict"][name]["rows_per_second"] > 0
    assert r["train"]["0.1MB"]["raw_file_in_memory"]["first_line_seconds"] is not None
    assert r["prepare"]["plain_tokenizer_loop"]["rows"] == r["prepare"]["0.1MB"]["rows"]
    assert r["prepare"]["0.1MB one worker"]["workers"] == 1
    assert r["predict"]["0.3MB"]["shards"] > r["predict"]["0.1MB"]["shards"] >= 1
    assert set(r["ratios"]) == {"train_peak_rss_big_vs_small", "train_first_step_big_vs_small",
                                "train_peak_rss_store_vs_in_memory", "predict_peak_rss_big_vs_small",
                                "prepare_per_core_vs_plain_loop"}
    assert all(v is not None and v > 0 for v in r["ratios"].values())


def test_generated_data_has_the_size_asked_for(tmp_path):
    from bench import data_scale

    info = data_scale.generate(tmp_path / "d", 0.05, ["a short sentence", "another one"], shards=3)
    files = sorted((tmp_path / "d").glob("*.jsonl"))
    assert len(files) == 3 and info["shards"] == 3
    size = sum(f.stat().st_size for f in files)
    assert 50_000 <= size < 50_000 + 200 and round(size / 1e6, 1) == info["megabytes"]
    import json

    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(rows) == info["rows"] and {r["label"] for r in rows} <= {0, 1}


NCCL_SCRIPT = REPO / "bench" / "nccl.sh"


def _nccl(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BERT_BATCH_", "AWS_"))}
    return subprocess.run([str(NCCL_SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_nccl_script_smoke_mode_sweeps_all_reduce_over_two_cpu_processes():
    proc = _nccl("--smoke")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [row["bytes"] for row in rows] == [4096 * 2**i for i in range(9)]  # 4 KiB to 1 MiB
    assert {(row["backend"], row["world_size"]) for row in rows} == {("gloo", 2)}
    for row in rows:  # two ranks: each link carries the data once (2 x (2-1)/2)
        algorithm_bandwidth = row["bytes"] / row["seconds"] / 1e9
        assert row["busbw_gbps"] == pytest.approx(row["algbw_gbps"]) == pytest.approx(algorithm_bandwidth)


def test_nccl_script_submits_allreduce_bench_to_the_deployed_multi_node_queue():
    proc = _nccl("--dry-run", "--profile", "prod", "--nodes", "4", "--team", "nlp")
    assert proc.returncode == 0, proc.stderr
    request = json.loads(proc.stdout)
    naming = Naming(project="bert-batch", profile="prod")
    assert request["jobQueue"] == naming.resource(QUEUE_MULTI_NODE)
    assert request["jobDefinition"] == naming.resource(MULTI_NODE)
    assert request["shareIdentifier"] == "nlp" and request["tags"] == {TAG_TEAM: "nlp"}
    assert request["nodeOverrides"] == {"numNodes": 4, "nodePropertyOverrides": [
        {"targetNodes": OPEN_NODE_RANGE, "containerOverrides": {"command": ["allreduce-bench"]}}]}
    assert request["retryStrategy"] == {"attempts": 1}  # a benchmark is not retried


@pytest.mark.parametrize(("args", "message"), [
    (["--nodes", "1"], "--nodes 1: a bus bandwidth between nodes needs 2 or more"),
    (["--nodes"], "--nodes needs a value"),
    (["--bogus"], "unknown argument --bogus (the usage is at the top of bench/nccl.sh)"),
])
def test_nccl_script_bad_arguments_are_one_line_and_exit_2(args, message):
    proc = _nccl("--dry-run", *args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"bench/nccl.sh: error: {message}\n")
