"""Failures after the inputs were accepted that the command reports as one line with its own exit
code (bad input is `config.BadInput`, found before anything runs)."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """S3 could not answer: the checkpoint location could not be read, or written for longer than
    allowed, or a location's start-up write check got no answer (throttling, a 5xx, the network).
    Exit code EXIT_STORAGE_UNAVAILABLE, which the job definition retries: the next attempt resumes
    from the newest checkpoint that reached the store."""


class Diverged(Exception):
    """The loss or the weights became NaN or infinite: training stops, no model is published."""
