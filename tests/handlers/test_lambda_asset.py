"""The Lambda asset: the runtime modules and a copy of the contract package, nothing else, and
each handler imports from it alone (plus boto3, which the Lambda runtime provides)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from platform_constructs import lambda_asset

HANDLER_MODULES = ("fallback", "guardrail", "job_gauge")
# Where boto3 is installed here: the Lambda runtime ships its own.
BOTO3_SITE = str(Path(boto3.__file__).resolve().parent.parent)


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lambda_asset.stage(tmp_path_factory.mktemp("asset"))


def test_asset_holds_only_the_handler_modules_and_the_contract_package(staged):
    files = files_under(staged)
    assert files == lambda_asset.expected_files()
    assert sorted(f for f in files if "/" not in f) == [f"{m}.py" for m in HANDLER_MODULES]
    assert {f.split("/")[0] for f in files if "/" in f} == {"bertbatch_contract"}
    assert "bertbatch_contract/__init__.py" in files
    assert not [f for f in files if f.endswith(".pyc") or "__pycache__" in f]


def test_staging_is_deterministic(staged, tmp_path):
    again = lambda_asset.stage(tmp_path)
    assert files_under(again) == files_under(staged)
    for name in files_under(staged):
        assert (again / name).read_bytes() == (staged / name).read_bytes()


@pytest.mark.parametrize("module", HANDLER_MODULES)
def test_each_handler_imports_with_only_the_asset_on_the_path(staged, module, tmp_path):
    # -I -S: no site-packages, no editable installs, no working directory on sys.path; then only
    # the asset and boto3's directory. The contract package must come from the asset.
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; "
        f"import {module}, bertbatch_contract; "
        f"assert callable({module}.handler); "
        "print(bertbatch_contract.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(staged), BOTO3_SITE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(staged)


def test_a_handler_that_needs_more_than_the_asset_fails_to_import(staged, tmp_path):
    # The check above can fail: a module importing the project's CLI is not importable there.
    (tmp_path / "asset").mkdir()
    for name in files_under(staged):
        target = tmp_path / "asset" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((staged / name).read_bytes())
    (tmp_path / "asset" / "bad.py").write_text("import bertbatch\n")
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            "import sys; sys.path[:0] = [sys.argv[1]]; import bad",
            str(tmp_path / "asset"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "No module named 'bertbatch'" in result.stderr
