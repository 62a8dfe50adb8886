"""What the trainer prints: progress lines for people, EMF lines for CloudWatch.

Both go to stdout (the awslogs driver ships it; CloudWatch extracts the EMF records), only from
rank 0, through one lock because checkpoint uploads finish on a background thread.
"""

from __future__ import annotations

import sys
import threading

from . import metrics
from .progress import Progress, format_progress


class Telemetry:
    def __init__(self, *, enabled: bool, namespace: str, profile: str, run_id: str, stream=None):
        self.enabled = enabled
        self.namespace = namespace
        self.dimensions = {metrics.DIMENSION_PROFILE: profile, metrics.DIMENSION_RUN_ID: run_id}
        self._stream = stream
        self._lock = threading.Lock()

    def _print(self, line: str) -> None:
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()

    def metrics(self, values: dict[str, float]) -> None:
        """One EMF record; names must be in the metrics contract (a typo raises KeyError)."""
        if self.enabled and values:
            self._print(metrics.emf_line(values, namespace=self.namespace, dimensions=self.dimensions))

    def progress(self, p: Progress) -> None:
        if self.enabled:
            self._print(format_progress(p))

    def line(self, text: str) -> None:
        if self.enabled:
            self._print(text)


def gpu_metrics(device) -> dict[str, float]:
    """GPU utilization and peak memory of this process's device; empty on CPU (never faked)."""
    import torch

    if device.type != "cuda":
        return {}
    out = {metrics.GPU_MEMORY_USED.name: torch.cuda.max_memory_allocated(device) / 2**20}
    try:
        out[metrics.GPU_UTILIZATION.name] = float(torch.cuda.utilization(device))
    except Exception:  # NVML missing or not permitted: report memory only
        pass
    return out
