"""Set-up shared by every test directory."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _inner_runs_without_asyncio(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-asyncio (a dev dependency, for the async controls' tests) warns in every run
    whose ini does not set its loop scope: inner runs have no use for it. (Set once
    pytester exists: it clears PYTEST_ADDOPTS when it starts.)"""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")
        monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:asyncio")
