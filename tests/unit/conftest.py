"""A unit test runs no cluster: 30 s is far past any of them, so a hang fails fast."""

from __future__ import annotations

import pytest

UNIT_TIMEOUT_S = 30


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/unit/" in str(item.path) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT_S))
