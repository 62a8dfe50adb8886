"""The one code asset of the project's Lambda functions, staged at synth time.

The asset is flat: the modules of `platform_constructs/runtime/` at its root (a function's
handler is `<module>.handler`) beside a copy of the `bertbatch_contract` package they import.
Nothing else of the repository goes in. The copy holds only source files, in a fixed order,
so the asset hash changes only when the code does.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import bertbatch_contract
from platform_constructs import runtime

RUNTIME_DIR = Path(runtime.__file__).resolve().parent
CONTRACT_DIR = Path(bertbatch_contract.__file__).resolve().parent
CONTRACT_PACKAGE = CONTRACT_DIR.name


def handler_modules() -> list[Path]:
    """The function modules (runtime/*.py without the package's __init__)."""
    return sorted(p for p in RUNTIME_DIR.glob("*.py") if p.name != "__init__.py")


def contract_files() -> list[Path]:
    return sorted([*CONTRACT_DIR.glob("*.py"), *CONTRACT_DIR.glob("py.typed")])


def expected_files() -> list[str]:
    """Relative paths of everything the staged asset holds."""
    return sorted(
        [p.name for p in handler_modules()] + [f"{CONTRACT_PACKAGE}/{p.name}" for p in contract_files()]
    )


def stage(target: Path) -> Path:
    """Copy the asset's files into the empty directory `target`; return it."""
    for module in handler_modules():
        shutil.copyfile(module, target / module.name)
    package = target / CONTRACT_PACKAGE
    package.mkdir()
    for path in contract_files():
        shutil.copyfile(path, package / path.name)
    return target


@functools.cache
def staged_directory() -> Path:
    """The staged asset for this process (CDK copies it into the cloud assembly at synth)."""
    directory = Path(tempfile.mkdtemp(prefix="bert-batch-lambda-asset-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return stage(directory)
