"""The session's side of its Leases: it holds and renews one per namespace (reapers read
them: kubefixtures.leases.reaping).

Renewals run from a daemon thread, so a test that blocks the main thread for minutes still
proves its session alive, and a ``kill -9`` stops the renewals at once.

Times are written in the API server's time (``Cluster.server_clock``), never this machine's:
a runner whose clock is minutes off must not look dead (or immortal) to the reapers.

A Lease is *unsettled* from its creation until its namespace is deleted (the deletion
requested), kept (keep-until written) or released: a cancelled session releases whatever is
still unsettled when it runs out of time (``release_unsettled``), so that reapers delete
those namespaces at once instead of after the Lease's duration plus grace.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kubefixtures.clock import Clock
from kubefixtures.errors import ClusterError, KubefixturesError
from kubefixtures.kube.client import LEASE, ApiError, Cluster
from kubefixtures.kube.errors import Conflict, NotFound
from kubefixtures.leases.policy import (
    DEFAULT_LEASE_SECONDS,
    KEEP_UNTIL_ANNOTATION,
    KEPT_BECAUSE_ANNOTATION,
    LEASE_NAME,
    RELEASED_ANNOTATION,
    format_time,
)
from kubefixtures.naming import MANAGED_BY_LABEL, MANAGED_BY_VALUE

__all__ = ["LeaseEnd", "LeaseTaken", "SessionLease", "release_unsettled", "unsettled_leases"]

logger = logging.getLogger("kubefixtures.lease")

_CONNECT_TIMEOUT = 5.0
_RELEASE_TIMEOUT = (2.0, 2.0)  # a cancelled session has seconds before SIGKILL

_unsettled: set[SessionLease] = set()
_unsettled_lock = threading.Lock()


class LeaseTaken(KubefixturesError):
    """Another session changed the Lease between reading it and taking it over."""


def unsettled_leases() -> list[SessionLease]:
    """This process's Leases whose namespace is neither deleted, kept nor released yet."""
    with _unsettled_lock:
        return list(_unsettled)


