"""The programs the CLI runs on this machine (the trainer, prepare, the predict entrypoint).

Each runs in its own process group. SIGTERM and SIGINT sent to the CLI are forwarded to that
group, and the CLI waits for the child to exit before it exits with the child's status: the CLI
never returns while its child still writes (a rerun would be a second writer). The group is the
child's own so that Ctrl-C reaches it once, through the CLI, not twice (the terminal's and the
forwarded one: a second SIGINT aborts the trainer without a checkpoint).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ..core.errors import BertBatchError

FORWARDED = (signal.SIGTERM, signal.SIGINT)


def exit_status(returncode: int) -> int:
    """A child killed by signal N (returncode -N) gives 128 + N, as a shell reports it."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class SignalForwarder:
    """While active (main thread only: where Python handles signals), SIGTERM/SIGINT go to the
    attached child's process group; one that comes before the child starts is sent on start."""

    received: list[int] = field(default_factory=list)
    _group: int | None = None
    _previous: dict[int, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self._previous)

    def __enter__(self) -> SignalForwarder:
        if threading.current_thread() is threading.main_thread():
            for sig in FORWARDED:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def attach(self, child: subprocess.Popen[str]) -> None:
        if not self.active:
            return  # the child shares this process's group: a terminal's signals reach it directly
        self._group = child.pid  # process_group=0: the child leads its own group
        for sig in self.received:
            self._send(sig)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._group is not None:
            self._send(signum)

    def _send(self, signum: int) -> None:
        if self._group is None:
            return
        try:
            os.killpg(self._group, signum)
        except ProcessLookupError:
            pass  # the group has exited already: nothing left to stop


@dataclass(frozen=True)
class ChildExit:
    status: int  # the child's exit code, or 128 + N when signal N killed it
    interrupted: bool  # a forwarded SIGTERM/SIGINT asked it to stop: start nothing after it


def run(argv: list[str], *, env: Mapping[str, str], on_stdout_line: Callable[[str], None] | None = None,
        stderr: int | None = None) -> ChildExit:
    """Run `argv` in its own process group, forwarding SIGTERM/SIGINT to it, until it exits.
    With `on_stdout_line` its stdout is read line by line (text) and handed over; `stderr` as
    for Popen (None: this process's)."""
    with SignalForwarder() as forwarder:
        try:
            child = subprocess.Popen(argv, env=dict(env), stdout=subprocess.PIPE if on_stdout_line else None,
                                     stderr=stderr, text=True, encoding="utf-8", errors="replace",
                                     # its own group only when signals reach it through this process
                                     process_group=0 if forwarder.active else None)
        except OSError as exc:
            raise BertBatchError(f"cannot start {argv[0]}: {exc.strerror}") from None
        with child:
            forwarder.attach(child)
            if on_stdout_line is not None:
                assert child.stdout is not None  # stdout=PIPE
                for line in child.stdout:
                    on_stdout_line(line)
            returncode = child.wait()
    return ChildExit(status=exit_status(returncode), interrupted=bool(forwarder.received))
