"""estimate: arithmetic checked against figures worked out by hand, and the shipped tables."""

from __future__ import annotations

import json

import pytest

from bertbatch.cost.training_cost import load_table
from bertbatch_contract import discovery, efficiency

from .conftest import FIXTURES
from .helpers import one_line_error

# 12,800 tokens/s = 100 samples/s of 128 tokens (--rows: every row counts as --max-seq-length tokens).
THROUGHPUT = {
    "format": 2,
    "gpus": {"T1": {"tokens_per_second": 12800, "derived_estimate": True}},
    "assumptions": {"multi_gpu_efficiency": 0.8, "startup_minutes": 6, "spot_interruption_overhead": 0.25},
}
# The same table in the format before tokens/s (samples/s at reference_seq_len): converted on load.
THROUGHPUT_FORMAT_1 = {
    "reference_seq_len": 128,
    "gpus": {"T1": {"samples_per_second": 100, "derived_estimate": True}},
    "assumptions": THROUGHPUT["assumptions"],
}
PRICES = {
    "as_of": "2026-01-01",
    "region": "test-region-1",
    "instances": {
        "one.x": {"gpu": "T1", "gpus": 1, "on_demand": 2.0, "spot": 1.0},
        "four.x": {"gpu": "T1", "gpus": 4, "on_demand": 10.0, "spot": 4.0},
    },
}


@pytest.fixture
def tables(tmp_path):
    t, p = tmp_path / "throughput.json", tmp_path / "prices.json"
    t.write_text(json.dumps(THROUGHPUT))
    p.write_text(json.dumps(PRICES))
    return ["--throughput", str(t), "--prices", str(p), "--offline"]  # made-up instance types: no queue has them


def run_json(bb, tables, *args):
    r = bb("estimate", *tables, "--json", *args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    return data, {(o["instance_type"], o["pricing"]): o for o in data["options"]}


def test_hand_computed_single_node(bb, tables):
    # 36,000 rows x 2 epochs = 72,000 samples.
    # one.x:  100 samples/s -> 720 s + 6 min startup = 1,080 s = 0.3 h; On-Demand 0.3 x $2 = $0.60;
    #         Spot 0.3 x 1.25 = 0.375 h x $1 = $0.375.
    # four.x: 100 x 4 GPUs x 0.8 = 320 samples/s -> 225 s + 360 s = 585 s = 0.1625 h; On-Demand $1.625;
    #         Spot 0.203125 h x $4 = $0.8125.
    data, opts = run_json(bb, tables, "--rows", "36000", "--epochs", "2")
    assert opts[("one.x", "on-demand")]["hours"] == pytest.approx(0.3)
    assert opts[("one.x", "on-demand")]["cost"] == pytest.approx(0.60)
    assert opts[("one.x", "spot")]["hours"] == pytest.approx(0.375)
    assert opts[("one.x", "spot")]["cost"] == pytest.approx(0.375)
    assert opts[("four.x", "on-demand")]["samples_per_second"] == pytest.approx(320)
    assert opts[("four.x", "on-demand")]["hours"] == pytest.approx(0.1625)
    assert opts[("four.x", "on-demand")]["cost"] == pytest.approx(1.625)
    assert opts[("four.x", "spot")]["cost"] == pytest.approx(0.8125)
    assert data["choice"]["instance_type"] == "one.x" and data["choice"]["pricing"] == "spot"
    assert data["choice"]["queue"] == discovery.QUEUE_SPOT_FIRST
    assert [o["cost"] for o in data["options"]] == sorted(o["cost"] for o in data["options"])


def test_max_hours_picks_cheapest_fast_enough(bb, tables):
    # within 0.25 h only four.x fits: Spot 0.203 h $0.8125 beats On-Demand 0.1625 h $1.625
    data, _ = run_json(bb, tables, "--rows", "36000", "--epochs", "2", "--max-hours", "0.25")
    assert (data["choice"]["instance_type"], data["choice"]["pricing"]) == ("four.x", "spot")
    # within 0.2 h only four.x On-Demand fits
    data, _ = run_json(bb, tables, "--rows", "36000", "--epochs", "2", "--max-hours", "0.2")
    assert (data["choice"]["instance_type"], data["choice"]["pricing"]) == ("four.x", "on-demand")
    assert data["choice"]["queue"] == discovery.QUEUE_ON_DEMAND


def test_sequence_length_scales_throughput(bb, tables):
    # seq 256 halves throughput: 72,000 / 50 = 1,440 s + 360 s = 0.5 h; On-Demand $1.00
    data, opts = run_json(bb, tables, "--rows", "36000", "--epochs", "2", "--max-seq-length", "256")
    assert opts[("one.x", "on-demand")]["hours"] == pytest.approx(0.5)
    assert opts[("one.x", "on-demand")]["cost"] == pytest.approx(1.0)
    assert opts[("one.x", "on-demand")]["tokens_per_second"] == pytest.approx(12800)
    assert data["tokens"]["source"] == "max_seq_length" and data["tokens"]["computed_tokens_per_row"] == 256


def test_a_format_1_throughput_table_is_converted_to_tokens(bb, tables, tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps(THROUGHPUT_FORMAT_1))
    _, new_opts = run_json(bb, tables, "--rows", "36000", "--epochs", "2")
    _, old_opts = run_json(bb, tables, "--rows", "36000", "--epochs", "2", "--throughput", str(old))
    assert old_opts == new_opts


@pytest.mark.parametrize(("table", "fragment"), [
    ({**THROUGHPUT, "format": 3}, "throughput table format 3"),
    ({"format": 2, "gpus": {"T1": {"samples_per_second": 100}}}, "GPU T1: tokens_per_second must be a number > 0"),
    ({"gpus": {"T1": {"tokens_per_second": 100}}}, "GPU T1: no samples_per_second (a format-1 table"),
    ({**THROUGHPUT, "padding": {"share": 1.5}}, "padding.share must be a number >= 0 and < 1"),
])
def test_a_throughput_table_it_cannot_read_is_one_line(bb, tables, tmp_path, table, fragment):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(table))
    one_line_error(bb("estimate", *tables, "--data", str(FIXTURES / "sst2" / "train.tsv"), "--tokenizer",
                      str(FIXTURES / "vocab.txt"), "--throughput", str(bad)), str(bad), fragment)


