"""Progress for long operations: a live rich bar on a terminal, plain lines everywhere else.

- `TrainingView`: epoch, step/total, loss, samples/s and ETA from the trainer's progress lines
  (`bertbatch local`, `bertbatch watch`), with text lines printed above the bar.
- `TransferView`: bytes, rate and ETA of downloads (`artifacts --download`); an upload (models
  import) uses it the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress

from bertbatch_contract.progress import Progress, format_eta

from . import terminal


class LiveBar:
    """One rich bar, started on first use and stopped on close (also as a context manager).
    Without a terminal (`live` False) nothing is drawn and `echo` prints plain lines."""

    def __init__(self, columns: tuple[ProgressColumn, ...], *, live: bool, err: bool) -> None:
        self.live, self.err = live, err
        self._columns = columns
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def _task_of(self, **fields: Any) -> tuple[RichProgress, TaskID]:
        if self._bar is None or self._task is None:
            self._bar = RichProgress(*self._columns, console=terminal.console(err=self.err))
            self._bar.start()
            self._task = self._bar.add_task("", total=None, **fields)
        return self._bar, self._task

    def echo(self, text: str) -> None:
        """A line above the bar, or a plain line."""
        if self._bar is not None:
            self._bar.console.print(text, soft_wrap=True)
        else:
            click.echo(text, err=self.err)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _text(template: str) -> TextColumn:
    return TextColumn(template, markup=False)


class TrainingView(LiveBar):
    """Training progress: `update` with each progress line; `echo` for the lines around it."""

    def __init__(self, *, live: bool | None = None, err: bool = False) -> None:
        columns: tuple[ProgressColumn, ...] = (
            _text("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            _text("loss {task.fields[loss]}"), _text("{task.fields[rate]} samples/s"),
            _text("ETA {task.fields[eta]}"), _text("{task.fields[extra]}"),
        )
        super().__init__(columns, live=terminal.is_terminal(err=err) if live is None else live, err=err)

    def update(self, p: Progress, *, plain: str, extra: str = "") -> None:
        """Redraw the bar from `p` (with `extra`, e.g. the latest eval metrics); without a
        terminal print `plain` instead."""
        if not self.live:
            click.echo(plain, err=self.err)
            return
        fields: dict[str, Any] = {"epoch": f"{p.epoch}/{p.epochs}", "loss": f"{p.loss:.4f}",
                                  "rate": f"{p.samples_per_second:.1f}", "eta": format_eta(p.eta_seconds),
                                  "extra": extra}
        bar, task = self._task_of(**fields)
        bar.update(task, total=p.total_steps or None, completed=p.step, **fields)


class TransferView(LiveBar):
    """Bytes moved, rate and ETA; `advance` is a boto3 transfer Callback. Without a terminal,
    one line per file (`done`)."""

    def __init__(self, total_bytes: int, *, verb: str = "downloaded", live: bool | None = None,
                 err: bool = True) -> None:
        columns: tuple[ProgressColumn, ...] = (
            _text("{task.fields[name]}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        )
        super().__init__(columns, live=terminal.is_terminal(err=err) if live is None else live, err=err)
        self.total_bytes, self.verb = total_bytes, verb

    def callback(self, name: str) -> Callable[[int], None] | None:
        """The Callback for one file's transfer (None without a terminal)."""
        if not self.live:
            return None
        bar, task = self._task_of(name=name)
        bar.update(task, total=self.total_bytes, name=name)

        def advance(nbytes: int) -> None:
            bar.advance(task, nbytes)

        return advance

    def done(self, source: str, target: str, size_text: str) -> None:
        if not self.live:
            click.echo(f"{self.verb} {source} -> {target} ({size_text})", err=self.err)
