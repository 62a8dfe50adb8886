"""How efficiently a run used its GPUs: model FLOPs per token, the GPUs' peaks, MFU.

The trainer writes `efficiency_record` into metrics.json and emits MFU as EMF; the CLI shows the
same keys (`RECORD_KEYS`). Pure Python: imported by the container, the CLI and the bench.

Model FLOPs per trained token, forward and backward (PaLM, Chowdhery et al. 2022, appendix B;
the same formula as nanoGPT's `estimate_mfu`):

    6 x N  +  12 x L x H x S

N: the non-embedding parameters (every weight matrix is used once per token forward and twice
backward, 2 FLOPs per multiply-add); L x H x S: attention scores and their weighted sum over the
sequence of S tokens the token attends to (L layers, H the hidden size = heads x head size).
Only real tokens count (padding is not useful work), so MFU is comparable between a padded and
an unpadded model. An embedding lookup is not a matmul and counts nothing.

MFU = achieved model FLOPs per second / (peak FLOPs per second of one GPU x GPUs). It is null,
with the reason said, on a CPU, an unknown GPU, or a precision the GPU has no tensor peak for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BF16, FP16 = "bf16", "fp16"

# Dense tensor-core peaks in TFLOPS (without the 2:4 sparsity that datasheets also quote), per
# training precision, keyed by `torch.cuda.get_device_name()`. Sources: NVIDIA's datasheets
# (A10, L4, L40S, A100, H100, H200, V100, T4) and the H100 architecture whitepaper (989.4 SXM).
PEAK_TFLOPS: Mapping[str, Mapping[str, float]] = {
    # AWS publishes no figure for its A10G (g5): the A10 datasheet's 125 is an upper bound, so an
    # A10G's MFU is a lower bound (the A10G's own peak may be lower).
    "NVIDIA A10G": {BF16: 125.0, FP16: 125.0},
    "NVIDIA L4": {BF16: 121.0, FP16: 121.0},  # g6
    "NVIDIA L40S": {BF16: 362.0, FP16: 362.0},  # g6e
    "NVIDIA A100-SXM4-40GB": {BF16: 312.0, FP16: 312.0},  # p4d
    "NVIDIA A100-SXM4-80GB": {BF16: 312.0, FP16: 312.0},  # p4de
    "NVIDIA A100-PCIE-40GB": {BF16: 312.0, FP16: 312.0},
    "NVIDIA A100 80GB PCIe": {BF16: 312.0, FP16: 312.0},
    "NVIDIA H100 80GB HBM3": {BF16: 989.4, FP16: 989.4},  # H100 SXM (p5)
    "NVIDIA H100 PCIe": {BF16: 756.0, FP16: 756.0},
    "NVIDIA H200": {BF16: 989.4, FP16: 989.4},  # H200 SXM (p5e, p5en)
    # Volta and Turing have fp16 tensor cores only: no bf16 peak.
    "Tesla V100-SXM2-16GB": {FP16: 125.0},  # p3
    "Tesla V100-SXM2-32GB": {FP16: 125.0},  # p3dn
    "Tesla T4": {FP16: 65.0},  # g4dn
}

# The GPU class of the CLI's throughput and price tables (bertbatch/data) of each device an
# instance type of the price table carries: g5 A10G, g6 L4, g6e L40S, p4d A100 SXM4 40GB, p5 H100
# SXM, p5e/p5en H200. Other variants differ in clocks, power or memory and have no class.
GPU_CLASSES: Mapping[str, str] = {
    "NVIDIA A10G": "A10G",
    "NVIDIA L4": "L4",
    "NVIDIA L40S": "L40S",
    "NVIDIA A100-SXM4-40GB": "A100",
    "NVIDIA H100 80GB HBM3": "H100",
    "NVIDIA H200": "H200",
}

# The keys `efficiency_record` writes into metrics.json, in the order the CLI shows them.
RECORD_KEYS = ("mfu", "mfu_unavailable", "model_tflops_per_second", "model_flops_per_token", "gpu_name",
               "gpu_peak_tflops", "gpu_memory_peak_mb")


@dataclass(frozen=True)
class ModelShape:
    """What the FLOPs formula needs from the model actually trained."""

    non_embedding_parameters: int
    layers: int
    hidden: int


def flops_per_token(shape: ModelShape, seq_len: float) -> float:
    """Training (forward + backward) model FLOPs per real token, for sequences of `seq_len` tokens."""
    return 6.0 * shape.non_embedding_parameters + 12.0 * shape.layers * shape.hidden * seq_len


def peak_tflops(device_name: str | None, precision: str) -> float | None:
    """One GPU's dense peak at `precision`, or None (CPU, unknown GPU, no tensor peak at it)."""
    return PEAK_TFLOPS.get(device_name or "", {}).get(precision)


def unavailable_reason(device_name: str | None, precision: str) -> str | None:
    """Why MFU cannot be given for this device and precision, or None when it can."""
    if device_name is None:
        return "trained on CPU: MFU is measured against a GPU's tensor peak"
    if device_name not in PEAK_TFLOPS:
        return f"GPU {device_name!r} is not in the peak table (bertbatch_contract.efficiency.PEAK_TFLOPS)"
    if precision not in PEAK_TFLOPS[device_name]:
        return f"GPU {device_name!r} has no {precision} tensor peak in the table"
    return None


def model_flops_per_second(shape: ModelShape, *, tokens: int, samples: int, seconds: float) -> float:
    """Achieved model FLOPs per second over `tokens` real tokens of `samples` rows in `seconds`;
    S is the mean real length of a row."""
    if not (tokens and samples and seconds > 0):
        return 0.0
    return tokens * flops_per_token(shape, tokens / samples) / seconds


def mfu(achieved_flops_per_second: float, peak: float | None, gpus: int) -> float | None:
    """Model FLOPs utilisation, 0..1, or None without a peak."""
    if peak is None or gpus < 1:
        return None
    return achieved_flops_per_second / (peak * 1e12 * gpus)


def efficiency_record(shape: ModelShape, *, device_name: str | None, precision: str, gpus: int, tokens: int,
                      samples: int, seconds: float, memory_peak_mb: float | None) -> dict[str, Any]:
    """The efficiency keys of metrics.json (`RECORD_KEYS`) for a run's totals."""
    achieved = model_flops_per_second(shape, tokens=tokens, samples=samples, seconds=seconds)
    peak = peak_tflops(device_name, precision)
    return {
        "mfu": mfu(achieved, peak, gpus),
        "mfu_unavailable": unavailable_reason(device_name, precision),
        "model_tflops_per_second": achieved / 1e12,
        "model_flops_per_token": flops_per_token(shape, tokens / samples) if samples else None,
        "gpu_name": device_name,
        "gpu_peak_tflops": peak,
        "gpu_memory_peak_mb": memory_peak_mb,
    }
