"""The human-readable progress line: written by the trainer, parsed by `bertbatch watch`.

Example:
    [progress] epoch 1/3 step 120/900 loss 0.5432 samples/s 312.4 eta 0:02:13

Pure Python so the CLI can import it without torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "[progress]"
_LINE = re.compile(
    r"\[progress\] epoch (?P<epoch>\d+)/(?P<epochs>\d+) step (?P<step>\d+)/(?P<total_steps>\d+)"
    r" loss (?P<loss>[-+0-9.eE]+|nan|inf) samples/s (?P<samples_per_second>[0-9.]+)"
    r" eta (?P<eta>\d+:\d{2}:\d{2})"
)


@dataclass(frozen=True)
class Progress:
    epoch: int
    epochs: int
    step: int
    total_steps: int
    loss: float
    samples_per_second: float
    eta_seconds: int


def format_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def format_progress(p: Progress) -> str:
    return (
        f"{PREFIX} epoch {p.epoch}/{p.epochs} step {p.step}/{p.total_steps} "
        f"loss {p.loss:.4f} samples/s {p.samples_per_second:.1f} eta {format_eta(p.eta_seconds)}"
    )


def parse_progress(line: str) -> Progress | None:
    """Parse a progress line (anywhere in `line`); None if it is not one."""
    m = _LINE.search(line)
    if not m:
        return None
    h, mnt, s = (int(x) for x in m["eta"].split(":"))
    return Progress(
        epoch=int(m["epoch"]),
        epochs=int(m["epochs"]),
        step=int(m["step"]),
        total_steps=int(m["total_steps"]),
        loss=float(m["loss"]),
        samples_per_second=float(m["samples_per_second"]),
        eta_seconds=h * 3600 + mnt * 60 + s,
    )
