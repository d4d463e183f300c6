from __future__ import annotations

import pytest

from tests.integration.conftest import sandbox_handle

__all__ = ["sandbox_handle"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One nodeid per API operation, as each item already has one name per operation.

    schemathesis (4.32) builds its items with `originalname` set to the test function's name,
    and pytest 9.2 builds a nodeid from `originalname` and parameters: every operation's item
    gets the same nodeid. pytest-xdist hands work out by nodeid, so under `--dist loadfile` one
    of them would run and the others be skipped without a word. Checked below, so a change in
    either library fails the collection instead of silently running less.
    """
    ours = [item for item in items if isinstance(item, pytest.Function)]
    for item in ours:
        name, nodeid = item.name, item.nodeid
        if item.path.name == "test_schemathesis.py" and "[" in name and "[" not in nodeid:
            item._id = item._id.with_params(name.partition("[")[2].removesuffix("]"))
    nodeids = [item.nodeid for item in ours if item.path.name == "test_schemathesis.py"]
    if len(set(nodeids)) != len(nodeids):
        raise pytest.UsageError(f"schemathesis items share nodeids: {sorted(nodeids)}")