def test_multi_node_is_on_demand_only(bb, tables):
    # 2 x four.x = 8 GPUs x 100 x 0.8 = 640 samples/s: 112.5 s + 360 s = 0.13125 h x $10 x 2 nodes = $2.625
    data, opts = run_json(bb, tables, "--rows", "36000", "--epochs", "2", "--nodes", "2", "--instance-type", "four.x")
    assert set(opts) == {("four.x", "on-demand")}
    assert opts[("four.x", "on-demand")]["hours"] == pytest.approx(0.13125)
    assert opts[("four.x", "on-demand")]["cost"] == pytest.approx(2.625)
    assert data["choice"]["queue"] == discovery.QUEUE_MULTI_NODE


def test_spot_overhead_option(bb, tables):
    _, opts = run_json(bb, tables, "--rows", "36000", "--epochs", "2", "--spot-overhead", "0")
    assert opts[("one.x", "spot")]["hours"] == pytest.approx(0.3)


def test_table_output_and_choice(bb, tables):
    r = bb("estimate", *tables, "--rows", "36000", "--epochs", "2")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("36,000 rows x 2 epoch(s), sequence length 128, 1 node(s)")
    star = [line for line in r.output.splitlines() if line.startswith("*")]
    assert len(star) == 1 and star[0].split()[1:4] == ["one.x", "1x", "T1"]
    assert "Spot takes 25% longer" in r.output and "as of 2026-01-01" in r.output
    assert "Would choose: one.x spot on queue spot-first, 0.38 h, $0.38 (bertbatch submit --gpus 1)" in r.output


def test_rows_counted_from_local_file(bb, tables):
    data, _ = run_json(bb, tables, "--data", str(FIXTURES / "sst2" / "train.tsv"))
    assert data["rows"] == 2000  # 2,001 lines with the header


