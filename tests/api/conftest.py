from __future__ import annotations

from tests.integration.conftest import sandbox_handle

__all__ = ["sandbox_handle"]
