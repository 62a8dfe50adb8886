"""cfn-lint validates every synthesized template against the CloudFormation schemas (offline)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _cfn_lint(paths: list[Path]) -> subprocess.CompletedProcess:
    # Run from the repo root so .cfnlintrc.yaml (and its documented ignores) applies.
    return subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("profile", ["dev", "prod"])
def test_every_template_passes_cfn_lint(request, profile):
    synth = request.getfixturevalue(profile)
    templates = sorted(Path(synth.assembly.directory).glob("*.template.json"))
    assert len(templates) == len(synth.platform.stacks)
    result = _cfn_lint(templates)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_rejects_an_invalid_template(tmp_path):
    bad = tmp_path / "bad.template.json"
    bad.write_text(json.dumps({"Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {"NoSuchProperty": 1}}}}))
    result = _cfn_lint([bad])
    assert result.returncode != 0
    assert "NoSuchProperty" in result.stdout


def test_variant_template_passes_cfn_lint(variant_training):
    # The dev/prod templates are linted by `make synth`; this covers the EFA / no-FSx / prebuilt
    # image branches, in process (the same checks and ignores as .cfnlintrc.yaml).
    from cfnlint.api import ManualArgs, lint

    matches = lint(
        json.dumps(variant_training.to_json()), config=ManualArgs(ignore_checks=["W3005"], regions=["us-east-1"])
    )
    assert [str(m) for m in matches] == []
