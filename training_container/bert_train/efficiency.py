"""How efficiently this run uses its GPUs: MFU per logging window (EMF) and over the run (metrics.json).

The formula and the GPU peaks are the contract's (bertbatch_contract.efficiency); this module
reads what they need from the model actually trained and from the device it runs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bertbatch_contract import efficiency, metrics

from .state import TrainState
from .telemetry import memory_peak_mb
from .vocab_rows import RowSplitEmbedding

# Lookup tables: their parameters are read by index, not multiplied (RowSplitEmbedding is the
# word embedding once vocab_rows has split it).
_EMBEDDINGS = (torch.nn.Embedding, RowSplitEmbedding)


def model_shape(model: torch.nn.Module) -> efficiency.ModelShape:
    """Non-embedding parameters counted on `model` (a transformers model), its layers and hidden
    size from its config. Shared weights (ALBERT's layers) count once, so MFU understates them."""
    lookups = {id(p) for module in model.modules() if isinstance(module, _EMBEDDINGS)
               for p in module.parameters()}
    counted = sum(p.numel() for p in model.parameters() if id(p) not in lookups)
    config: Any = model.config
    return efficiency.ModelShape(non_embedding_parameters=counted, layers=int(config.num_hidden_layers),
                                 hidden=int(config.hidden_size))


def device_name(device: torch.device) -> str | None:
    """The CUDA device name the peak table is keyed by; None on a CPU."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


@dataclass(frozen=True)
class EfficiencyMeter:
    """The model's shape and the GPUs it trains on; every rank's GPU is taken to be rank 0's."""

    shape: efficiency.ModelShape
    device: torch.device
    gpus: int
    precision: str

    @classmethod
    def for_run(cls, model: torch.nn.Module, device: torch.device, world_size: int, precision: str) -> EfficiencyMeter:
        return cls(model_shape(model), device, world_size, precision)

    def window_metrics(self, tokens: int, samples: int, seconds: float) -> dict[str, float]:
        """MFU of one logging window as an EMF value; nothing where it is null (never faked)."""
        achieved = efficiency.model_flops_per_second(self.shape, tokens=tokens, samples=samples, seconds=seconds)
        peak = efficiency.peak_tflops(device_name(self.device), self.precision)
        value = efficiency.mfu(achieved, peak, self.gpus)
        return {} if value is None else {metrics.MODEL_FLOPS_UTILIZATION.name: value}

    def record(self, state: TrainState) -> dict[str, Any]:
        """The efficiency keys of metrics.json, over every attempt's training steps."""
        return efficiency.efficiency_record(
            self.shape, device_name=device_name(self.device), precision=self.precision, gpus=self.gpus,
            tokens=state.tokens, samples=state.samples, seconds=state.train_seconds,
            memory_peak_mb=memory_peak_mb(self.device))
