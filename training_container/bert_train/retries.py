"""Retrying a storage call: waits between whole tries, on top of botocore's retries of each request
(storage.S3_MAX_ATTEMPTS), and a deadline after which no wait runs and no try starts.

The deadline is the stop signal's: Batch sends SIGKILL CONTAINER_STOP_TIMEOUT_SECONDS after
SIGTERM (a Spot notice gives 120 s in all), so once the trainer has been told to stop, the last
checkpoint is stored, or given up, within job.SIGTERM_CHECKPOINT_BUDGET_SECONDS of the signal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from . import storage

log = logging.getLogger("bert_train")

T = TypeVar("T")


@dataclass(frozen=True)
class Waits:
    """The clock the retries read and the sleep they wait with: the real ones, or a test's fakes."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] | None = None  # None: a wait that a new deadline cuts short


class DeadlinePassed(storage.StorageError):
    """A try was not started: the time left after the stop signal is spent."""


class RetryLadder:
    """`run(what, action)`: `action()`, tried again after each of `delays` while it raises a
    StorageError other than NotFound (an answer, not a failure). Once `stop_within` has set a
    deadline, a retry is made only if its wait and a try as long as the last one end before it
    (else the last error is raised), and past it no try starts."""

    def __init__(self, delays: Sequence[float], waits: Waits | None = None) -> None:
        self.delays = tuple(delays)
        self.waits = waits or Waits()
        self._deadline: float | None = None
        self._deadline_set = threading.Event()

    def stop_within(self, seconds: float) -> None:
        """From now on, finish within `seconds` (an earlier deadline stays)."""
        deadline = self.waits.clock() + max(0.0, seconds)
        if self._deadline is None or deadline < self._deadline:
            self._deadline = deadline
        self._deadline_set.set()  # ends a wait already under way, which began without a deadline

    def seconds_left(self) -> float | None:
        """Seconds to the deadline (negative once past), or None without one."""
        return None if self._deadline is None else self._deadline - self.waits.clock()

    def run(self, what: str, action: Callable[[], T]) -> T:
        delays = list(self.delays)
        while True:
            left = self.seconds_left()
            if left is not None and left <= 0:
                raise DeadlinePassed(f"{what}: not tried, the time left after the stop signal is spent")
            started = self.waits.clock()
            try:
                return action()
            except storage.NotFound:
                raise
            except storage.StorageError as exc:
                if not delays:
                    raise
                delay = delays.pop(0)
                left = self.seconds_left()
                # Another try is worth it only if it can end in time, judged by how long this one took.
                if left is not None and delay + (self.waits.clock() - started) > left:
                    log.warning("%s failed (%s); not retrying: %.0f s left before the stop deadline", what, exc, left)
                    raise
                log.warning("%s failed (%s); retrying in %.0f s", what, exc, delay)
                self._wait(delay)

    def _wait(self, seconds: float) -> None:
        if self.waits.sleep is not None:
            self.waits.sleep(seconds)
        elif self._deadline is None:
            self._deadline_set.wait(seconds)  # cut short if the stop signal comes meanwhile
        else:
            time.sleep(seconds)  # ends before the deadline (checked above)
