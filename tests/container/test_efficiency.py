"""MFU of the model actually trained: its parameters counted by hand, a GPU faked by name, a fixed time."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from bert_train import vocab_rows
from bert_train.efficiency import EfficiencyMeter, model_shape
from bert_train.state import TrainState
from bertbatch_contract import efficiency, metrics

LAYERS, HIDDEN, INTERMEDIATE, LABELS = 2, 8, 16, 2
# Per layer: Q, K, V, O (4 x (H x H + H)), two LayerNorms (2 x 2H), feed-forward (H x I + I, I x H + H).
PER_LAYER = 4 * (HIDDEN * HIDDEN + HIDDEN) + 2 * 2 * HIDDEN + HIDDEN * INTERMEDIATE + INTERMEDIATE \
    + INTERMEDIATE * HIDDEN + HIDDEN
# The layers, the embeddings' LayerNorm, the pooler (H x H + H) and the classifier (H x 2 + 2).
NON_EMBEDDING = LAYERS * PER_LAYER + 2 * HIDDEN + HIDDEN * HIDDEN + HIDDEN + HIDDEN * LABELS + LABELS
A10G = "NVIDIA A10G"


def tiny_model() -> torch.nn.Module:
    config = AutoConfig.for_model("bert", vocab_size=40, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                                  num_attention_heads=2, intermediate_size=INTERMEDIATE, max_position_embeddings=16,
                                  num_labels=LABELS)
    return AutoModelForSequenceClassification.from_config(config)


def run_state(tokens: int, samples: int, seconds: float) -> TrainState:
    return TrainState(samples=samples, tokens=tokens, computed_tokens=tokens, train_seconds=seconds)


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch.cuda answers as an A10G that peaked at 3 GiB (no CUDA needed)."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: A10G)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**30)
    return torch.device("cuda", 0)


def test_the_model_shape_counts_every_parameter_but_the_embedding_tables() -> None:
    model = tiny_model()
    assert model_shape(model) == efficiency.ModelShape(NON_EMBEDDING, LAYERS, HIDDEN)
    vocab_rows.install(model, range(10))  # the word embedding split in two: still a lookup table
    assert model_shape(model).non_embedding_parameters == NON_EMBEDDING


def test_flops_per_token_of_the_tiny_model_by_hand() -> None:
    shape = model_shape(tiny_model())
    assert efficiency.flops_per_token(shape, 12) == 6 * NON_EMBEDDING + 12 * LAYERS * HIDDEN * 12


def test_mfu_on_a_named_gpu_over_a_fixed_time(fake_gpu) -> None:
    meter = EfficiencyMeter.for_run(tiny_model(), fake_gpu, world_size=4, precision="bf16")
    per_token = 6 * NON_EMBEDDING + 12 * LAYERS * HIDDEN * 10  # 5,000 tokens in 500 rows: S = 10
    expected = 5000 * per_token / 2.5 / (125e12 * 4)
    record = meter.record(run_state(tokens=5000, samples=500, seconds=2.5))
    assert record["mfu"] == pytest.approx(expected)
    assert (record["gpu_name"], record["gpu_peak_tflops"], record["gpu_memory_peak_mb"]) == (A10G, 125.0, 3072.0)
    assert record["mfu_unavailable"] is None and record["model_flops_per_token"] == per_token
    assert meter.window_metrics(5000, 500, 2.5) == {metrics.MODEL_FLOPS_UTILIZATION.name: pytest.approx(expected)}


def test_mfu_is_null_on_a_cpu_and_never_emitted() -> None:
    meter = EfficiencyMeter.for_run(tiny_model(), torch.device("cpu"), world_size=1, precision="fp32")
    record = meter.record(run_state(tokens=5000, samples=500, seconds=2.5))
    assert (record["mfu"], record["gpu_name"], record["gpu_memory_peak_mb"]) == (None, None, None)
    assert record["mfu_unavailable"].startswith("trained on CPU")
    assert record["model_tflops_per_second"] > 0  # the model's FLOPs/s are still reported
    assert meter.window_metrics(5000, 500, 2.5) == {}


def test_an_unknown_gpu_has_no_mfu_and_says_which_gpu(fake_gpu, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Future GPU")
    meter = EfficiencyMeter.for_run(tiny_model(), fake_gpu, world_size=1, precision="bf16")
    record = meter.record(run_state(tokens=5000, samples=500, seconds=2.5))
    assert record["mfu"] is None and "'NVIDIA Future GPU' is not in the peak table" in record["mfu_unavailable"]
    assert record["gpu_memory_peak_mb"] == 3072.0
    assert meter.window_metrics(5000, 500, 2.5) == {}
