"""The walls between layers, read from the source: every import of every module under app/.

api -> flows -> {store, flinks}; the Flinks client knows nothing of Redis, FastAPI or the app;
the store keeps the domain's records and nothing of the service; the sandbox shares no code with
the BFF, and the BFF starts it only as a process (`flinks-bff dev`, `flinks-bff sandbox`); the
events-out sender knows nothing of the app, and the development receiver nothing of the BFF.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"


@dataclass(frozen=True)
class Wall:
    layer: str  # a module path prefix, e.g. "app/api/" or "app/store.py"
    forbidden: tuple[str, ...]  # module names, each also forbidding its submodules
    allowed: tuple[str, ...] = ()  # exceptions to `forbidden`
    why: str = ""


WALLS = (
    Wall("app/api/", ("app.store", "redis", "httpx"), why="the API talks to the domain"),
    Wall("app/flows/", ("fastapi", "starlette", "httpx", "redis"), why="the domain is HTTP-free"),
    Wall(
        "app/flinks/",
        ("app", "fastapi", "starlette", "redis"),
        allowed=("app.flinks",),
        why="the Flinks client knows nothing of the app",
    ),
    Wall(
        "app/outbound/",
        ("app", "fastapi", "starlette", "redis"),
        allowed=("app.outbound",),
        why="the events-out sender knows nothing of the app",
    ),
    Wall(
        "app/receiver.py",
        ("app",),
        why="the development receiver is the host backend's stand-in, not the BFF",
    ),
    Wall(
        "app/store.py",
        ("app.flows", "app.flinks"),
        allowed=("app.flows.records",),
        why="the store keeps the domain's records, not its service",
    ),
    Wall(
        "app/sandbox/",
        ("app",),
        allowed=("app.sandbox",),
        why="the sandbox shares no code with the BFF",
    ),
)

# The one BFF module that may reach the sandbox, and only inside a function: `flinks-bff
# sandbox` hands its arguments to the sandbox's own command (`dev` runs `python -m app.sandbox`).
SANDBOX_LAUNCHER = "app/cli.py"


@dataclass(frozen=True)
class Import:
    path: str  # relative to the repository, e.g. app/api/tokens.py
    line: int
    module: str
    top_level: bool

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.module}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, path: str) -> Iterator[Import]:
    """Every name `source` imports: `import a.b` as a.b, `from a import b` as a.b."""
    tree = ast.parse(source, filename=path)
    top_level = {id(node) for node in tree.body}
    module = _module_name(ROOT / path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        at_top = id(node) in top_level
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name, at_top)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield Import(path, node.lineno, f"{base}.{alias.name}", at_top)


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def violations(found: Import) -> Iterator[str]:
    for wall in WALLS:
        if (
            found.path.startswith(wall.layer)
            and _within(found.module, wall.forbidden)
            and not _within(found.module, wall.allowed)
        ):
            yield f"{found} ({wall.why})"
    in_sandbox = found.path.startswith("app/sandbox/")
    if not in_sandbox and _within(found.module, ("app.sandbox",)):
        if found.path != SANDBOX_LAUNCHER:
            yield f"{found} (the BFF starts the sandbox as a process; it imports none of it)"
        elif found.top_level:
            yield f"{found} (only inside the command that runs the sandbox, not at module level)"


def _app_modules() -> Iterator[Path]:
    yield from sorted(APP.rglob("*.py"))


def test_no_module_imports_across_a_wall() -> None:
    found = [
        problem
        for path in _app_modules()
        for imported in imports_of(path.read_text(), str(path.relative_to(ROOT)))
        for problem in violations(imported)
    ]
    assert found == [], "imports across a wall:\n" + "\n".join(found)


def test_every_layer_is_checked() -> None:
    """A wall whose layer matches no file checks nothing (a renamed package, say)."""
    paths = [str(path.relative_to(ROOT)) for path in _app_modules()]
    for wall in WALLS:
        assert any(path.startswith(wall.layer) for path in paths), wall.layer


def test_a_forbidden_import_is_reported_with_its_file_and_line() -> None:
    source = "from __future__ import annotations\n\nimport httpx\nfrom app.store import Store\n"
    found = [p for i in imports_of(source, "app/api/tokens.py") for p in violations(i)]
    assert found == [
        "app/api/tokens.py:3: imports httpx (the API talks to the domain)",
        "app/api/tokens.py:4: imports app.store.Store (the API talks to the domain)",
    ]


def test_the_sandbox_is_reached_only_from_inside_the_launcher() -> None:
    nested = "def run() -> None:\n    from app.sandbox.cli import main\n"
    assert [p for i in imports_of(nested, SANDBOX_LAUNCHER) for p in violations(i)] == []
    top = "from app.sandbox.cli import main\n"
    assert [p for i in imports_of(top, SANDBOX_LAUNCHER) for p in violations(i)]
    assert [p for i in imports_of(nested, "app/main.py") for p in violations(i)]
    relative = "from ..store import Store\n"
    assert [p for i in imports_of(relative, "app/sandbox/app.py") for p in violations(i)]
