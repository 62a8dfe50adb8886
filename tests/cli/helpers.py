"""Assertions shared by the CLI tests."""

from __future__ import annotations

import re

JOB_ID = re.compile(r"Submitted job (\S+)")


def one_line_error(result, *fragments: str) -> str:
    """The command failed with exactly one line, `Error: ...`, containing every fragment."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def submitted_id(output: str) -> str:
    m = JOB_ID.search(output)
    assert m, output
    return m.group(1)


def submit(platform, bb, *args: str) -> str:
    """Submit a job on the moto platform (inputs created) and return its id."""
    train = platform.put_dataset("datasets/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    result = bb("submit", "--train", train, *args)
    assert result.exit_code == 0, result.output
    return submitted_id(result.output)
