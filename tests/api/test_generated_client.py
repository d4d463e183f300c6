"""A Python client generated from openapi.json (openapi-python-client, as a user would run it)
comes out without a warning and parses every documented error of every operation."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "openapi.json"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


def _generate(tmp_path: Path) -> tuple[Path, str]:
    config = tmp_path / "config.yaml"
    config.write_text("post_hooks: []\n", encoding="utf-8")  # no ruff run over the output
    out = tmp_path / "client"
    command = [
        str(GENERATOR),
        "generate",
        "--path",
        str(COMMITTED),
        "--meta",
        "none",
        "--output-path",
        str(out),
        "--config",
        str(config),
    ]
    result = subprocess.run(  # noqa: S603 - our own venv's program, fixed arguments
        command, capture_output=True, text=True, timeout=300, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return out, output


def _parsed_statuses(module: Path) -> set[int]:
    """The statuses `_parse_response` turns into a value (`if response.status_code == N:`)."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    parse = next(
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "_parse_response"
    )
    return {
        comparator.value
        for node in ast.walk(parse)
        if isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Attribute)
        and node.left.attr == "status_code"
        for comparator in node.comparators
        if isinstance(comparator, ast.Constant) and isinstance(comparator.value, int)
    }


def _enum_values(module: Path) -> set[str]:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    return {
        node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def test_generated_python_client_has_every_error_of_every_operation(tmp_path: Path) -> None:
    out, output = _generate(tmp_path)
    assert "warning" not in output.lower(), output

    document: dict[str, Any] = json.loads(COMMITTED.read_text(encoding="utf-8"))
    modules = {path.stem: path for path in (out / "api").rglob("*.py")}
    operations = [
        operation for methods in document["paths"].values() for operation in methods.values()
    ]
    assert operations
    for operation in operations:
        documented = {int(status) for status in operation["responses"]}
        assert any(status >= 400 for status in documented)
        module = modules[operation["operationId"].replace("-", "_")]
        assert _parsed_statuses(module) == documented, operation["operationId"]

    # One error model, not a copy per operation, and its code a closed set.
    models = sorted(path.stem for path in (out / "models").glob("*.py"))
    assert [name for name in models if "problem" in name] == ["problem", "problem_code"]
    codes = document["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
    assert _enum_values(out / "models" / "problem_code.py") == set(codes)
