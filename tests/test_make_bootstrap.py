"""`make bootstrap`: the pinned CDK CLI, with the venv's Python and Node first on PATH, and the
caller's AWS_* variables kept (bootstrap needs credentials, unlike synth).

Nothing here reaches AWS or writes into the repository: the dry run only prints the recipe, and
the real run replaces the CLI with a script that records what it was given in a temporary
directory (`-o` keeps make from running the install recipes).
"""

from __future__ import annotations

import os
import subprocess

from tests.conftest import REPO


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


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
                  "PROFILE=prod", "CDK_ARGS=aws://111122223333/us-east-1", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    args, path, aws_profile, aws_region, imds_off = record.read_text().splitlines()
    assert args == "bootstrap -c profile=prod aws://111122223333/us-east-1"
    assert path.split(":")[:2] == [f"{REPO}/.venv/bin", f"{REPO}/node_modules/.bin"]
    assert (aws_profile, aws_region) == ("deployer", "eu-west-1")
    assert imds_off == "unset"  # an instance profile's credentials work for bootstrap (synth turns IMDS off)


def test_help_readme_and_docs_name_make_bootstrap():
    assert "make bootstrap" in make("help").stdout
    assert "| `make bootstrap` |" in (REPO / "README.md").read_text()
    # `npx cdk bootstrap` from a plain shell finds neither the venv's Python nor Node 24.
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        assert "npx cdk" not in page.read_text(), page.name
