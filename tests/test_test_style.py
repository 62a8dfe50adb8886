"""How the stack tests read templates, checked from their source: through aws_cdk.assertions
(`Template.has_resource_properties` and friends, with `Match` and `Capture`), whose failures show
the closest resource and where it differs, not by indexing a resource's raw "Properties"."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

STACK_TESTS = REPO / "tests" / "stacks"

# (file under tests/stacks/, function) -> why reading a resource's raw properties is the right tool
# there. Each entry must still be in use (the second test), so the list cannot outlive its reason.
RAW_PROPERTIES_ALLOWED: dict[tuple[str, str], str] = {
    ("test_job_definitions.py", "test_without_fsx_nothing_in_the_training_stack_names_it"):
        "a text search through every resource's properties at any depth, which no Match pattern does",
}


def _lookups(path: Path) -> list[tuple[str, int]]:
    """(innermost enclosing function or "<module>", line) of each `x["Properties"]` or
    `x.get("Properties", ...)` in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    owner: dict[int, str] = {}
    for function in ast.walk(tree):  # breadth first: an inner function overrides its outer one
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(function):
                owner[id(node)] = function.name
    return [(owner.get(id(node), "<module>"), node.lineno) for node in ast.walk(tree) if _reads_properties(node)]


def _reads_properties(node: ast.AST) -> bool:
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "Properties"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "Properties"
    return False


def _stack_test_lookups() -> dict[tuple[str, str], list[int]]:
    found: dict[tuple[str, str], list[int]] = {}
    for path in sorted(STACK_TESTS.rglob("*.py")):
        for function, line in _lookups(path):
            found.setdefault((str(path.relative_to(STACK_TESTS)), function), []).append(line)
    return found


def test_stack_tests_match_properties_instead_of_indexing_them() -> None:
    raw = {
        f"tests/stacks/{file}:{lines[0]} ({function})"
        for (file, function), lines in _stack_test_lookups().items()
        if (file, function) not in RAW_PROPERTIES_ALLOWED
    }
    assert not raw, (
        "assert through Template.has_resource_properties / find_resources with Match and Capture, "
        f"or add the function to RAW_PROPERTIES_ALLOWED with the reason: {sorted(raw)}"
    )


def test_every_allowed_raw_lookup_is_still_there() -> None:
    stale = set(RAW_PROPERTIES_ALLOWED) - set(_stack_test_lookups())
    assert not stale, f"remove from RAW_PROPERTIES_ALLOWED: {sorted(stale)}"


def test_the_guard_finds_both_forms_and_their_function(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text(
        "top = r['Properties']\n"
        "def outer(r):\n"
        "    def inner(r):\n"
        "        return r.get('Properties', {})\n"
        "    return r['Properties']['X'], r['Type'], r.get('Type')\n"
    )
    assert sorted(_lookups(source)) == [("<module>", 1), ("inner", 4), ("outer", 5)]
