"""The sandbox's fixtures, for the store tests that run whole flows (test_round_trips.py)."""

from tests.integration.conftest import sandbox, sandbox_handle

__all__ = ["sandbox", "sandbox_handle"]
