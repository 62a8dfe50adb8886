"""Model FLOPs per token, the GPU peak table and MFU: worked by hand, null where there is no peak."""

from __future__ import annotations

import pytest

from bertbatch_contract import efficiency
from bertbatch_contract.efficiency import ModelShape

# 2 layers, hidden 4: the attention term per token is 12 x 2 x 4 x S = 96 S.
SHAPE = ModelShape(non_embedding_parameters=1000, layers=2, hidden=4)


def test_flops_per_token_is_six_per_parameter_plus_the_attention_term() -> None:
    assert efficiency.flops_per_token(SHAPE, 10) == 6 * 1000 + 96 * 10
    assert efficiency.flops_per_token(SHAPE, 0) == 6000


def test_mfu_of_a_known_gpu_from_tokens_rows_and_an_injected_time() -> None:
    # 4,000 real tokens in 100 rows (S = 40) in 2 s on two A10Gs in bf16
    record = efficiency.efficiency_record(SHAPE, device_name="NVIDIA A10G", precision="bf16", gpus=2,
                                          tokens=4000, samples=100, seconds=2.0, memory_peak_mb=512.0)
    per_token = 6000 + 96 * 40
    achieved = 4000 * per_token / 2.0
    assert record == {
        "mfu": pytest.approx(achieved / (125e12 * 2)),
        "mfu_unavailable": None,
        "model_tflops_per_second": pytest.approx(achieved / 1e12),
        "model_flops_per_token": per_token,
        "gpu_name": "NVIDIA A10G",
        "gpu_peak_tflops": 125.0,
        "gpu_memory_peak_mb": 512.0,
    }
    assert tuple(record) == efficiency.RECORD_KEYS


@pytest.mark.parametrize(("device", "precision", "why"), [
    (None, "fp32", "trained on CPU"),
    (None, "bf16", "trained on CPU"),
    ("NVIDIA GeForce RTX 9090", "bf16", "'NVIDIA GeForce RTX 9090' is not in the peak table"),
    ("Tesla V100-SXM2-16GB", "bf16", "has no bf16 tensor peak"),
    ("NVIDIA A100-SXM4-40GB", "fp32", "has no fp32 tensor peak"),
])
def test_mfu_is_null_with_the_reason_without_a_peak(device: str | None, precision: str, why: str) -> None:
    record = efficiency.efficiency_record(SHAPE, device_name=device, precision=precision, gpus=1, tokens=4000,
                                          samples=100, seconds=2.0, memory_peak_mb=None)
    assert record["mfu"] is None and record["gpu_peak_tflops"] is None
    assert why in record["mfu_unavailable"]
    assert record["model_tflops_per_second"] == pytest.approx(4000 * (6000 + 96 * 40) / 2.0 / 1e12)


def test_no_time_or_no_rows_gives_no_throughput_rather_than_a_division_by_zero() -> None:
    record = efficiency.efficiency_record(SHAPE, device_name="NVIDIA L4", precision="bf16", gpus=1, tokens=0,
                                          samples=0, seconds=0.0, memory_peak_mb=None)
    assert (record["mfu"], record["model_tflops_per_second"], record["model_flops_per_token"]) == (0.0, 0.0, None)


@pytest.mark.parametrize(("device", "bf16", "fp16"), [
    ("NVIDIA A10G", 125.0, 125.0), ("NVIDIA L4", 121.0, 121.0), ("NVIDIA L40S", 362.0, 362.0),
    ("NVIDIA A100-SXM4-40GB", 312.0, 312.0), ("NVIDIA A100-SXM4-80GB", 312.0, 312.0),
    ("NVIDIA H100 80GB HBM3", 989.4, 989.4), ("NVIDIA H100 PCIe", 756.0, 756.0), ("NVIDIA H200", 989.4, 989.4),
    ("Tesla V100-SXM2-16GB", None, 125.0), ("Tesla T4", None, 65.0),
])
def test_the_peak_table_has_each_gpu_the_platform_runs_on(device: str, bf16: float | None,
                                                           fp16: float | None) -> None:
    assert (efficiency.peak_tflops(device, "bf16"), efficiency.peak_tflops(device, "fp16")) == (bf16, fp16)
