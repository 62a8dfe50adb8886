"""The dependency picture: the contract package at the bottom; the container, the CLI and the
infrastructure as siblings above it; app.py on top. Read from the source, so an import that
runs upward fails here, not in a reviewer's head."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from tests.conftest import REPO

# package -> (its source directory, the first-party packages it may import)
LAYERS: dict[str, tuple[str, set[str]]] = {
    "bertbatch_contract": ("bertbatch_contract", set()),
    "bert_train": ("training_container/bert_train", {"bertbatch_contract"}),
    "bertbatch": ("bertbatch", {"bertbatch_contract"}),
    "platform_constructs": ("platform_constructs", {"bertbatch_contract"}),
    "stacks": ("stacks", {"bertbatch_contract", "platform_constructs"}),
}
FIRST_PARTY = set(LAYERS) | {"app", "bench", "tests"}
PRODUCT_DIRS = [directory for directory, _ in LAYERS.values()]
SOURCE_DIRS = [*PRODUCT_DIRS, "bench"]
MAX_FUNCTION_LINES = 100
MAX_CLASS_LINES = 200
# bench/ measures the product and is not shipped: its scripts keep the looser limit they grew under.
MAX_BENCH_FUNCTION_LINES = 150


def _python_files(directory: str) -> list[Path]:
    return sorted(p for p in (REPO / directory).rglob("*.py") if "__pycache__" not in p.parts)


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & FIRST_PARTY


@pytest.mark.parametrize("package", list(LAYERS))
def test_nothing_imports_upward_or_sideways(package: str) -> None:
    directory, allowed = LAYERS[package]
    wrong = {
        f"{path.relative_to(REPO)} imports {other}"
        for path in _python_files(directory)
        for other in _imported_packages(path) - allowed - {package}
    }
    assert not wrong, sorted(wrong)


def test_the_contract_package_uses_only_the_standard_library() -> None:
    import sys

    for path in _python_files("bertbatch_contract"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                else []
            )
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "bertbatch_contract", f"{path.name}: {name}"


Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _longer_than(directories: list[str], kinds: tuple[type[Definition], ...], limit: int) -> list[str]:
    """Each definition of one of `kinds` under `directories` longer than `limit` lines."""
    long = []
    for directory in directories:
        for path in _python_files(directory):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, kinds):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > limit:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    return long


FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def test_no_product_function_is_longer_than_the_limit() -> None:
    long = _longer_than(PRODUCT_DIRS, FUNCTIONS, MAX_FUNCTION_LINES)
    assert not long, long


def test_no_product_class_is_longer_than_the_limit() -> None:
    long = _longer_than(PRODUCT_DIRS, (ast.ClassDef,), MAX_CLASS_LINES)
    assert not long, long


def test_no_bench_function_is_longer_than_its_limit() -> None:
    long = _longer_than(["bench"], FUNCTIONS, MAX_BENCH_FUNCTION_LINES)
    assert not long, long


def test_no_argument_parser_accepts_abbreviated_options() -> None:
    """argparse takes a prefix of a long option by default: `--output` reached the trainer as
    `--output-uri`. Every parser in the project is built with allow_abbrev=False."""
    loose = []
    for directory in [*SOURCE_DIRS, "tests"]:
        for path in _python_files(directory):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                if getattr(node.func, "attr", getattr(node.func, "id", "")) != "ArgumentParser":
                    continue
                if not any(k.arg == "allow_abbrev" and isinstance(k.value, ast.Constant) and k.value.value is False
                           for k in node.keywords):
                    loose.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not loose, loose


# The CLI package: topic packages (core, jobs, models, runs, cost, ui) under the click layer,
# commands/, with only the package and its entry point at the top (docs/cli.md, "Code layout").
CLI_DIR = "bertbatch"
COMMANDS_DIR = f"{CLI_DIR}/commands"
CLI_TOP_LEVEL = {"__init__", "cli"}
CLICK_LAYER = ("bertbatch.cli", "bertbatch.commands")
# A command parses its options, calls its topic modules and prints; its docstring (the --help
# text) does not count. The longest today is `estimate` at 57 lines.
MAX_COMMAND_CODE_LINES = 60


def test_the_cli_package_has_only_its_entry_point_at_the_top() -> None:
    loose = sorted(p.name for p in (REPO / CLI_DIR).glob("*.py") if p.stem not in CLI_TOP_LEVEL)
    assert not loose, f"{CLI_DIR}/: {loose} belong in a topic package"


def _differ_only_at_the_ends(first: str, second: str) -> bool:
    """One name is the other with words added before or after it (`logs`, `job_logs`): two such
    modules do not say which holds what. Equal names count too."""
    short, long = sorted((first.split("_"), second.split("_")), key=len)
    return long[: len(short)] == short or long[len(long) - len(short):] == short


def test_no_two_cli_modules_have_names_that_differ_only_by_a_leading_or_trailing_word() -> None:
    modules = [p for p in _python_files(CLI_DIR) if p.name != "__init__.py"]
    alike = [f"{a.relative_to(REPO)} ~ {b.relative_to(REPO)}" for a, b in itertools.combinations(modules, 2)
             if _differ_only_at_the_ends(a.stem, b.stem)]
    assert not alike, alike


def _code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The lines of a function's body, its docstring left out."""
    body = function.body[1:] if ast.get_docstring(function) is not None else function.body
    return (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1 if body else 0


def test_the_commands_stay_a_thin_click_layer() -> None:
    long = [f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({_code_lines(node)} lines)"
            for path in _python_files(COMMANDS_DIR)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, FUNCTIONS) and _code_lines(node) > MAX_COMMAND_CODE_LINES]
    assert not long, f"move the logic into a topic package: {long}"


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved, `from a import b` as both a and a.b."""
    package = list(path.relative_to(REPO).parent.parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            found |= {source} | {f"{source}.{alias.name}" for alias in node.names}
    return found


def test_no_topic_module_imports_the_click_layer() -> None:
    below = [p for p in _python_files(CLI_DIR)
             if COMMANDS_DIR not in p.relative_to(REPO).as_posix() and p.parent != REPO / CLI_DIR]
    upward = sorted(f"{path.relative_to(REPO)} imports {module}" for path in below
                    for module in _imported_modules(path) if module.startswith(CLICK_LAYER))
    assert not upward, upward
