"""Assertions shared by the CLI tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

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


def stage_model(s3, bucket: str, name: str, source: str = "hf://test") -> str:
    """A staged model in the artifacts `bucket`: one file and its manifest (what `models import`
    leaves); returns its s3:// prefix."""
    from bertbatch.models import ModelFile, manifest_of
    from bertbatch_contract import layout

    body = b'{"model_type": "bert"}'
    s3.put_object(Bucket=bucket, Key=layout.model_prefix(name) + "config.json", Body=body)
    files = [ModelFile(path="config.json", local=Path("config.json"), size=len(body), sha256="0" * 64)]
    s3.put_object(Bucket=bucket, Key=layout.model_manifest_key(name),
                           Body=json.dumps(manifest_of(name, source, files)).encode())
    return f"s3://{bucket}/{layout.model_prefix(name)}"