def test_rows_counted_from_jsonl_without_header(bb, tables, tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text('{"sentence": "a", "label": 1}\n{"sentence": "b", "label": 0}\n')
    data, _ = run_json(bb, tables, "--data", str(p))
    assert data["rows"] == 2


def test_rows_counted_from_s3(platform, bb, tables):
    uri = platform.put_dataset("datasets/small.tsv", b"sentence\tlabel\na\t1\nb\t0\n\nc\t1\n")
    data, _ = run_json(bb, tables, "--data", uri)
    assert data["rows"] == 3


def test_shipped_tables_are_consistent():
    prices, throughput = load_table("prices.json"), load_table("gpu_throughput.json")
    assert prices["as_of"] and prices["note"] and throughput["sources"]
    wanted = {"g5.xlarge", "g5.2xlarge", "g5.12xlarge", "g6.xlarge", "g6.2xlarge", "g6e.xlarge",
              "p4d.24xlarge", "p5.48xlarge"}
    assert wanted <= set(prices["instances"])
    for itype, inst in prices["instances"].items():
        assert inst["gpu"] in throughput["gpus"], itype
        assert inst["gpus"] >= 1 and 0 < inst["spot"] < inst["on_demand"], itype
    assert throughput["format"] == 2 and "tokens per second" in throughput["unit"]
    for gpu, row in throughput["gpus"].items():
        assert row["tokens_per_second"] > 0 and isinstance(row["derived_estimate"], bool), gpu
        # an estimate says how it was derived; a measurement where it was measured
        assert row["basis"] if row["derived_estimate"] else row["source"], gpu
    assert 0 < throughput["padding"]["share"] < 0.1
    assert "bench/results/throughput-small-peers.json" in throughput["padding"]["source"]


def test_the_padding_share_is_the_one_the_benchmark_measured():
    # the share the container's batch plan leaves over an epoch of SST-2 (the benchmark's record)
    from tests.conftest import REPO

    measured = json.loads((REPO / "bench" / "results" / "throughput-small-peers.json").read_text())
    assert load_table("gpu_throughput.json")["padding"]["share"] == pytest.approx(
        measured["contender"]["epoch_plan_padding_fraction"], abs=5e-4)


def test_shipped_tables_hand_check(bb):
    # g5.xlarge: one A10G at the table's tokens/s, 128 tokens a row; 10,000 rows x 1 epoch at seq 128
    prices, throughput = load_table("prices.json"), load_table("gpu_throughput.json")
    sps = throughput["gpus"]["A10G"]["tokens_per_second"] / 128
    startup = throughput["assumptions"]["startup_minutes"] * 60
    hours = (10_000 / sps + startup) / 3600
    r = bb("estimate", "--rows", "10000", "--epochs", "1", "--instance-type", "g5.xlarge", "--json", "--offline")
    opts = {o["pricing"]: o for o in json.loads(r.output)["options"]}
    assert opts["on-demand"]["hours"] == pytest.approx(hours)
    assert opts["on-demand"]["cost"] == pytest.approx(hours * prices["instances"]["g5.xlarge"]["on_demand"])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [([], "exactly one of --rows"), (["--rows", "1", "--data", "x"], "exactly one of --rows"),
     (["--rows", "0"], "--rows 0"), (["--rows", "10", "--epochs", "0"], "--epochs 0"),
     (["--rows", "10", "--max-seq-length", "9000"], "--max-seq-length 9000"),
     (["--rows", "10", "--instance-type", "m5.large"], "--instance-type m5.large: not in the price table"),
     (["--rows", "10", "--max-hours", "0.0001"], "no option finishes within --max-hours"),
     (["--data", "no/such/file.tsv"], "--data no/such/file.tsv: no such file"),
     (["--rows", "10", "--tokenizer", "vocab.txt"], "give --data"),
     (["--rows", "10", "--throughput", "no-such.json"], "cannot read no-such.json"),
     (["--rows", "10", "--prices", "no-such.json"], "cannot read no-such.json")],
)
def test_estimate_errors(bb, args, fragment):
    one_line_error(bb("estimate", "--offline", *args), fragment)


# A run on two A10Gs: 4,750 non-padding tokens/s with 5% padding = 5,000 computed tokens/s = 2,500 per GPU.
A10G_RUN = {"run_id": "a10g-run", "gpu_name": "NVIDIA A10G", "tokens_per_second": 4750.0, "padding_fraction": 0.05,
            "world_size": 2, "mfu": 0.4123}
