"""The README's curl recipes, run exactly as written (bash, curl, jq) against `flinks-bff dev`,
so a recipe in the README can never rot: `B` and `S` point them at this test's ports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dev_stack import ROOT, dev_stack

SECTION = "### The same with curl"
# The Mobile section, up to its "Connect on mobile" part (which has recipes of its own).
MOBILE = "## Mobile\n"
MOBILE_END = "### Connect on mobile"


def _sh_blocks(section: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def recipes() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION) :]
    section = section[: section.index("\n## ")]
    return _sh_blocks(section)


def mobile_recipes() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(MOBILE) :]
    section = section[: section.index(MOBILE_END)]
    return _sh_blocks(section)


# What each recipe, in README order, must print.
EXPECTED: list[tuple[str, ...]] = [
    ('"status":"connected"',),  # Connect
    ('"status":"connected"',),  # OAuth
    ('"status":"connected"',),  # OAuth with MFA
    ('"authorize_token"', '"authorize_url"'),  # the two other endpoints
    ('"links"', '"accounts"', '"transactions"', "HTTP/1.1 204"),  # links, data, unlink
]


# What each recipe of the Mobile section, in README order, must print.
MOBILE_EXPECTED: list[tuple[str, ...]] = [
    ("handoff_code=", '"status":"connected"'),  # the native app's handoff, two cookie jars
]


def test_the_readme_has_the_recipes_this_test_checks() -> None:
    assert len(recipes()) == len(EXPECTED)
    assert len(mobile_recipes()) == len(MOBILE_EXPECTED)


def _run_all(cwd: Path, env: dict[str, str], checked: list[tuple[str, tuple[str, ...]]]) -> None:
    for recipe, expected in checked:
        run = subprocess.run(  # noqa: S603 - the README's own text
            ["/bin/bash", "-e", "-u", "-o", "pipefail", "-c", recipe],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, (recipe, run.stdout, run.stderr)
        for text in expected:
            assert text in run.stdout, (recipe, run.stdout, run.stderr)


@pytest.mark.parametrize("round_", [1, 2])  # twice: nothing cycles from one run to the next
def test_every_recipe_runs_as_written(tmp_path: Path, round_: int) -> None:
    for tool in ("bash", "curl", "jq"):  # the README's prerequisites for these recipes
        assert shutil.which(tool), f"the README's curl recipes need {tool} (apt install {tool})"
    with dev_stack() as stack:
        stack.wait_ready()
        env = {**os.environ, "B": stack.bff_url, "S": stack.sandbox_url}
        # One directory, one cookie jar: one person pasting the recipes in turn. (A loginId is
        # its first owner's: another jar presenting Connect's greatday_nomfa again gets 409.)
        _run_all(tmp_path, env, list(zip(recipes(), EXPECTED, strict=True)))


def test_the_mobile_recipes_run_as_written(tmp_path: Path) -> None:
    """The Mobile section's recipes, on a fresh `flinks-bff dev` (its own Redis): its app jar is
    a new owner, who could not link the greatday_nomfa the recipes above linked already."""
    for tool in ("bash", "curl", "jq", "openssl"):
        assert shutil.which(tool), f"the Mobile recipe needs {tool} (apt install {tool})"
    with dev_stack() as stack:
        stack.wait_ready()
        env = {**os.environ, "B": stack.bff_url, "S": stack.sandbox_url}
        _run_all(tmp_path, env, list(zip(mobile_recipes(), MOBILE_EXPECTED, strict=True)))
