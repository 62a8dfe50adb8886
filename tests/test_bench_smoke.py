"""The throughput benchmark's core (run_glue defaults, the tuned Trainer, the container) and the GPU
script's smoke mode run end to end on the tiny shape and the repo sample.

Structure and padding only: no timing assertion (timings belong in bench/results/, not in tests).
"""

from __future__ import annotations

import pytest

from tests.conftest import FIXTURES


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
    assert list(tmp_path.glob("quick/gpu-*.json"))