def release_unsettled() -> list[str]:
    """Release every unsettled Lease of this process at once (a cancelled session out of
    time). Returns a line per Lease that could not be released."""
    leases = unsettled_leases()
    failures: list[str] = []
    threads = [
        threading.Thread(target=lambda lease=lease: _release(lease, failures), daemon=True)
        for lease in leases
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(sum(_RELEASE_TIMEOUT) + 1)
    return failures


def _release(lease: SessionLease, failures: list[str]) -> None:
    try:
        lease.release()
    except KubefixturesError as error:
        failures.append(f"kubefixtures: releasing the lease of {lease.namespace}: {error}")


@dataclass(frozen=True)
class LeaseEnd:
    """How a session's hold on its Lease ended: a line for the run's summary (None when
    there is nothing to say), and whether it reports a problem rather than a keep-until."""

    line: str | None
    problem: bool


# --- the session side ------------------------------------------------------------------------


class SessionLease:
    """The Lease ``kubefixtures-session`` one session holds in one namespace.

    ``create()`` it right after the namespace, ``start()`` renewing (every third of the
    duration, from a daemon thread), ``keep_until()`` when keeping the namespace on failure,
    and ``stop()`` at teardown. Renewal failures are retried with backoff and logged; when no
    renewal succeeded for a whole duration, ``warn`` is called once with a loud line (and
    again when renewals recover), since a reaper may then delete the namespace.
    """

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        holder: str,
        duration: float = DEFAULT_LEASE_SECONDS,
        *,
        labels: Mapping[str, str] | None = None,
        warn: Callable[[str], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.cluster = cluster
        self.clock: Clock = clock or cluster.server_clock
        self.namespace = namespace
        self.holder = holder
        # The API takes whole seconds; never round a short test duration down to nothing.
        self.duration = max(1, round(duration))
        self.labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, **(labels or {})}
        self._warn = warn or (lambda _line: None)  # every report is logged anyway
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_renewed = time.monotonic()
        self._overdue_reported = False
        self._gone = False
        self.last_error: str | None = None
        self.trouble: str | None = None  # the loudest thing that happened, for a summary line

    @property
    def interval(self) -> float:
        return self.duration / 3

    def _now(self) -> datetime:
        return self.clock.wall()

    def _unsettled(self, unsettled: bool) -> None:
        with _unsettled_lock:
            if unsettled:
                _unsettled.add(self)
            else:
                _unsettled.discard(self)

    def settle(self) -> None:
        """The namespace's deletion was requested: nothing is left to release."""
        self._unsettled(False)

    def create(self) -> None:
        now = format_time(self._now(), micro=True)
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": self.namespace, "labels": self.labels},
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": self.duration,
                "acquireTime": now,
                "renewTime": now,
            },
        }
        try:
            self.cluster.create(LEASE, self.namespace, body)
        except (NotFound, Conflict):  # no such namespace, or a Lease there already: callers tell
            raise
        except ClusterError as error:
            raise ClusterError(
                f"creating lease {LEASE_NAME} in namespace {self.namespace} failed: {error}"
            ) from None
        self._last_renewed = time.monotonic()
        self._unsettled(True)

    def take_over(
        self,
        expected_version: str | None = None,
        *,
        metadata: Mapping[str, Mapping[str, str | None]] | None = None,
    ) -> None:
        """Hold the Lease another session left behind (a reused namespace, a pool's spare):
        this session is its holder from now on, and renews it until ``finish``. With
        ``expected_version`` (the resourceVersion it was judged free at), raise LeaseTaken
        if another session changed it since: two runs never adopt the same namespace.
        ``metadata`` (labels, annotations; None removes one) changes in the same write."""
        now = format_time(self._now(), micro=True)
        extra = metadata or {}
        patch: dict[str, Any] = {
            "metadata": {
                "labels": dict(extra.get("labels") or {}),
                "annotations": {**(extra.get("annotations") or {}), RELEASED_ANNOTATION: None},
            },
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": self.duration,
                "acquireTime": now,
                "renewTime": now,
            },
        }
        if expected_version:
            patch["metadata"]["resourceVersion"] = expected_version
        try:
            self._patch(patch)
        except Conflict:
            raise LeaseTaken(
                f"lease {LEASE_NAME} in namespace {self.namespace} was taken by another session"
            ) from None
        except NotFound:
            if expected_version:
                raise LeaseTaken(
                    f"lease {LEASE_NAME} in namespace {self.namespace} is gone"
                ) from None
            self.create()  # someone deleted it: a namespace in use must have one
        except ApiError as error:
            raise ClusterError(
                f"taking over lease {LEASE_NAME} in namespace {self.namespace} failed: {error}"
            ) from None
        self._last_renewed = time.monotonic()
        self._unsettled(True)

    def _patch(self, patch: Mapping[str, Any]) -> None:
        self.cluster.merge_patch(
            LEASE,
            self.namespace,
            LEASE_NAME,
            patch,
            timeout=(_CONNECT_TIMEOUT, max(self.interval, 5.0)),
        )

    def annotate(self, annotations: Mapping[str, str]) -> None:
        """Add annotations to the Lease (what reapers need to know of the session)."""
        try:
            self._patch({"metadata": {"annotations": dict(annotations)}})
        except ClusterError as error:
            raise ClusterError(
                f"annotating lease {LEASE_NAME} in namespace {self.namespace} failed: {error}"
            ) from None

    def delete(self) -> str | None:
        """Stop renewing and delete the Lease (its namespace stays: one the session did not
        create). Returns a line for the run's summary, or None when all went well."""
        self.stop()
        try:
            self.cluster.delete_unchanged(LEASE, self.namespace, LEASE_NAME, {})
        except ClusterError as error:
            self.trouble = (
                f"kubefixtures: deleting lease {LEASE_NAME} in namespace {self.namespace} "
                f"failed: {error}; the operator or `kubefixtures gc` removes it once it expires"
            )
        self._unsettled(False)
        return self.trouble

    def renew(self) -> None:
        """One renewal (no retries): renewTime = now."""
        self._patch({"spec": {"renewTime": format_time(self._now(), micro=True)}})

    def release(self) -> None:
        """Give the Lease up now (a cancelled session): reapers delete the namespace at once.
        Quick, or ClusterError: a cancelled session has seconds."""
        self.stop(timeout=0.5)
        now = self._now()
        with contextlib.suppress(NotFound):  # the namespace is being deleted already
            self.cluster.merge_patch(
                LEASE,
                self.namespace,
                LEASE_NAME,
                {
                    "metadata": {"annotations": {RELEASED_ANNOTATION: format_time(now)}},
                    "spec": {"renewTime": format_time(now, micro=True)},
                },
                timeout=_RELEASE_TIMEOUT,
            )
        self._unsettled(False)

    def keep_until(
        self, until: datetime, because: str | None = None, *, released: bool = False
    ) -> None:
        """Ask reapers to keep the namespace until ``until``; ``because`` says it was kept on
        failure (then no other run adopts or replaces it). ``released``: this session is done
        with it (no other run need wait for the Lease to expire; once the keep-until has
        passed, reapers delete it at once)."""
        annotations = {KEEP_UNTIL_ANNOTATION: format_time(until)}
        if because:
            annotations[KEPT_BECAUSE_ANNOTATION] = because[:256]
        if released:
            annotations[RELEASED_ANNOTATION] = format_time(self._now())
        try:
            self._patch({"metadata": {"annotations": annotations}})
        except ClusterError as error:
            raise ClusterError(
                f"marking namespace {self.namespace} to be kept until {format_time(until)} "
                f"failed: {error}"
            ) from None
        self._unsettled(False)

    def hand_over(self, metadata: Mapping[str, Mapping[str, str | None]]) -> None:
        """Stop renewing and write ``metadata`` (labels, annotations) in one patch: what it
        says protects the namespace from now on (a pool's spare: keep-until), so it is
        settled. ClusterError when the write fails."""
        self.stop()
        try:
            self._patch({"metadata": dict(metadata)})
        except ClusterError as error:
            raise ClusterError(
                f"marking the lease of namespace {self.namespace} failed: {error}"
            ) from None
        self._unsettled(False)

    def finish(self, keep_for: float | None = None, because: str | None = None) -> str | None:
        """Teardown: stop renewing and, with ``keep_for`` (seconds), mark the namespace to be
        kept that long. Returns a line for the run's summary, or None when all went well."""
        return self.end(keep_for, because).line

    def end(self, keep_for: float | None = None, because: str | None = None) -> LeaseEnd:
        """``finish``, saying also whether its line reports a problem."""
        self.stop()
        if keep_for is None:
            return LeaseEnd(self.trouble, problem=self.trouble is not None)
        until = self._now() + timedelta(seconds=keep_for)
        try:
            self.keep_until(until, because, released=True)
        except ClusterError as error:
            return LeaseEnd(
                f"kubefixtures: {error}; the operator may delete it once its lease expires",
                problem=True,
            )
        return LeaseEnd(
            f"kubefixtures: namespace {self.namespace} is kept until {format_time(until)}; "
            "then the operator or `kubefixtures gc` may delete it",
            problem=False,
        )

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"kubefixtures-lease-{self.namespace}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop renewing; the Lease stays (it goes with its namespace)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # --- renewal ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._renew_with_retries()
            if self._gone:
                return

    def _renew_with_retries(self) -> None:
        import tenacity  # only sessions that hold a lease need it

        def transient(error: BaseException) -> bool:
            return isinstance(error, ClusterError) and not _is_not_found(error)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(transient),
            # Several tries inside one interval; the next interval starts afresh anyway.
            wait=tenacity.wait_exponential(multiplier=0.25, max=max(self.interval / 4, 0.5)),
            stop=tenacity.stop_after_delay(self.interval)
            | tenacity.stop_when_event_set(self._stop),
            sleep=self._sleep,
            before_sleep=self._log_failure,
            reraise=True,
        )
        try:
            retrying(self.renew)
        except ClusterError as error:
            if self._stop.is_set():
                return
            self.last_error = str(error)
            if _is_not_found(error):
                self._gone = True
                self._report(
                    f"kubefixtures: the lease of namespace {self.namespace} is gone (was the "
                    "namespace deleted by someone else?); no longer renewing it"
                )
                return
            logger.warning("renewing lease in namespace %s failed: %s", self.namespace, error)
            self._check_overdue()
            return
        self._renewed()

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)  # a stop() ends the wait at once

    def _log_failure(self, state: Any) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        self.last_error = str(error)
        logger.info(
            "renewing lease in namespace %s: attempt %d failed (%s); retrying",
            self.namespace,
            state.attempt_number,
            error,
        )

    def _renewed(self) -> None:
        silent = time.monotonic() - self._last_renewed
        self._last_renewed = time.monotonic()
        if self._overdue_reported:
            self._overdue_reported = False
            self._report(
                f"kubefixtures: renewed the lease of namespace {self.namespace} again after "
                f"{silent:.0f} s without renewal"
            )

    def _check_overdue(self) -> None:
        silent = time.monotonic() - self._last_renewed
        if silent >= self.duration and not self._overdue_reported:
            self._overdue_reported = True
            self._report(
                f"kubefixtures: WARNING: could not renew the lease of namespace "
                f"{self.namespace} for {silent:.0f} s (its duration is {self.duration} s; last "
                f"error: {self.last_error}); the operator or `kubefixtures gc` may delete the "
                "namespace as leaked"
            )

    def _report(self, line: str) -> None:
        self.trouble = line
        logger.warning("%s", line)
        try:
            self._warn(line)
        except Exception:  # a broken terminal must not end the renewals
            logger.exception("reporting a lease problem failed")


def _is_not_found(error: BaseException) -> bool:
    return isinstance(error, NotFound)
