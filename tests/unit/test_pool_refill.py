"""The session's pool at the end of a run (kubefixtures.provisioning.pooled.SparePool): a
refill asked for just before the session ends still starts its copy (skipping it left the
next run without a spare: the pool ran dry), and a pool short of copies says so in the
summary, never silently."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.errors import NotReadyError
from kubefixtures.provisioning.base import EnvironmentSpec, SessionView
from kubefixtures.provisioning.pooled import SparePool, SpareProvisioning
from kubefixtures.settings import Settings

SPEC = EnvironmentSpec(name="shop", sources=(Path("unused"),))


class Lines:
    def __init__(self) -> None:
        self.written: list[str] = []
        self.summary_lines: list[str] = []

    def write_line(self, line: str) -> None:
        self.written.append(line)

    def summary(self, line: str) -> None:
        self.summary_lines.append(line)

    def kept(self, namespace: str, environment: str, why: str, lines: Any) -> None:
        raise AssertionError("nothing is kept here")


class SlowListing:
    """A cluster whose list of pool members answers only once told to."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.answer = threading.Event()

    def items(self, resource: Any, namespace: Any, selector: str) -> list[dict[str, Any]]:
        self.asked.set()
        assert self.answer.wait(10)
        return []

    @property
    def server_clock(self) -> Any:
        from kubefixtures.clock import ServerClock

        return ServerClock()


def pool_of(size: int, lines: Lines) -> SparePool:
    view = SessionView(
        settings=replace(Settings(), pool=size),
        session_id="abcd1234",
        cluster=lambda context: pytest.fail("no connection here"),
        secrets=lambda: pytest.fail("no secrets here"),
        reporter=lines,
    )
    return SparePool(view)


def test_a_refill_asked_for_as_the_session_ends_still_starts_its_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[str] = []

    def make(pool: SparePool, copy: SpareProvisioning, key: str) -> bool:
        made.append(key)
        with pool._lock:
            pool._made += 1
        return True

    monkeypatch.setattr(SparePool, "_make", make)
    lines = Lines()
    pool = pool_of(1, lines)
    cluster = SlowListing()
    pool.refill(SPEC, "key1", cluster)  # type: ignore[arg-type]
    assert cluster.asked.wait(10)  # the refill is counting the members...
    finishing = threading.Thread(target=pool.finish)
    finishing.start()  # ...when the session ends
    finishing.join(0.2)
    assert finishing.is_alive()  # it waits for the refill
    cluster.answer.set()
    finishing.join(10)
    assert made == ["key1"]
    assert any("made 1 spare copy" in line for line in lines.summary_lines)


def test_no_refill_is_asked_for_once_the_session_ended() -> None:
    lines = Lines()
    pool = pool_of(1, lines)
    pool.finish()
    cluster = SlowListing()
    pool.refill(SPEC, "key1", cluster)  # type: ignore[arg-type]
    assert not cluster.asked.wait(0.2)
    assert lines.summary_lines == []


def test_copies_that_never_became_spares_and_claims_without_one_are_in_the_summary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(copy: SpareProvisioning) -> None:
        raise NotReadyError("environment 'shop' timed out after 60.0 s\n  deployment/web: ...")

    monkeypatch.setattr(SpareProvisioning, "setup", fail)
    lines = Lines()
    pool = pool_of(1, lines)
    pool.counted("shop", claimed=True)
    pool.counted("shop", claimed=True, waited=2.5)
    pool.counted("shop", claimed=False)
    copy = SpareProvisioning(SPEC, pool.session, "key1")
    assert pool._make(copy, "key1") is False
    pool.finish()
    # Said at once, and again at the end of the run.
    assert lines.written == [
        "kubefixtures: a spare copy of 'shop' failed to come up: environment 'shop' timed "
        "out after 60.0 s"
    ]
    assert lines.summary_lines == [
        "kubefixtures: a copy of 'shop' for the pool never became a spare: it failed to come "
        "up: environment 'shop' timed out after 60.0 s",
        "kubefixtures: 1 of 3 claim(s) of 'shop' found no ready spare and waited 2.5 s in all "
        "for a copy this session was bringing up (--kubefixtures-pool=1: the pool ran dry)",
        "kubefixtures: the pool had no ready spare of 'shop' for 1 of 3 claim(s): those "
        "environments came up as without a pool (--kubefixtures-pool=1)",
    ]
