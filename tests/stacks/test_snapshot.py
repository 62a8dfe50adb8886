"""Template snapshots: each stack of the dev profile against tests/stacks/snapshots/dev-<stack>.json.

An aws-cdk-lib bump, or any change to the infrastructure, shows here as a diff of the templates.
Asset hashes (Lambda code S3 keys, the training image's tag, any 64-hex asset name) change with
every code change and are masked, so that only infrastructure changes show.

After an intended change, rewrite the snapshots and review their diff before committing:

    UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/stacks/test_snapshot.py

That variable is the only way this test writes into the repository; without it, it only reads.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.stacks.conftest import STACKS

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE_VARIABLE = "UPDATE_SNAPSHOTS"
ASSET_HASH = re.compile(r"[0-9a-f]{64}")
ASSET_HASH_MASK = "<asset-hash>"
DIFF_LINES = 40  # a failure shows the first differences, not the whole template


def masked(value: Any) -> Any:
    """`value` with every asset hash in its strings (keys too) replaced by ASSET_HASH_MASK."""
    if isinstance(value, str):
        return ASSET_HASH.sub(ASSET_HASH_MASK, value)
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, dict):
        return {masked(k): masked(v) for k, v in value.items()}
    return value


def snapshot_text(template: dict[str, Any]) -> str:
    return json.dumps(masked(template), indent=2, sort_keys=True) + "\n"


def mismatch_message(stack: str, stored: str, synthesized: str, limit: int = DIFF_LINES) -> str:
    """The stack's name, a unified diff of the first differences, and how to update."""
    diff = list(difflib.unified_diff(stored.splitlines(), synthesized.splitlines(),
                                     f"snapshots/dev-{stack}.json", f"synthesized {stack}", lineterm="", n=2))
    shown = "\n".join(diff[:limit])
    more = f"\n... {len(diff) - limit} more diff lines" if len(diff) > limit else ""
    return (f"the dev {stack} template differs from its snapshot:\n{shown}{more}\n"
            f"(if intended: {UPDATE_VARIABLE}=1 .venv/bin/python -m pytest tests/stacks/test_snapshot.py)")


@pytest.mark.parametrize("stack", STACKS)
def test_each_dev_template_matches_its_snapshot(request: pytest.FixtureRequest, stack: str) -> None:
    template: Template = request.getfixturevalue(f"dev_{stack}")
    synthesized = snapshot_text(template.to_json())
    path = SNAPSHOTS / f"dev-{stack}.json"
    if os.environ.get(UPDATE_VARIABLE) == "1":
        path.write_text(synthesized, encoding="utf-8")
        pytest.skip(f"rewrote {path.name}: nothing compared")
    assert path.exists(), f"no snapshot {path.name}: run {UPDATE_VARIABLE}=1 on tests/stacks/test_snapshot.py"
    stored = path.read_text(encoding="utf-8")
    if stored != synthesized:
        pytest.fail(mismatch_message(stack, stored, synthesized), pytrace=False)


def test_masking_hides_asset_hashes_and_nothing_else() -> None:
    digest = "ab" * 32
    template = {
        "Resources": {
            "Fn": {"Properties": {"Code": {"S3Key": f"{digest}.zip"}, "Runtime": "python3.12"}},
            "Job": {"Properties": {"Image": {"Fn::Sub": f"${{AWS::AccountId}}.dkr.ecr/cdk-assets:{digest}"}}},
            "Commit": {"Properties": {"Sha1": "c" * 40, "Size": 64}},
        }
    }
    assert json.loads(snapshot_text(template)) == {
        "Resources": {
            "Fn": {"Properties": {"Code": {"S3Key": f"{ASSET_HASH_MASK}.zip"}, "Runtime": "python3.12"}},
            "Job": {"Properties": {"Image": {"Fn::Sub": f"${{AWS::AccountId}}.dkr.ecr/cdk-assets:{ASSET_HASH_MASK}"}}},
            "Commit": {"Properties": {"Sha1": "c" * 40, "Size": 64}},
        }
    }


def test_a_mismatch_names_the_stack_and_shows_only_the_first_differences() -> None:
    stored = "".join(f"line {i}\n" for i in range(500))
    synthesized = "".join(f"line {i}{' changed' if i % 10 == 0 else ''}\n" for i in range(500))
    message = mismatch_message("training", stored, synthesized, limit=12)
    lines = message.splitlines()
    assert lines[0] == "the dev training template differs from its snapshot:"
    assert lines[1:4] == ["--- snapshots/dev-training.json", "+++ synthesized training", "@@ -1,3 +1,3 @@"]
    assert "-line 0" in lines and "+line 0 changed" in lines
    assert "+line 490 changed" not in lines
    assert len(lines) == 1 + 12 + 2  # header, the diff's first lines, the count left out, how to update
    assert lines[-2].startswith("... ") and lines[-2].endswith(" more diff lines")
