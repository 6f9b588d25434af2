"""How many copies the session's pool starts, and how many at once
(kubefixtures.provisioning.pooled.SparePool): a suite's copies start as far ahead as its
tests will claim (up to eight more than the pool's size), and copies meant for later runs
come up one at a time while ready spares cover every claim to come, so that they leave the
CPU to the tests; the next test's spare is claimed while the current test runs."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.clock import ServerClock
from kubefixtures.provisioning import pooled
from kubefixtures.provisioning.base import EnvironmentSpec, SessionView
from kubefixtures.provisioning.fresh import Adopted
from kubefixtures.provisioning.pooled import SparePool, SpareProvisioning
from kubefixtures.settings import Settings

SPEC = EnvironmentSpec(name="shop", sources=(Path("unused"),))


class Quiet:
    def write_line(self, line: str) -> None:
        pass

    def summary(self, line: str) -> None:
        pass

    def kept(self, namespace: str, environment: str, why: str, lines: Any) -> None:
        raise AssertionError("nothing is kept here")


class NoMembers:
    """A cluster where the key has no pool member yet, and no spare to claim."""

    server_clock = ServerClock()

    def items(self, resource: Any, namespace: Any, selector: str) -> list[dict[str, Any]]:
        return []


def pool_of(size: int, monkeypatch: pytest.MonkeyPatch) -> tuple[SparePool, list[str]]:
    """A pool whose copies are only counted (``started``), never made."""
    cluster = NoMembers()
    view = SessionView(
        settings=replace(Settings(), pool=size),
        session_id="abcd1234",
        cluster=lambda context: cluster,  # type: ignore[arg-type,return-value]
        secrets=lambda: pytest.fail("no secrets here"),
        reporter=Quiet(),
    )
    monkeypatch.setattr("kubefixtures.provisioning.reused.reuse_key", lambda spec, s: "key1")
    started: list[str] = []
    monkeypatch.setattr(SparePool, "_start", lambda pool, spec, key: started.append(key))
    return SparePool(view), started


def prepared(pool: SparePool, uses: int) -> None:
    pool.prepare(SPEC, uses=uses)
    pool._refilling.submit(lambda: None).result(10)  # the refill has run


@pytest.mark.parametrize(
    ("size", "uses", "expected"),
    [
        (6, 0, 6),  # a session-scoped environment: the pool's size
        (6, 4, 6),  # fewer claims than the size: the size
        (6, 10, 10),  # the run claims 10: 10 start now
        (6, 50, 14),  # at most eight ahead of the size
        (1, 50, 9),
        (50, 50, 50),  # a pool the suite's size: the size
    ],
)
def test_copies_started_at_collection_follow_the_claims_the_run_will_make(
    size: int, uses: int, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool, started = pool_of(size, monkeypatch)
    prepared(pool, uses)
    assert len(started) == expected


def test_copies_come_up_one_at_a_time_while_ready_spares_cover_every_claim_to_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool, _ = pool_of(3, monkeypatch)
    prepared(pool, 3)
    with pool._lock:
        pool._ready["key1"] = 3  # three ready, three claims to come
        assert pool._most_at_once() == 1
        pool._ready["key1"] = 2  # the tests need more than is ready: all at once
        assert pool._most_at_once() == pooled._MOST_AT_ONCE
    pool.claim("key1", NoMembers(), "shop")  # type: ignore[arg-type]
    with pool._lock:
        assert pool._remaining("key1") == 2
        assert pool._ready["key1"] == 0  # the claim found none: they hurry
        assert pool._most_at_once() == pooled._MOST_AT_ONCE
        pool._ready["key1"] = 5
        assert pool._most_at_once() == 1
    pool.finish()
    with pool._lock:
        assert pool._most_at_once() == pooled._MOST_AT_ONCE  # the session ends: all at once


def test_a_copy_waits_for_its_turn_and_starts_when_one_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool, _ = pool_of(2, monkeypatch)
    prepared(pool, 2)
    with pool._lock:
        pool._ready["key1"] = 2  # one at a time
    release = threading.Event()
    running: list[str] = []

    def bring_up(self: SparePool, copy: SpareProvisioning, key: str) -> bool:
        running.append(copy.spec.name)
        return release.wait(10)

    monkeypatch.setattr(SparePool, "_bring_up", bring_up)
    first = threading.Thread(
        target=pool._make, args=(SpareProvisioning(SPEC, pool.session, "k"), "key1")
    )
    second = threading.Thread(
        target=pool._make, args=(SpareProvisioning(SPEC, pool.session, "k"), "key1")
    )
    first.start()
    second.start()
    second.join(0.3)
    assert len(running) == 1  # the second waits for its turn
    release.set()
    first.join(10)
    second.join(10)
    assert len(running) == 2


class HeldLease:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def start(self) -> None:
        self.calls.append("start")

    def finish(self, keep_for: float | None = None, because: str | None = None) -> None:
        self.calls.append("finish")

    def settle(self) -> None:
        self.calls.append("settle")


class Deletions(NoMembers):
    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete_namespace(self, name: str) -> None:
        self.deleted.append(name)


def claiming(pool: SparePool, monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> list[str]:
    """Every spare claimed from the cluster, in order (kf-shop-1, kf-shop-2...)."""
    claimed: list[str] = []

    def claim_ready(self: SparePool, key: str, cluster: Any) -> Adopted:
        claimed.append(f"kf-shop-{len(claimed) + 1}")
        return Adopted(claimed[-1], "abcd1234", pool.session.secrets, HeldLease(calls), True)  # type: ignore[arg-type]

    monkeypatch.setattr(SparePool, "_claim_ready", claim_ready)
    return claimed


def test_the_next_tests_spare_is_claimed_while_the_current_test_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool, _ = pool_of(1, monkeypatch)
    prepared(pool, 2)  # two tests will claim
    calls: list[str] = []
    claimed = claiming(pool, monkeypatch, calls)
    cluster = Deletions()
    first = pool.claim("key1", cluster, "shop")  # type: ignore[arg-type]
    assert first is not None
    assert first.namespace == "kf-shop-1"
    pool.refill(SPEC, "key1", cluster)  # type: ignore[arg-type]  # the first test's env is up
    pool._refilling.submit(lambda: None).result(10)
    assert claimed == ["kf-shop-1", "kf-shop-2"]  # claimed ahead...
    assert calls == ["start"]  # ...and its Lease renewed meanwhile
    second = pool.claim("key1", cluster, "shop")  # type: ignore[arg-type]
    assert second is not None
    assert second.namespace == "kf-shop-2"
    assert claimed == ["kf-shop-1", "kf-shop-2"]  # the claim itself asked nothing
    pool.refill(SPEC, "key1", cluster)  # type: ignore[arg-type]  # no claim left to come
    pool.finish()
    assert claimed == ["kf-shop-1", "kf-shop-2"]
    assert cluster.deleted == []


def test_a_spare_claimed_ahead_for_a_test_that_never_came_is_deleted_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool, _ = pool_of(1, monkeypatch)
    prepared(pool, 3)
    calls: list[str] = []
    claiming(pool, monkeypatch, calls)
    cluster = Deletions()
    pool.claim("key1", cluster, "shop")  # type: ignore[arg-type]
    pool.refill(SPEC, "key1", cluster)  # type: ignore[arg-type]
    pool.finish()  # the other two tests were skipped
    assert cluster.deleted == ["kf-shop-2"]
    assert calls == ["start", "finish", "settle"]


def test_a_spare_claimed_ahead_leaves_the_ready_count_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool, _ = pool_of(0, monkeypatch)  # no refill: only the claims change the count
    prepared(pool, 3)
    claiming(pool, monkeypatch, [])
    cluster = Deletions()
    with pool._lock:
        pool._ready["key1"] = 3
    pool.claim("key1", cluster, "shop")  # type: ignore[arg-type]
    pool.refill(SPEC, "key1", cluster)  # type: ignore[arg-type]  # claims the next ahead
    pool._refilling.submit(lambda: None).result(10)
    with pool._lock:
        assert pool._ready["key1"] == 1
        assert pool._most_at_once() == 1  # one ready, one ahead, two claims to come
    pool.claim("key1", cluster, "shop")  # type: ignore[arg-type]  # takes the one ahead
    with pool._lock:
        assert pool._ready["key1"] == 1  # counted out once, when it was claimed ahead
        assert pool._most_at_once() == 1  # one ready, one claim to come: no hurry
