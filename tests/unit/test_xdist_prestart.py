"""Which xdist worker brings which session environment up in advance
(kubefixtures.xdist.workers.prestarts_here): each once, spread over the workers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kubefixtures.xdist import workers


def config(tmp_path: Path, workerid: str | None, count: int = 2, joined: bool = True) -> Any:
    """A stand-in for pytest.Config: what prestarts_here reads of it."""
    made = SimpleNamespace(stash=pytest.Stash(), option=SimpleNamespace(basetemp=None))
    if workerid is not None:
        made.workerinput = {"workerid": workerid, "workercount": count, "testrunuid": "run"}
        made.option.basetemp = str(tmp_path / f"popen-{workerid}")
        if joined:
            workers.join_worker(cast(pytest.Config, made))
    return made


def test_every_environment_has_exactly_one_worker_and_they_take_turns(tmp_path: Path) -> None:
    three = [config(tmp_path, f"gw{index}", count=3) for index in range(3)]
    owners = [
        [worker for worker, made in enumerate(three) if workers.prestarts_here(made, index)]
        for index in range(7)
    ]
    assert owners == [[0], [1], [2], [0], [1], [2], [0]]


def test_outside_xdist_every_environment_comes_up_in_advance(tmp_path: Path) -> None:
    assert all(workers.prestarts_here(config(tmp_path, None), index) for index in range(3))


def test_a_worker_that_does_not_share_brings_nothing_up_in_advance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_XDIST_TESTRUNUID", raising=False)  # under make unit's -n 2
    alone = config(tmp_path, "gw0", joined=False)
    workers._workerinput(alone)["testrunuid"] = ""  # no run id: it cannot share
    workers.join_worker(alone)
    assert workers.coordinator(alone) is None
    assert not any(workers.prestarts_here(alone, index) for index in range(3))
