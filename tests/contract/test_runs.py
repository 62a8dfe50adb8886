"""Run ids: one format, one validation."""

from __future__ import annotations

import datetime as dt

import pytest

from bertbatch_contract import runs


def test_generated_run_ids_are_readable_unique_and_valid() -> None:
    now = dt.datetime(2026, 11, 21, 19, 5, 0, tzinfo=dt.UTC)
    a = runs.generate_run_id("s3://bucket/models/bert-base-uncased/", now=now)
    b = runs.generate_run_id("s3://bucket/models/bert-base-uncased/", now=now)
    assert a.startswith("bert-base-uncased-20261121-190500-")
    assert runs.check_run_id(a) == a
    assert len({a, b, *(runs.generate_run_id("m", now=now) for _ in range(20))}) > 2  # random suffix
    assert runs.generate_run_id("random:tiny", now=now).startswith("random-tiny-")
    assert runs.generate_run_id("", now=now).startswith("run-")


@pytest.mark.parametrize("bad", ["", "-leading-dash", "a/b", "a b", "x" * 101, "..", "ünï", "run-1\n"])
def test_invalid_run_ids_are_refused_with_the_rule(bad: str) -> None:
    with pytest.raises(runs.InvalidRunId) as exc:
        runs.check_run_id(bad, what="--run-name")
    assert str(exc.value) == f"--run-name {bad!r}: {runs.RULE}"


def test_array_children_append_their_index() -> None:
    assert runs.array_run_id("sweep-1", "7") == "sweep-1-7"
    assert runs.array_run_id("sweep-1", 12) == "sweep-1-12"
    with pytest.raises(ValueError):
        runs.array_run_id("sweep-1", "x")
