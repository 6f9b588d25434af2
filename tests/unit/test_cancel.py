"""kubefixtures.cancel: the first cancel signal interrupts and starts the release, later ones
are ignored, handlers are restored; and the release of unsettled Leases."""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator

import pytest

from kubefixtures import cancel
from kubefixtures.leases.policy import RELEASED_ANNOTATION
from kubefixtures.leases.renewal import SessionLease, release_unsettled, unsettled_leases
from tests.unit.test_lease_renewal import FakeCluster


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The suite itself runs under kubefixtures, whose session has installed its own cancel
    handlers and callback in this very process: each test gets a fresh module state and the
    default handlers, and the outer run's come back after it (a test's SIGTERM must never
    reach the outer run's callback, which would end the whole test run by that signal)."""
    saved = {signum: signal.getsignal(signum) for signum in cancel.CANCEL_SIGNALS}
    monkeypatch.setattr(cancel, "_state", cancel._State())
    for signum in cancel.CANCEL_SIGNALS:
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, default)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    monkeypatch.setattr(cancel, "RELEASE_AFTER", 3600.0)  # not during these tests
    calls: list[int] = []
    assert cancel.install(calls.append)
    # Never raise a signal the handler does not catch: it would end the test run.
    assert signal.getsignal(signal.SIGTERM) is cancel._handle
    yield calls
    cancel.uninstall(calls.append)


def test_the_first_signal_interrupts_and_later_ones_are_ignored(installed: list[int]) -> None:
    assert cancel.requested() is None
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGTERM)
    assert cancel.requested() == signal.SIGTERM
    assert installed == [signal.SIGTERM]
    signal.raise_signal(signal.SIGHUP)  # during the cleanup: no second interruption
    signal.raise_signal(signal.SIGTERM)
    assert installed == [signal.SIGTERM]
    assert cancel.remaining() <= cancel.RELEASE_AFTER


def test_a_signal_once_pytest_has_torn_down_only_is_remembered(installed: list[int]) -> None:
    cancel.finishing()
    signal.raise_signal(signal.SIGTERM)  # no KeyboardInterrupt
    assert cancel.requested() == signal.SIGTERM
    assert installed == [signal.SIGTERM]


def test_uninstall_restores_the_handlers_once_nobody_needs_them(installed: list[int]) -> None:
    def inner(signum: int) -> None:
        pass

    cancel.install(inner)  # a pytest run in-process inside this one
    cancel.uninstall(inner)
    assert signal.getsignal(signal.SIGTERM) is cancel._handle  # still the outer run's
    cancel.uninstall(installed.append)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert cancel.requested() is None


@pytest.mark.parametrize("race", [True, False], ids=["ast-parse-race", "fixed-python"])
def test_the_collector_is_paused_from_the_signal_to_uninstall_where_ast_parse_races(
    installed: list[int], monkeypatch: pytest.MonkeyPatch, race: bool
) -> None:
    monkeypatch.setattr(cancel, "AST_PARSE_RACE", race)
    try:
        assert gc.isenabled()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert gc.isenabled() is not race
        cancel.uninstall(installed.append)
        assert gc.isenabled()
    finally:
        gc.enable()


def test_a_collector_paused_by_someone_else_stays_paused(
    installed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cancel, "AST_PARSE_RACE", True)
    gc.disable()
    try:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        cancel.uninstall(installed.append)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_someone_elses_handler_is_left_alone() -> None:
    def theirs(signum: int, frame: object) -> None:
        pass

    def ours(signum: int) -> None:
        pass

    previous = signal.signal(signal.SIGHUP, theirs)
    try:
        cancel.install(ours)
        assert signal.getsignal(signal.SIGHUP) is theirs
    finally:
        cancel.uninstall(ours)
        signal.signal(signal.SIGHUP, previous)


def test_exit_by_signal_does_nothing_for_sigint_or_none() -> None:
    cancel.exit_by_signal(None)
    cancel.exit_by_signal(signal.SIGINT)


def test_unsettled_leases_are_released_the_settled_ones_not() -> None:
    cluster = FakeCluster()
    deleted = SessionLease(cluster, "kf-deleted", "a@h/1", 6)  # type: ignore[arg-type]
    kept = SessionLease(cluster, "kf-kept", "a@h/1", 6)  # type: ignore[arg-type]
    coming_up = SessionLease(cluster, "kf-coming-up", "a@h/1", 6)  # type: ignore[arg-type]
    for lease in (deleted, kept, coming_up):
        lease.create()
    deleted.settle()
    kept.finish(keep_for=60, because="1 failed test(s)")
    assert set(unsettled_leases()) >= {coming_up}
    assert deleted not in unsettled_leases()
    assert kept not in unsettled_leases()
    cluster.requests.clear()
    assert release_unsettled() == []
    released = [path for method, path, body in cluster.requests if method == "PATCH"]
    assert released == [
        "/apis/coordination.k8s.io/v1/namespaces/kf-coming-up/leases/kubefixtures-session"
    ]
    ((_, _, body),) = cluster.requests
    assert RELEASED_ANNOTATION in body["metadata"]["annotations"]
    assert coming_up not in unsettled_leases()
