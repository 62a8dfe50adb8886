"""What `bertbatch local` does with the trainer's stdout.

The trainer prints for the awslogs driver: EMF lines (JSON with an `_aws` key,
`bertbatch_contract.metrics`) for CloudWatch, `[progress]` lines (`bertbatch_contract.progress`)
and plain lines for people. On a laptop the EMF lines go to a file in the run's output folder,
never to the terminal; progress lines drive the progress bar (plain lines without a terminal);
everything else passes through.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from bertbatch_contract.progress import parse_progress

from ..ui.progress_view import TrainingView
from .log_streams import parse_emf

EMF_FILE = "metrics.emf.jsonl"  # in the run's output folder


class TrainerOutput:
    """Routes the trainer's stdout, line by line. The EMF file is opened on the first EMF line,
    so a run that fails before training writes nothing."""

    def __init__(self, emf_path: Path, view: TrainingView) -> None:
        self.emf_path, self.view = emf_path, view
        self.emf_lines = 0
        self._emf: TextIO | None = None

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if parse_emf(line) is not None:
            self._write_emf(line)
            return
        progress = parse_progress(line)
        if progress is not None:
            self.view.update(progress, plain=line)
            return
        self.view.echo(line)

    def _write_emf(self, line: str) -> None:
        if self._emf is None:
            self.emf_path.parent.mkdir(parents=True, exist_ok=True)
            self._emf = self.emf_path.open("a", encoding="utf-8")
        self._emf.write(line.strip() + "\n")
        self._emf.flush()  # readable while the run goes on (tail -f)
        self.emf_lines += 1

    def close(self) -> None:
        if self._emf is not None:
            self._emf.close()
            self._emf = None
        self.view.close()
