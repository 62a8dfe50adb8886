"""The README's commands, as a new user types them.

Each ```sh block in the README is preceded by `<!-- commands: KIND -->`:
- `offline`: runs as written on a fresh clone with no AWS account. The test runs the block
  with bash, in a temporary directory that has the repository's `examples/` and this venv's
  `bin/` as `.venv/bin/`, every AWS variable removed and the model hub off.
- `make` (and `make, needs AWS credentials`): make targets; `make -n` must know each one (CI
  runs `make synth` and `make test` for real).
- `deployment`: needs a deployed platform. Each `bertbatch` command must parse (an unknown
  option or a missing argument is a usage error, exit 2) and reaches for AWS, which the test
  refuses; `aws batch submit-job` names a queue, a job definition and a share identifier (team)
  the dev templates declare.
The `bertbatch` commands in docs/*.md code blocks get the same parse check.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bertbatch.cli import cli
from bertbatch.core import aws_clients as aws
from bertbatch.core.errors import NoAwsAccess
from tests.conftest import REPO
from tests.platform_from_templates import synthesized

README = REPO / "README.md"
KINDS = {"offline", "make", "make, needs AWS credentials", "deployment"}
ANNOTATED = re.compile(r"<!-- commands: (?P<kind>[^>]+?) -->\n```sh\n(?P<body>.*?)```", re.S)
SHELL_BLOCK = re.compile(r"```sh\n(?P<body>.*?)```", re.S)
ANY_BLOCK = re.compile(r"```(?:sh|bash|console|)\n(?P<body>.*?)```", re.S)  # docs also show commands in plain blocks
# A command line that runs bertbatch: `bertbatch ARGS`, `.venv/bin/bertbatch ARGS`, `$ bertbatch ARGS`,
# `job=$(bertbatch ARGS | ...)`; its arguments end at a pipe or the closing parenthesis.
BERTBATCH = re.compile(r"^(?:\$ )?(?:\w+=\$\()?(?:\.venv/bin/)?bertbatch(?:\s(?P<args>[^|)]*))?(?:$|[|)])")


def readme_blocks(kind: str | None = None) -> list[str]:
    return [m["body"] for m in ANNOTATED.finditer(README.read_text()) if kind is None or m["kind"] == kind]


def command_lines(body: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    lines = []
    for raw in re.sub(r"\\\n\s*", " ", body).splitlines():
        try:
            if not shlex.split(raw, comments=True):
                continue
        except ValueError:  # not shell: output shown in a plain block
            continue
        lines.append(re.sub(r"\s+#[^'\"]*$", "", raw).strip())
    return lines


def test_every_shell_block_of_the_readme_says_what_it_needs():
    text = README.read_text()
    annotated = list(ANNOTATED.finditer(text))
    assert len(annotated) == len(SHELL_BLOCK.findall(text)), "a ```sh block without <!-- commands: KIND -->"
    assert {m["kind"] for m in annotated} <= KINDS
    assert readme_blocks("offline") and readme_blocks("deployment")


# --- offline: run as written ----------------------------------------------------------------
def offline_environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(home / "hf"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(readme_blocks("offline"))))
def test_offline_readme_block_runs_as_written(index, tmp_path):
    body = readme_blocks("offline")[index]
    (tmp_path / "examples").symlink_to(REPO / "examples")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=tmp_path, env=offline_environment(tmp_path),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "Error:" not in result.stdout + result.stderr


def test_quickstart_script_is_the_readme_block():
    """`make quickstart` runs examples/quickstart.sh: the README shows its commands, not a copy
    that could drift."""
    script = (REPO / "examples" / "quickstart.sh").read_text()
    script_commands = [line for line in command_lines(script) if not line.startswith("set ")]
    assert script_commands in [command_lines(body) for body in readme_blocks("offline")]
    assert "bash examples/quickstart.sh" in subprocess.run(["make", "-n", "quickstart"], cwd=REPO, text=True,
                                                          capture_output=True, timeout=120).stdout


# --- make: every target exists ---------------------------------------------------------------
@pytest.mark.parametrize("line", [line for kind in ("make", "make, needs AWS credentials")
                                  for body in readme_blocks(kind) for line in command_lines(body)])
def test_readme_make_targets_exist(line):
    words = shlex.split(line)
    assert words[0] == "make", line
    # -n prints the recipe without running it; -o keeps it from planning the installs.
    dry = subprocess.run(["make", "-n", "-o", ".venv/.synth-deps", "-o", ".venv/.dev-deps", "-o",
                          "node_modules/.installed", "-o", ".venv-checkov/.installed", *words[1:]],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr


# --- deployment: every command parses, and what it names exists --------------------------------
def bertbatch_invocations(text: str) -> list[list[str]]:
    found = []
    for block in ANY_BLOCK.finditer(text):
        for line in command_lines(block["body"]):
            m = BERTBATCH.match(line)
            if m and m["args"] and m["args"].strip():  # a bare `bertbatch` (shell completion) runs nothing
                found.append(shlex.split(m["args"]))
    return found


class WouldCallAws(NoAwsAccess):
    pass


def parses(args: list[str], monkeypatch) -> tuple[int, str]:
    def refuse(service: str, **_: object) -> None:
        raise WouldCallAws(f"would call {service}")

    monkeypatch.setattr(aws, "make_client", refuse)
    result = CliRunner().invoke(cli, args, prog_name="bertbatch", terminal_width=200, color=False)
    return result.exit_code, result.output


DEPLOYMENT_COMMANDS = [args for body in readme_blocks("deployment")
                       for args in bertbatch_invocations(f"```sh\n{body}```")]
DOCS_COMMANDS = [(page.name, args) for page in sorted((REPO / "docs").glob("*.md"))
                 for args in bertbatch_invocations(page.read_text())]


@pytest.mark.parametrize("args", DEPLOYMENT_COMMANDS, ids=" ".join)
def test_readme_deployment_commands_parse(args, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing a command might write lands in the repository
    code, output = parses(args, monkeypatch)
    assert code != 2, output  # a usage error: the README names an option or argument the CLI lacks


@pytest.mark.parametrize(("page", "args"), DOCS_COMMANDS, ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_docs_bertbatch_commands_parse(page, args, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, output = parses(args, monkeypatch)
    assert code != 2, f"{page}: bertbatch {' '.join(args)}\n{output}"


def test_readme_aws_batch_submit_job_names_what_the_dev_templates_declare():
    from aws_cdk.assertions import Match, Template

    lines = [line for body in readme_blocks("deployment") for line in command_lines(body)
             if line.startswith("aws batch submit-job")]
    assert lines
    templates = [Template.from_json(template) for template in synthesized("dev").values()]

    def declared(kind: str, properties: dict) -> bool:
        return any(template.find_resources(kind, {"Properties": properties}) for template in templates)

    for line in lines:
        words = shlex.split(line)
        assert declared("AWS::Batch::JobQueue", {"JobQueueName": words[words.index("--job-queue") + 1]}), line
        assert declared("AWS::Batch::JobDefinition",
                        {"JobDefinitionName": words[words.index("--job-definition") + 1]}), line
        # every queue has a fair-share policy: a job without a share identifier is refused
        assert "--share-identifier" in words, line
        share = Match.object_like({"ShareIdentifier": words[words.index("--share-identifier") + 1]})
        assert declared("AWS::Batch::SchedulingPolicy",
                        {"FairsharePolicy": {"ShareDistribution": Match.array_with([share])}}), line
