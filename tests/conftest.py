"""Shared fixtures. Integration tests run against the cluster `orderbus up` started (make test)."""

from __future__ import annotations

import uuid

import pytest

from workers.runtime.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture
def unique() -> str:
    """A short name part unique to this test, for its own topics, groups and databases."""
    return "t" + uuid.uuid4().hex[:10]
