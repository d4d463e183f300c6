"""docker-compose.yml and the Dockerfile keep their contract, checked with no Docker engine.

Read as Docker reads them (tests/deploy/compose_file.py): `.env.example` copied to `.env` loads
as it is; every variable the app reads reaches its container; healthchecks name paths the apps
serve; the image runs unprivileged; ports agree; profiles name existing services; production
names what it is missing and never starts (nor restarts in a loop) without it. Then the sandbox
profile runs for real as local processes (tests/deploy/local_stack.py), the same commands with
the same environment, and links an account through Flinks Connect and through OAuth.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from dotenv import dotenv_values

from app.sandbox.config import SandboxSettings
from app.settings import Settings
from tests.deploy.compose_file import (
    ENV_EXAMPLE,
    ROOT,
    MissingVariable,
    command,
    container_env,
    depends_on,
    env_files,
    environment,
    healthcheck,
    interpolate_tree,
    load_compose,
    port_mappings,
    read_dockerfile,
    read_env_file,
)
from tests.deploy.local_stack import ANY_ADDRESS, base_env, run_profile
from tests.deploy.routes import bff_serves, sandbox_serves

SANDBOX, PRODUCTION = "sandbox", "production"
PROFILES = (SANDBOX, PRODUCTION)
# The services, by role: the BFF of each profile, the Flinks sandbox, the production check.
LOCAL_BFF, SANDBOX_SERVICE, REDIS = "bff-dev", "sandbox", "redis"
PRODUCTION_BFF, CONFIG_CHECK = "bff", "config-check"
SERVE = ("flinks-bff", "serve")
ENV_FILE = ".env"  # the README: cp .env.example .env
# What production refuses to start without (app/settings.py, Settings._production_problems).
PRODUCTION_REQUIRED = (
    "BFF_PUBLIC_URL",
    "BFF_RETURN_URLS",
    "BFF_CORS_ORIGINS",
    "BFF_ENCRYPTION_KEY",
    "FLINKS_CUSTOMER_ID",
    "FLINKS_SECRET_KEY",
    "BFF_AUTH",
)
PASSWORD = "Everyday"
IMAGE = read_dockerfile()
EXAMPLE = read_env_file(ENV_EXAMPLE)


def _services(env: Mapping[str, str], profile: str | None = None) -> dict[str, dict[str, Any]]:
    """The services as compose sees them: interpolated (the whole file, as compose does before
    it applies profiles), then those of `profile`."""
    document = interpolate_tree(load_compose(), env)
    services: dict[str, dict[str, Any]] = document["services"]
    if profile is None:
        return services
    return {name: svc for name, svc in services.items() if profile in svc.get("profiles", [])}


def _settings_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def _sandbox_names() -> set[str]:
    return {f"SANDBOX_{name.upper()}" for name in SandboxSettings.model_fields}


def _listen_port(service: Mapping[str, Any], env: Mapping[str, str]) -> int:
    argv = command(service, IMAGE)
    return int(argv[argv.index("--port") + 1]) if "--port" in argv else int(env["BFF_PORT"])


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None, url
    assert parts.port is not None, url
    return parts.hostname, parts.port


def test_env_example_reads_the_same_everywhere_and_names_only_real_settings() -> None:
    assert dotenv_values(ENV_EXAMPLE) == EXAMPLE
    unknown = set(EXAMPLE) - _settings_names() - _sandbox_names()
    assert not unknown, f".env.example sets variables nothing reads: {sorted(unknown)}"


@pytest.mark.parametrize("env", [{}, EXAMPLE], ids=["no .env", ".env from .env.example"])
def test_the_whole_file_interpolates_without_a_production_secret(env: dict[str, str]) -> None:
    """Compose interpolates every service before it applies profiles: a `${VAR:?}` anywhere
    would stop the sandbox profile too, on a fresh clone or with .env.example as .env."""
    try:
        _services(env)
    except MissingVariable as exc:
        pytest.fail(f"compose would refuse the file, whatever the profile: {exc}")


def test_profiles_name_existing_services_that_depend_within_their_profile() -> None:
    services = _services(EXAMPLE)
    for name, service in services.items():
        profiles = set(service.get("profiles", []))
        assert profiles, f"{name} has no profile"
        assert profiles <= set(PROFILES), f"{name}: profiles {profiles}"
    for profile in PROFILES:
        members = _services(EXAMPLE, profile)
        assert members, f"profile {profile} starts nothing"
        for name, service in members.items():
            for dependency, condition in depends_on(service).items():
                assert dependency in members, f"{profile}: {name} needs {dependency}"
                if condition == "service_healthy":
                    assert healthcheck(members[dependency], IMAGE), f"{dependency}: no healthcheck"
    assert {LOCAL_BFF, SANDBOX_SERVICE, REDIS} <= set(_services(EXAMPLE, SANDBOX))
    assert {PRODUCTION_BFF, CONFIG_CHECK, REDIS} <= set(_services(EXAMPLE, PRODUCTION))


@pytest.mark.parametrize("name", [LOCAL_BFF, PRODUCTION_BFF, CONFIG_CHECK])
def test_every_setting_reaches_the_bff_container(name: str) -> None:
    service = _services(EXAMPLE)[name]
    assert (ENV_FILE, False) in env_files(service), "env_file .env (required: false)"
    given = set(EXAMPLE) | set(environment(service))
    missing = _settings_names() - given
    assert not missing, f"{name}: never reach the container: {sorted(missing)}"


def test_the_sandbox_gets_env_file_and_the_settings_the_stack_needs() -> None:
    service = _services(EXAMPLE)[SANDBOX_SERVICE]
    assert (ENV_FILE, False) in env_files(service)
    assert {"SANDBOX_PUBLIC_URL", "SANDBOX_REDIRECT_URIS"} <= set(environment(service))


@pytest.mark.parametrize("name", [LOCAL_BFF, PRODUCTION_BFF])
def test_the_bff_listens_on_its_published_and_exposed_port(name: str) -> None:
    service = _services(EXAMPLE)[name]
    env = container_env(service, IMAGE, {ENV_FILE: EXAMPLE})
    # .env.example's BFF_HOST=127.0.0.1 would leave the container unreachable from outside.
    assert env["BFF_HOST"] == ANY_ADDRESS
    assert command(service, IMAGE) == SERVE
    port = _listen_port(service, env)
    assert [mapping.container_port for mapping in port_mappings(service)] == [port]
    assert port in IMAGE.expose


def test_healthchecks_name_paths_the_apps_serve() -> None:
    image_paths = re.findall(r"/[a-z]+z\b", " ".join(IMAGE.healthcheck))
    assert image_paths == ["/livez"]
    assert all(bff_serves(path) for path in image_paths)
    assert "BFF_PORT" in " ".join(IMAGE.healthcheck), "the image's check follows BFF_PORT"
    sandbox_check = " ".join(healthcheck(_services(EXAMPLE)[SANDBOX_SERVICE], IMAGE))
    paths = [urlsplit(url).path for url in re.findall(r"http://[^'\"\s]+", sandbox_check)]
    assert paths, sandbox_check
    assert all(sandbox_serves(path) for path in paths), sandbox_check


def test_the_image_runs_unprivileged_what_the_project_installs() -> None:
    uid, _, gid = IMAGE.user.partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit(), IMAGE.user
    assert gid.isdigit(), IMAGE.user
    assert int(uid) > 0, IMAGE.user
    assert int(gid) > 0, IMAGE.user
    assert IMAGE.env.get("PYTHONDONTWRITEBYTECODE") == "1", "a read-only root filesystem"
    assert int(IMAGE.env["BFF_PORT"]) in IMAGE.expose
    assert IMAGE.env["BFF_HOST"] == ANY_ADDRESS
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert IMAGE.cmd == SERVE
    assert scripts[IMAGE.cmd[0]] == "app.cli:main"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored, "a local .env must never be baked into the image"


def test_the_sandbox_stack_is_wired_for_compose_hostnames_and_published_ports() -> None:
    services = _services(EXAMPLE, SANDBOX)
    bff, sandbox = services[LOCAL_BFF], services[SANDBOX_SERVICE]
    env = container_env(bff, IMAGE, {ENV_FILE: EXAMPLE})
    sandbox_env = container_env(sandbox, IMAGE, {ENV_FILE: EXAMPLE})
    assert env["BFF_ENV"] == "development"  # http URLs, the demo page, FLINKS_DEMO
    # Every published port is on the loopback: the sandbox's control API has no auth.
    published = {
        name: {(m.host_ip, m.host_port): m.container_port for m in port_mappings(service)}
        for name, service in services.items()
    }
    assert all(ip == "127.0.0.1" for ports in published.values() for ip, _ in ports)
    # The BFF calls the sandbox over the compose network...
    sandbox_port = _listen_port(sandbox, {})
    assert list(published[SANDBOX_SERVICE].values()) == [sandbox_port]
    assert _host_port(env["FLINKS_API_URL"]) == (SANDBOX_SERVICE, sandbox_port)
    assert _host_port(env["REDIS_URL"])[0] == REDIS
    # ... and the browser reaches both on their published ports.
    sandbox_public = sandbox_env["SANDBOX_PUBLIC_URL"]
    assert _host_port(sandbox_public) in published[SANDBOX_SERVICE]
    assert env["FLINKS_CONNECT_URL"] == f"{sandbox_public}/v2/"
    assert _host_port(env["BFF_PUBLIC_URL"]) in published[LOCAL_BFF]
    callback = env["BFF_PUBLIC_URL"].rstrip("/") + "/v1/oauth/callback"
    assert callback in sandbox_env["SANDBOX_REDIRECT_URIS"].split(",")
    # The credentials are the sandbox's own (the public Toolbox values).
    accepted = SandboxSettings()
    assert env["FLINKS_CUSTOMER_ID"] in accepted.customer_ids
    assert env["FLINKS_SECRET_KEY"] == accepted.secret_key


def _run_config_check(
    shell: Mapping[str, str], dot_env: Mapping[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """The production profile's check, run here with what its container would get."""
    service = _services({**dot_env, **shell}, PRODUCTION)[CONFIG_CHECK]
    env = container_env(service, IMAGE, {ENV_FILE: dot_env})
    argv = command(service, IMAGE)
    assert argv[0] == "python"
    return subprocess.run(  # noqa: S603 - the compose file's own command
        [sys.executable, *argv[1:]],
        env={**base_env(), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


PRODUCTION_VALUES = {
    "BFF_PUBLIC_URL": "https://bff.example.com",
    "BFF_RETURN_URLS": "https://app.example.com/",
    "BFF_CORS_ORIGINS": "https://app.example.com",
    "BFF_ENCRYPTION_KEY": base64.urlsafe_b64encode(bytes(range(32))).decode(),
    "FLINKS_CUSTOMER_ID": "0b6e3f7c-0000-4000-8000-000000000001",
    "FLINKS_SECRET_KEY": "not-a-real-secret",
    "BFF_AUTH": "session",
    "BFF_ALLOW_PLAINTEXT_REDIS": "true",  # the bundled Redis, on the compose network
}


def test_production_never_starts_without_its_variables_and_names_each(tmp_path: Path) -> None:
    services = _services(EXAMPLE, PRODUCTION)
    bff, check = services[PRODUCTION_BFF], services[CONFIG_CHECK]
    # The BFF starts only once the check has passed: a bad configuration is reported once, not
    # by a BFF that exits and is restarted in a loop.
    assert depends_on(bff)[CONFIG_CHECK] == "service_completed_successfully"
    assert check.get("restart", "no") == "no"
    files = {ENV_FILE: EXAMPLE}
    assert container_env(check, IMAGE, files) == container_env(bff, IMAGE, files)
    assert environment(bff)["BFF_ENV"] == "production"  # no .env can turn it into development

    refused = _run_config_check({}, EXAMPLE, tmp_path)
    assert refused.returncode != 0
    for name in PRODUCTION_REQUIRED:
        assert name in refused.stderr, refused.stderr
    # In .env, or in the shell that runs compose: either way they reach the container.
    assert _run_config_check({}, {**EXAMPLE, **PRODUCTION_VALUES}, tmp_path).returncode == 0
    from_shell = _run_config_check(PRODUCTION_VALUES, EXAMPLE, tmp_path)
    assert from_shell.returncode == 0, from_shell.stderr


@pytest.mark.timeout(600)
def test_the_sandbox_profile_links_an_account_as_local_processes(tmp_path: Path) -> None:
    services = _services(EXAMPLE, SANDBOX)
    with (
        run_profile(services, IMAGE, {ENV_FILE: EXAMPLE}, tmp_path) as stack,
        httpx.Client(
            base_url=stack.services[LOCAL_BFF].env["BFF_PUBLIC_URL"], timeout=60
        ) as browser,
        httpx.Client(
            base_url=stack.services[SANDBOX_SERVICE].env["SANDBOX_PUBLIC_URL"], timeout=60
        ) as person,
    ):
        env = stack.services[LOCAL_BFF].env
        demo = browser.get("/")
        assert demo.status_code == 200
        assert "text/html" in demo.headers["content-type"]
        assert browser.get("/readyz").status_code == 200

        # Flinks Connect: the iframe is the sandbox's, on its published port.
        started = browser.post("/v1/connect/sessions", json={})
        assert started.status_code == 201, started.text
        flow, iframe = started.json()["flow_id"], started.json()["iframe_url"]
        where = urlsplit(iframe)._replace(query="").geturl()  # the query holds the token
        assert iframe.startswith(f"{str(person.base_url).rstrip('/')}/v2/?"), where
        token = parse_qs(urlsplit(iframe).query)["authorizeToken"][0]
        signed_in = person.post(
            "/__sandbox/connect/complete",
            json={"authorize_token": token, "username": "greatday_nomfa", "password": PASSWORD},
        )
        assert signed_in.status_code == 200, signed_in.text
        completed = browser.post(
            f"/v1/connect/sessions/{flow}/complete",
            json={"login_id": signed_in.json()["login_id"], "institution": "FlinksCapital"},
        )
        assert completed.status_code == 200, completed.text
        assert completed.json()["status"] == "connected"

        # OAuth: the bank page is on the sandbox's published port and redirects to the BFF.
        return_url = env["BFF_PUBLIC_URL"].rstrip("/") + "/"
        start = browser.get(
            "/v1/oauth/start", params={"institution": "FlinksCapital", "return_url": return_url}
        )
        assert start.status_code == 303, start.text
        bank = start.headers["location"]
        assert bank.startswith(str(person.base_url).rstrip("/") + "/"), urlsplit(bank).netloc
        at_bank = person.post(
            "/__sandbox/oauth/complete",
            json={"session": bank, "username": "greatday_nomfa", "password": PASSWORD},
        )
        assert at_bank.status_code == 200, at_bank.text
        back = browser.get(at_bank.json()["location"])
        assert back.status_code == 303, back.text
        landed = urlsplit(back.headers["location"])
        assert landed._replace(query="").geturl() == return_url
        query = parse_qs(landed.query)
        assert query["status"] == ["connected"]
        assert browser.get(f"/v1/flows/{query['flow_id'][0]}").json()["status"] == "connected"
