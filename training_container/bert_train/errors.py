"""Failures after the inputs were accepted that the command reports as one line with its own exit
code (bad input is `config.BadInput`, found before anything runs)."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The checkpoint location could not be read or written for longer than allowed. Exit code
    EXIT_STORAGE_UNAVAILABLE, which the job definition retries: the next attempt resumes from the
    newest checkpoint that reached the store."""


class Diverged(Exception):
    """The loss or the weights became NaN or infinite: training stops, no model is published."""
