"""docker-compose.yml, `.env` files and the Dockerfile read the way Docker reads them, for tests on
a machine with no Docker engine: compose's variable interpolation (of the whole file, before
profiles are applied, as compose does), the env_file format, and each service's environment as
its container sees it (image ENV, then env_file, then `environment`)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# $$ (a literal $), ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error},
# $NAME; anything else after a $ is a form these tests do not model, and fails loudly.
_EXPRESSION = re.compile(
    rf"\$(?:(?P<escaped>\$)|\{{(?P<name>{_NAME})(?:(?P<op>:?[-?])(?P<arg>[^}}$]*))?\}}"
    rf"|(?P<bare>{_NAME})|(?P<other>))"
)


class MissingVariable(Exception):
    """A `${NAME:?error}` whose variable is unset (or empty): compose refuses the whole file."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        if name is None:
            raise ValueError(f"a $ expression these tests do not model: {text!r}")
        value, op, arg = env.get(name), match["op"], match["arg"] or ""
        if op is None:
            return value or ""
        unset = not value if op.startswith(":") else value is None
        if not unset:
            return value or ""
        if op.endswith("-"):
            return arg
        raise MissingVariable(f"{name}: {arg}")

    return _EXPRESSION.sub(replace, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Every string value (not the keys) of a parsed YAML document, interpolated."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines, `#` comments and blank lines only, and values that need no quoting
    rules: compose, `docker run --env-file` and python-dotenv then all read the same values."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        where = f"{path.name}:{number}"
        if not equals or not re.fullmatch(_NAME, name):
            raise ValueError(f"{where}: not a NAME=value line: {line!r}")
        if any(char in value for char in "\"'`$# \t\\"):
            raise ValueError(f"{where}: {name}'s value needs quoting, read differently by tools")
        values[name] = value
    return values


@dataclass(frozen=True)
class Image:
    """What the Dockerfile's final stage sets for the container."""

    env: dict[str, str]
    user: str
    workdir: str
    expose: tuple[int, ...]
    cmd: tuple[str, ...]
    healthcheck: tuple[str, ...]  # the exec-form command, without "CMD"


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def read_dockerfile(path: Path = DOCKERFILE) -> Image:
    instructions = _instructions(path.read_text())
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    env: dict[str, str] = {}
    user, workdir = "", "/"
    expose: tuple[int, ...] = ()
    cmd: tuple[str, ...] = ()
    healthcheck: tuple[str, ...] = ()
    for keyword, rest in instructions[last_from + 1 :]:
        if keyword == "ENV":
            for token in shlex.split(rest):
                name, _, value = token.partition("=")
                env[name] = value
        elif keyword == "USER":
            user = rest
        elif keyword == "WORKDIR":
            workdir = rest
        elif keyword == "EXPOSE":
            expose = tuple(int(port.split("/")[0]) for port in rest.split())
        elif keyword == "CMD":
            cmd = tuple(json.loads(rest))
        elif keyword == "HEALTHCHECK":
            healthcheck = tuple(json.loads(rest.split(" CMD ", 1)[1]))
    return Image(env, user, workdir, expose, cmd, healthcheck)


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


@dataclass(frozen=True)
class PortMapping:
    host_ip: str
    host_port: int
    container_port: int


def port_mappings(service: Mapping[str, Any]) -> list[PortMapping]:
    """Short-syntax `ports` entries: "[host_ip:]host_port:container_port"."""
    mappings = []
    for entry in service.get("ports", []):
        *host, container = str(entry).split(":")
        host_ip = host[0] if len(host) == 2 else ""
        mappings.append(PortMapping(host_ip, int(host[-1]), int(container)))
    return mappings


def env_files(service: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """(path, required) for each env_file entry, in order."""
    entries = service.get("env_file", [])
    if isinstance(entries, str):
        entries = [entries]
    result = []
    for entry in entries:
        if isinstance(entry, str):
            result.append((entry, True))
        else:
            result.append((entry["path"], entry.get("required", True)))
    return result


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    pairs = raw.items() if isinstance(raw, dict) else (item.split("=", 1) for item in raw)
    result = {}
    for name, value in pairs:
        if not isinstance(value, str):  # compose would turn `true` into "true", Python "True"
            raise TypeError(f"environment {name}: quote the value {value!r}")
        result[name] = value
    return result


def container_env(
    service: Mapping[str, Any], image: Image, files: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The container's environment: image ENV (PATH aside), then each env_file present in
    `files` (a required one that is absent fails), then the service's `environment`."""
    env = {name: value for name, value in image.env.items() if name != "PATH"}
    for path, required in env_files(service):
        if path in files:
            env.update(files[path])
        elif required:
            raise FileNotFoundError(f"env_file {path} is required and absent")
    env.update(environment(service))
    return env


def command(service: Mapping[str, Any], image: Image) -> tuple[str, ...]:
    given = service.get("command")
    if given is None:
        return image.cmd
    if not isinstance(given, list):
        raise TypeError("write command in exec form (a list) so no shell stands in between")
    return tuple(given)


def healthcheck(service: Mapping[str, Any], image: Image) -> tuple[str, ...]:
    """The exec-form healthcheck command: the service's own, else the image's."""
    check = service.get("healthcheck")
    if check is None:
        return image.healthcheck
    test = list(check["test"])
    if test[0] != "CMD":
        raise ValueError(f"healthcheck test must be exec form (CMD, ...): {test}")
    return tuple(test[1:])


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """Each dependency and the condition awaited (service_started when none is given)."""
    raw = service.get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}
