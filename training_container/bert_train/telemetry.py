"""What the trainer prints: progress lines for people, EMF lines for CloudWatch.

Under Batch (and whenever stdout is not a terminal, e.g. piped into `bertbatch local`) both go
to stdout, only from rank 0, through one lock because checkpoint uploads finish on a background
thread: the awslogs driver ships them, CloudWatch extracts the EMF records and `bertbatch watch`
parses the progress lines.

Run by hand on a terminal outside Batch, the trainer shows a live progress bar instead, prints
the eval lines above it, and writes the EMF records to `metrics.emf.jsonl` in the local output
directory (or drops them when the output goes to S3): they are meant for CloudWatch, not people.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import torch

from bertbatch_contract import job, metrics
from bertbatch_contract.progress import Progress, format_eta, format_progress

EMF_FILE = "metrics.emf.jsonl"  # the same name `bertbatch local` uses in the run's folder


def wants_terminal_view(stream: TextIO, env: Mapping[str, str]) -> bool:
    """A person is watching: stdout is a terminal and this is not a Batch job."""
    return job.ENV_BATCH_JOB_ID not in env and hasattr(stream, "isatty") and stream.isatty()


class _TerminalView:
    """A rich progress bar on the terminal; other lines print above it."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            TextColumn("step {task.fields[steps]}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} samples/s"),
            TextColumn("eta {task.fields[eta]}"),
            console=Console(file=stream, force_terminal=True),
            auto_refresh=False,  # refreshed on each update: no thread of its own
        )
        self.task = self.bar.add_task("train", total=None, epoch="-", steps="-", loss="-", rate="-", eta="-")
        self.bar.start()
        atexit.register(self.close)

    def progress(self, p: Progress) -> None:
        self.bar.update(
            self.task, completed=p.step, total=p.total_steps, epoch=f"{p.epoch}/{p.epochs}",
            steps=f"{p.step}/{p.total_steps}",
            loss=f"{p.loss:.4f}", rate=f"{p.samples_per_second:.1f}", eta=format_eta(p.eta_seconds),
        )
        self.bar.refresh()

    def line(self, text: str) -> None:
        self.bar.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        self.bar.stop()


class Telemetry:
    def __init__(self, *, enabled: bool, namespace: str, profile: str, run_id: str,
                 stream: TextIO | None = None, local_output_dir: str | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.enabled = enabled
        self.namespace = namespace
        self.dimensions = {metrics.DIMENSION_PROFILE: profile, metrics.DIMENSION_RUN_ID: run_id}
        self._stream = stream
        self._lock = threading.Lock()
        out = stream or sys.stdout
        terminal = enabled and wants_terminal_view(out, os.environ if env is None else env)
        self._view = _TerminalView(out) if terminal else None
        self._emf_path = Path(local_output_dir) / EMF_FILE if terminal and local_output_dir else None

    def _print(self, line: str) -> None:
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()

    def metrics(self, values: dict[str, float]) -> None:
        """One EMF record; names must be in the metrics contract (a typo raises KeyError)."""
        if not (self.enabled and values):
            return
        line = metrics.emf_line(values, namespace=self.namespace, dimensions=self.dimensions)
        if self._view is None:
            self._print(line)
        elif self._emf_path is not None:
            with self._lock:
                self._emf_path.parent.mkdir(parents=True, exist_ok=True)
                with self._emf_path.open("a", encoding="utf-8") as f:
                    f.write(line + "\n")

    def progress(self, p: Progress) -> None:
        if not self.enabled:
            return
        if self._view is None:
            self._print(format_progress(p))
        else:
            with self._lock:
                self._view.progress(p)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self._view is None:
            self._print(text)
        else:
            with self._lock:
                self._view.line(text)

    def close(self) -> None:
        """Stop the terminal bar (if any), leaving its last state on screen."""
        if self._view is not None:
            self._view.close()


def gpu_metrics(device: torch.device) -> dict[str, float]:
    """GPU utilization and peak memory of this process's device; empty on CPU (never faked)."""
    memory = memory_peak_mb(device)
    if memory is None:
        return {}
    out = {metrics.GPU_MEMORY_USED.name: memory}
    try:
        out[metrics.GPU_UTILIZATION.name] = float(torch.cuda.utilization(device))
    except Exception:  # NVML missing or not permitted: report memory only
        pass
    return out


def memory_peak_mb(device: torch.device) -> float | None:
    """Peak GPU memory allocated by this process on `device`, MB; None on a CPU."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
