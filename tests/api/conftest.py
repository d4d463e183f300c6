from __future__ import annotations

import pytest

from tests.api import test_schemathesis
from tests.integration.conftest import sandbox_handle

__all__ = ["sandbox_handle"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if test_schemathesis.CASES:
        terminalreporter.write_line(test_schemathesis.summary())
