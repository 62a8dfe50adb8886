"""`make bootstrap`: the pinned CDK CLI, with the venv's Python and Node first on PATH, and the
caller's AWS_* variables kept (bootstrap needs credentials, unlike synth).

Nothing here reaches AWS or writes into the repository: the dry run only prints the recipe, and
the real run replaces the CLI with a script that records what it was given in a temporary
directory (`-o` keeps make from running the install recipes).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


POLICY_ARN = "arn:aws:iam::111122223333:policy/bert-batch-cfn-execution"


def test_bootstrap_runs_the_pinned_cli_with_the_profile():
    result = make("-n", "bootstrap", "PROFILE=prod")
    assert result.returncode == 0, result.stderr
    assert f"{REPO}/node_modules/.bin/cdk bootstrap -c profile=prod" in result.stdout


def test_bootstrap_keeps_credentials_and_puts_the_venv_and_node_modules_first(tmp_path):
    record = tmp_path / "cdk-was-called-with"
    fake_cdk = tmp_path / "cdk.sh"
    fake_cdk.write_text('{ echo "$*"; echo "$PATH"; echo "${AWS_PROFILE:-unset}"; echo "${AWS_REGION:-unset}"; '
                        'echo "${AWS_EC2_METADATA_DISABLED:-unset}"; }'
                        f' > "{record}"\n')
    env = {k: v for k, v in os.environ.items() if k != "AWS_EC2_METADATA_DISABLED"}
    env.update(AWS_PROFILE="deployer", AWS_REGION="eu-west-1")
    result = make("-o", ".venv/.synth-deps", "-o", "node_modules/.installed", "bootstrap", f"CDK=sh {fake_cdk}",
                  "PROFILE=prod", "CDK_ARGS=aws://111122223333/us-east-1", f"CFN_EXECUTION_POLICY_ARN={POLICY_ARN}",
                  env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    args, path, aws_profile, aws_region, imds_off = record.read_text().splitlines()
    # the CloudFormation execution role gets the shipped policy, not AdministratorAccess
    assert args == (f"bootstrap -c profile=prod --cloudformation-execution-policies {POLICY_ARN} "
                    "aws://111122223333/us-east-1")
    assert path.split(":")[:2] == [f"{REPO}/.venv/bin", f"{REPO}/node_modules/.bin"]
    assert (aws_profile, aws_region) == ("deployer", "eu-west-1")
    assert imds_off == "unset"  # an instance profile's credentials work for bootstrap (synth turns IMDS off)


def test_help_readme_and_docs_name_make_bootstrap():
    assert "make bootstrap" in make("help").stdout
    assert "| `make bootstrap` |" in (REPO / "README.md").read_text()
    # `npx cdk bootstrap` from a plain shell finds neither the venv's Python nor Node 24.
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        assert "npx cdk" not in page.read_text(), page.name


def test_bootstrap_without_credentials_or_a_policy_arn_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true", AWS_REGION="us-east-1")
    result = make("-o", ".venv/.synth-deps", "-o", "node_modules/.installed", "bootstrap", "CDK=false", env=env)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()[:1]
    assert "CFN_EXECUTION_POLICY_ARN" in line and "account" in line


DEPLOY_TOOL_INPUTS = ("requirements.txt", "constraints.txt", "pyproject.toml", "package.json", "package-lock.json")


@pytest.mark.parametrize("target", ["diff", "deploy"])
def test_diff_and_deploy_install_nothing_once_the_tools_are_installed(target, tmp_path):
    """CI runs `make deploy-tools` before it assumes the deploy role: afterwards the targets that
    run with the credentials must find every install up to date."""
    for name in ("Makefile", *DEPLOY_TOOL_INPUTS):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / ".venv").mkdir()
    (tmp_path / "node_modules").mkdir()
    fresh = subprocess.run(["make", "-n", target], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "pip install" in fresh.stdout and "npm ci" in fresh.stdout  # a fresh checkout would install
    subprocess.run(["make", "-t", "deploy-tools"], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    installed = subprocess.run(["make", "-n", target], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    assert "pip" not in installed.stdout and "npm" not in installed.stdout and "venv" not in installed.stdout
    assert f"cdk {target} --all" in installed.stdout
