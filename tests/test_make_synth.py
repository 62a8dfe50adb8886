"""`make synth` end to end: offline, with every AWS variable unset, templates in cdk.out/."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_make_synth_needs_no_aws_credentials(tmp_path):
    env = dict(os.environ)
    # Variables a developer machine might carry: synth must neither need nor use them.
    env.update(
        AWS_PROFILE="does-not-exist",
        AWS_ACCESS_KEY_ID="AKIAINVALIDINVALID00",
        AWS_SECRET_ACCESS_KEY="invalid",
        AWS_REGION="us-west-2",
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
    )
    result = subprocess.run(["make", "synth"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resources in 4 stacks; templates in cdk.out/" in result.stdout
    for stack in ("Network", "Data", "Training", "Monitoring"):
        assert (REPO / "cdk.out" / f"BertBatch-dev-{stack}.template.json").exists()


@pytest.mark.slow
def test_make_synth_stops_on_a_bad_config_value():
    result = subprocess.run(
        ["make", "synth", "CDK_ARGS=-c budget.monthly_limit_usd=-5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    assert "config error: budget.monthly_limit_usd = -5: input should be greater than 0" in result.stderr
    assert "Traceback" not in result.stderr
