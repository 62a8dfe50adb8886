"""Failures after the inputs were accepted that the command reports as one line with its own exit
code (bad input is `config.BadInput`, found before anything runs)."""

from __future__ import annotations

from . import storage
from .config import BadInput


class StoreUnavailable(Exception):
    """S3 could not answer: the checkpoint location could not be read, or written for longer than
    allowed, or a location's start-up write check got no answer (throttling, a 5xx, the network).
    Exit code EXIT_STORAGE_UNAVAILABLE, which the job definition retries: the next attempt resumes
    from the newest checkpoint that reached the store."""


class Diverged(Exception):
    """The loss or the weights became NaN or infinite: training stops, no model is published."""


def unreadable_input(uri: str, exc: storage.StorageError) -> Exception:
    """What a failed read of an input the user gave is: BadInput when the answer is about the
    input itself (no such key or bucket, access refused) or it is a local or FSx path;
    StoreUnavailable (exit 74, retried) when S3 could not answer (throttling, a 5xx, the network).
    Only what the user gave can be bad input."""
    if isinstance(exc, storage.NotFound | storage.Refused) or not storage.is_s3(uri):
        return BadInput(str(exc))
    return StoreUnavailable(str(exc))
