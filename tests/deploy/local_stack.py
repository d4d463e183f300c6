"""A compose profile run as local processes, with no Docker: each service's own command and its
container's environment, with compose hostnames and ports turned into 127.0.0.1 and ports
reserved for this run (tests/ports.py), and an embedded Valkey (tests/redis_server.py) standing
in for the redis service. Services start in depends_on order, each awaited through its own
healthcheck command, run the same way."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import IO, Any

from tests.deploy.compose_file import (
    Image,
    command,
    container_env,
    depends_on,
    healthcheck,
    port_mappings,
)
from tests.ports import HOST, PortReservation, reserve_port
from tests.redis_server import start_redis_server
from tests.waiting import scaled, wait_until

REDIS_SERVICE = "redis"  # runs the redis image: the embedded Valkey stands in for it
REDIS_CONTAINER_PORT = 6379
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - what a container binds; a local process binds HOST
_CONFIG_PREFIXES = ("BFF_", "FLINKS_", "REDIS_URL", "REDIS_CLUSTER", "SANDBOX_")
READY_TIMEOUT = 120.0
_EXECUTABLES = {
    "flinks-bff": str(Path(sys.executable).parent / "flinks-bff"),
    "python": sys.executable,
}


@dataclass
class LocalService:
    name: str
    port: int  # where it listens here
    container_port: int  # where it listens in its container
    env: dict[str, str] = field(default_factory=dict)  # its container's, translated
    reservation: PortReservation | None = None  # held until the service listens
    process: subprocess.Popen[bytes] | None = None
    output: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def own_addresses(self) -> dict[str, str]:
        """Its loopback addresses inside its container, and where they are here."""
        return {f"{h}:{self.container_port}": f"{h}:{self.port}" for h in (HOST, "localhost")}

    def log(self) -> str:
        if self.output is None:
            return ""
        text = Path(self.output.name).read_text(errors="replace")
        return f"--- output of {self.name} ---\n{text[-4000:]}"


@dataclass
class LocalStack:
    services: dict[str, LocalService]
    # compose address -> local address, e.g. "sandbox:8001" -> "127.0.0.1:40123"
    addresses: dict[str, str]

    def translate(self, value: str, own: Mapping[str, str] | None = None) -> str:
        """`value` with every compose address replaced; `own` (a service's loopback addresses
        inside its container) wins over the rest."""
        table = {**self.addresses, **(own or {})}
        keys = sorted(table, key=len, reverse=True)
        pattern = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, keys)) + r")(?!\d)")
        return pattern.sub(lambda match: table[match[1]], value).replace(ANY_ADDRESS, HOST)


def base_env() -> dict[str, str]:
    """This process's environment less every setting: a local run gets only the container's."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_PREFIXES)}


def _listen_port(argv: Sequence[str], env: Mapping[str, str]) -> int:
    if "--port" in argv:
        return int(argv[list(argv).index("--port") + 1])
    return int(env["BFF_PORT"])


def _start_order(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    graph = {name: set(depends_on(service)) for name, service in services.items()}
    return list(TopologicalSorter(graph).static_order())


def _plan(
    stack: contextlib.ExitStack,
    services: Mapping[str, Mapping[str, Any]],
    image: Image,
    files: Mapping[str, Mapping[str, str]],
    redis_port: int,
) -> LocalStack:
    """A port for each service, and the table from compose addresses to local ones: each
    service by its hostname and container port, and each published port."""
    local: dict[str, LocalService] = {}
    for name, service in services.items():
        if name == REDIS_SERVICE:
            local[name] = LocalService(name, redis_port, REDIS_CONTAINER_PORT)
            continue
        env = container_env(service, image, files)
        reservation = stack.enter_context(reserve_port())
        container_port = _listen_port(command(service, image), env)
        local[name] = LocalService(name, reservation.port, container_port, env, reservation)
    addresses = {f"{s.name}:{s.container_port}": f"{HOST}:{s.port}" for s in local.values()}
    for name, service in services.items():
        for mapping in port_mappings(service):
            for host in (HOST, "localhost"):
                addresses[f"{host}:{mapping.host_port}"] = f"{host}:{local[name].port}"
    return LocalStack(local, addresses)


def _start(
    stack: contextlib.ExitStack,
    running: LocalStack,
    here: LocalService,
    service: Mapping[str, Any],
    image: Image,
    workdir: Path,
) -> None:
    """Start one service with its translated command and environment; return once its
    healthcheck passes."""
    own = here.own_addresses
    here.env = {key: running.translate(value, own) for key, value in here.env.items()}
    if here.env.get("BFF_PORT") == str(here.container_port):
        here.env["BFF_PORT"] = str(here.port)
    argv = [running.translate(arg, own) for arg in command(service, image)]
    output = tempfile.NamedTemporaryFile(prefix=f"{here.name}-")  # noqa: SIM115 - stack closes it
    here.output = stack.enter_context(output)
    here.process = subprocess.Popen(  # noqa: S603 - the project's own commands
        _local_argv(argv, here),
        env={**base_env(), **here.env},
        cwd=workdir,
        stdout=here.output,
        stderr=subprocess.STDOUT,
    )
    stack.callback(_stop, here.process)
    check = [running.translate(arg, own) for arg in healthcheck(service, image)]
    if not check:
        raise ValueError(f"{here.name} has no healthcheck: nothing would tell it is up")
    _await_healthy(here, _local_argv(check, here))
    if here.reservation is not None:
        here.reservation.release()  # the service listens on the port now


@contextlib.contextmanager
def run_profile(
    services: Mapping[str, Mapping[str, Any]],
    image: Image,
    files: Mapping[str, Mapping[str, str]],
    workdir: Path,
) -> Iterator[LocalStack]:
    """Start `services` (one profile's) here, in depends_on order; yields the stack once every
    healthcheck has passed. `files` holds the env_files' contents by path."""
    with contextlib.ExitStack() as stack:
        redis = start_redis_server()
        stack.callback(redis.stop)
        running = _plan(stack, services, image, files, redis.port)
        for name in _start_order(services):
            if name != REDIS_SERVICE:
                _start(stack, running, running.services[name], services[name], image, workdir)
        yield running


def _local_argv(argv: Sequence[str], service: LocalService) -> list[str]:
    """The executable as installed here, and `--port` moved to the local port."""
    result = [_EXECUTABLES.get(argv[0], argv[0]), *argv[1:]]
    for index, arg in enumerate(result[:-1]):
        if arg == "--port" and result[index + 1] == str(service.container_port):
            result[index + 1] = str(service.port)
    return result


def _healthy(service: LocalService, check: Sequence[str]) -> bool:
    assert service.process is not None
    if service.process.poll() is not None:
        code = service.process.returncode
        raise RuntimeError(f"{service.name} exited with {code}\n{service.log()}")
    result = subprocess.run(  # noqa: S603 - the healthcheck from the compose file or Dockerfile
        check,
        env={**base_env(), **service.env},
        capture_output=True,
        timeout=scaled(30),
        check=False,
    )
    return result.returncode == 0


def _await_healthy(service: LocalService, check: Sequence[str]) -> None:
    wait_until(
        functools.partial(_healthy, service, check),
        what=f"{service.name}'s healthcheck to pass",
        timeout=READY_TIMEOUT,
        interval=0.5,
        detail=service.log,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=scaled(10))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