GPU_THROUGHPUT = {
    "format": 2, "assumed_mfu": 0.25,
    "gpus": {"A10G": {"tokens_per_second": 12800, "derived_estimate": True, "basis": "A10 peak x 0.25"},
             "L4": {"tokens_per_second": 12800, "derived_estimate": True, "basis": "L4 peak x 0.25"}},
    "assumptions": {"multi_gpu_efficiency": 1.0, "startup_minutes": 0, "spot_interruption_overhead": 0},
}
GPU_PRICES = {"as_of": "2026-01-01", "region": "test-region-1",
              "instances": {"g.x": {"gpu": "A10G", "gpus": 1, "on_demand": 2.0},
                            "l.x": {"gpu": "L4", "gpus": 1, "on_demand": 2.0}}}


@pytest.fixture
def gpu_tables(tmp_path):
    t, p = tmp_path / "throughput.json", tmp_path / "prices.json"
    t.write_text(json.dumps(GPU_THROUGHPUT))
    p.write_text(json.dumps(GPU_PRICES))
    return ["--throughput", str(t), "--prices", str(p), "--offline"]


def local_run(tmp_path, metrics: dict) -> str:
    directory = tmp_path / "runs" / str(metrics["run_id"])
    directory.mkdir(parents=True)
    (directory / "metrics.json").write_text(json.dumps(metrics))
    return str(directory)


def test_a_measured_run_replaces_the_derived_figure_of_its_gpu(bb, gpu_tables, tmp_path):
    run = local_run(tmp_path, A10G_RUN)
    data, opts = run_json(bb, gpu_tables, "--rows", "36000", "--measured-run", run)
    assert (opts[("g.x", "on-demand")]["tokens_per_second"], opts[("g.x", "on-demand")]["throughput_estimate"]) == (
        pytest.approx(2500), False)
    assert (opts[("l.x", "on-demand")]["tokens_per_second"], opts[("l.x", "on-demand")]["throughput_estimate"]) == (
        12800, True)
    assert data["throughput_sources"] == {"A10G": f"measured: run {run}: 2 x NVIDIA A10G, MFU 0.412",
                                          "L4": "derived: L4 peak x 0.25"}
    text = " ".join(bb("estimate", *gpu_tables, "--rows", "36000", "--measured-run", run).output.split())
    assert "derived estimates for L4 (a dense peak x an assumed MFU of 0.25;" in text
    assert f"measured: A10G (run {run}: 2 x NVIDIA A10G, MFU 0.412)" in text
    assert "g.x 1x A10G on-demand 2,500 measured" in text and "l.x 1x L4 on-demand 12,800 derived" in text


def test_a_measured_run_by_id_is_read_from_the_artifacts_bucket(platform, bb, gpu_tables):
    platform.put_run("a10g-run", A10G_RUN)
    data, opts = run_json(bb, gpu_tables, "--rows", "36000", "--measured-run", "a10g-run")
    assert opts[("g.x", "on-demand")]["tokens_per_second"] == pytest.approx(2500)
    assert data["throughput_sources"]["A10G"] == "measured: run a10g-run: 2 x NVIDIA A10G, MFU 0.412"


@pytest.mark.parametrize(("metrics", "fragment"), [
    ({"run_id": "cpu", "tokens_per_second": 300.0, "gpu_name": None}, "names no GPU (trained on CPU"),
    ({**A10G_RUN, "run_id": "t4", "gpu_name": "Tesla T4"}, "GPU 'Tesla T4' has no class in the throughput table"),
    ({**A10G_RUN, "run_id": "nothing", "tokens_per_second": None}, "has no usable tokens_per_second"),
])
def test_a_run_without_a_usable_gpu_figure_is_refused(bb, gpu_tables, tmp_path, metrics, fragment):
    run = local_run(tmp_path, metrics)
    one_line_error(bb("estimate", *gpu_tables, "--rows", "100", "--measured-run", run), f"--measured-run {run}",
                   fragment)


def test_a_run_that_has_not_finished_is_refused(bb, gpu_tables, tmp_path):
    (tmp_path / "unfinished").mkdir()
    one_line_error(bb("estimate", *gpu_tables, "--rows", "100", "--measured-run", str(tmp_path / "unfinished")),
                   "no metrics.json")


def test_every_gpu_of_the_shipped_price_table_has_a_device_name_with_a_peak():
    classes = {row["gpu"] for row in load_table("prices.json")["instances"].values()}
    assert classes <= set(efficiency.GPU_CLASSES.values())
    assert set(efficiency.GPU_CLASSES) <= set(efficiency.PEAK_TFLOPS)
    assert set(efficiency.GPU_CLASSES.values()) <= set(load_table("gpu_throughput.json")["gpus"])
