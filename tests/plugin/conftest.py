"""Shared set-up of the pytester tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _inner_runs_are_not_xdist_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """An inner pytest run inherits this one's environment: under ``pytest -n``, the outer
    worker's variables would make it believe it is an xdist worker too."""
    for variable in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(variable, raising=False)
