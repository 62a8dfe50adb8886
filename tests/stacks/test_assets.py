"""What the assets in the cloud assembly hold: the Lambda code asset (runtime modules and the
contract package) and the training image's build context (the repository root, filtered by the
root .dockerignore allow-list)."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Capture, Match

from platform_constructs import lambda_asset
from stacks.training_stack import (
    BASE_IMAGE_DIGEST_ARG,
    DOCKERFILE,
    EFA_INSTALLER_SHA256_ARG,
    IMAGE_VERSION_ARG,
    PACKAGE,
    REPO_ROOT,
    base_image_digest,
    efa_installer_sha256,
    image_version,
    require_efa_installer,
)
from tests.stacks.conftest import config_for

FUNCTION = "AWS::Lambda::Function"
PYTHON = Match.string_like_regexp("^python")

# Everything the training image may be built from (CDK adds the .dockerignore itself).
IMAGE_CONTEXT_TOPS = {".dockerignore", "bertbatch_contract", "training_container"}
IMAGE_CONTAINER_FILES = {"Dockerfile", "entrypoint.sh", "requirements.lock", "base-image.digest",
                         "efa-installer.sha256", "bert_train"}
# Big folders of a working copy that must never be walked for the image's fingerprint.
HEAVY_DIRS = (".venv", "node_modules", "cdk.out", "tests", ".git", "bench", "docs")


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_every_function_runs_the_one_lambda_asset(dev, dev_training, dev_monitoring):
    found = Capture()
    dev_training.has_resource_properties(FUNCTION, {"Runtime": PYTHON, "Code": {"S3Key": found}})
    key = found.as_string()
    for template in (dev_training, dev_monitoring):
        python_functions = len(template.find_resources(FUNCTION, {"Properties": {"Runtime": PYTHON}}))
        template.resource_properties_count_is(FUNCTION, {"Runtime": PYTHON, "Code": {"S3Key": key}}, python_functions)
    staged = Path(dev.assembly.directory) / f"asset.{key.removesuffix('.zip')}"
    assert files_under(staged) == lambda_asset.expected_files()


def test_lambda_asset_hash_is_the_same_in_every_synth(dev, prod):
    def key(synth) -> str:
        template = synth.template(synth.platform.training)
        template.resource_count_is(FUNCTION, 1)
        found = Capture()
        template.has_resource_properties(FUNCTION, {"Code": {"S3Key": found}})
        return found.as_string()

    assert key(dev) == key(prod)


def test_training_image_is_built_from_the_repository_root(dev):
    asset = dev.platform.training.image_asset
    assert asset is not None
    manifest = Path(dev.assembly.directory) / f"{dev.platform.training.artifact_id}.assets.json"
    source = json.loads(manifest.read_text())["dockerImages"][asset.asset_hash]["source"]
    build_args = source.pop("dockerBuildArgs")
    assert source == {"directory": f"asset.{asset.asset_hash}", "dockerFile": DOCKERFILE, "platform": "linux/amd64"}
    # <package version>-<context hash> (the hash itself: see the test below; the tree may change
    # between the session synth and this line, so it is not recomputed here).
    assert sorted(build_args) == [BASE_IMAGE_DIGEST_ARG, EFA_INSTALLER_SHA256_ARG, IMAGE_VERSION_ARG]
    version = re.escape(importlib.metadata.version(PACKAGE))
    assert re.fullmatch(rf"{version}-[0-9a-f]{{12}}", build_args[IMAGE_VERSION_ARG])
    # the Dockerfile's FROM pins the base image to it
    assert build_args[BASE_IMAGE_DIGEST_ARG] == base_image_digest()
    # the EFA installer's archive is checked against it (empty: the image has no EFA stack)
    assert build_args[EFA_INSTALLER_SHA256_ARG] == efa_installer_sha256()
    assert (REPO_ROOT / DOCKERFILE).is_file()
    dockerfile = (REPO_ROOT / DOCKERFILE).read_text()
    assert f"ARG {IMAGE_VERSION_ARG}" in dockerfile and f"@${{{BASE_IMAGE_DIGEST_ARG}}}" in dockerfile


def test_the_repository_records_the_base_image_digest():
    # without it the first deploy that builds the image would stop at FROM
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", base_image_digest())


def test_base_image_digest_is_read_from_beside_the_dockerfile(tmp_path):
    recorded = tmp_path / "training_container" / "base-image.digest"
    recorded.parent.mkdir()
    recorded.write_text("# not resolved yet\n")
    assert base_image_digest(tmp_path) == ""  # the image build then stops at FROM
    digest = "sha256:" + "0123456789abcdef" * 4
    recorded.write_text(f"# resolved\n{digest}\n")
    assert base_image_digest(tmp_path) == digest
    recorded.write_text("latest\n")
    with pytest.raises(ValueError, match=r"^training_container/base-image.digest: 'latest' is not a sha256:<64 hex> "
                                         r"digest \(make base-image-digest writes it\)$"):
        base_image_digest(tmp_path)


def test_efa_installer_sha256_is_read_from_beside_the_dockerfile(tmp_path):
    recorded = tmp_path / "training_container" / "efa-installer.sha256"
    recorded.parent.mkdir()
    recorded.write_text("# not recorded yet\n")
    assert efa_installer_sha256(tmp_path) == ""  # the image then has no EFA stack
    recorded.write_text("# recorded\n" + "0123456789abcdef" * 4 + "\n")
    assert efa_installer_sha256(tmp_path) == "0123456789abcdef" * 4
    recorded.write_text("sha256:abc\n")
    with pytest.raises(ValueError, match=r"^training_container/efa-installer.sha256: 'sha256:abc' is not a "
                                         r"sha256 \(64 hex\) \(make efa-installer-sha256 writes it\)$"):
        efa_installer_sha256(tmp_path)


def test_efa_on_an_image_built_without_the_efa_stack_stops_at_synth():
    efa = config_for("dev", **{"training.efa": "true"})
    with pytest.raises(ValueError, match=r"^training_container/efa-installer.sha256 holds no sha256: training.efa "
                                         r"needs the EFA stack in the image: run make efa-installer-sha256"):
        require_efa_installer(efa, "")
    require_efa_installer(efa, "0123456789abcdef" * 4)
    require_efa_installer(config_for("dev"), "")  # no EFA: the image may go without it


def test_image_version_is_the_package_version_and_a_hash_of_the_build_context(tmp_path):
    (tmp_path / ".dockerignore").write_text("# comment\n*\n!kept\n")
    (tmp_path / "kept").write_text("a")
    (tmp_path / "ignored").write_text("a")
    version = image_version(tmp_path)
    assert re.fullmatch(r"\d+\.\d+\.\d+[\w.]*-[0-9a-f]{12}", version), version
    (tmp_path / "ignored").write_text("b")
    assert image_version(tmp_path) == version, "a file outside the context must not change the version"
    (tmp_path / "kept").write_text("b")
    assert image_version(tmp_path) != version, "a change inside the context must change the version"


def test_training_image_context_holds_only_the_contract_and_the_container(dev):
    staged = Path(dev.assembly.directory) / f"asset.{dev.platform.training.image_asset.asset_hash}"
    files = files_under(staged)
    assert {f.split("/")[0] for f in files} == IMAGE_CONTEXT_TOPS
    assert {f.split("/")[1] for f in files if f.startswith("training_container/")} == IMAGE_CONTAINER_FILES
    assert "training_container/Dockerfile" in files
    assert "bertbatch_contract/__init__.py" in files and "training_container/bert_train/__init__.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


def _image_ignore_strategy() -> cdk.IgnoreStrategy:
    # What DockerImageAsset does with the context's .dockerignore (and the Dockerfile's name).
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    return cdk.IgnoreStrategy.docker(str(REPO_ROOT), [*patterns, "!.dockerignore", f"!{Path(DOCKERFILE).name}"])


def test_heavy_folders_are_never_walked_for_the_image(dev):
    strategy = _image_ignore_strategy()
    for name in HEAVY_DIRS:
        assert strategy.completely_ignores(str(REPO_ROOT / name)), name
    assert not strategy.ignores(str(REPO_ROOT / DOCKERFILE))
