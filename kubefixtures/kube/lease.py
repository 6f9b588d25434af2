"""Leases on the cluster: the session holds and renews one per namespace; reapers (the operator
and ``kubefixtures gc``) read them and delete what :func:`kubefixtures.lease.decide` condemns.

The session side renews from a daemon thread, so a test that blocks the main thread for
minutes still proves its session alive, and a ``kill -9`` stops the renewals at once.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubefixtures.errors import ClusterError
from kubefixtures.kube.client import NAMESPACE, ApiError, Cluster, Resource
from kubefixtures.kube.errors import Conflict, NotFound
from kubefixtures.lease import (
    DEFAULT_LEASE_SECONDS,
    KEEP_UNTIL_ANNOTATION,
    LEASE_NAME,
    Decision,
    SessionNamespace,
    decide,
    format_time,
    lease_from_object,
    namespace_from_object,
)
from kubefixtures.naming import MANAGED_BY_LABEL, MANAGED_BY_VALUE

__all__ = [
    "EVENT_NAMESPACE",
    "EVENT_REASON",
    "LEASE",
    "LEASE_SELECTOR",
    "MANAGED_SELECTOR",
    "LeaseEnd",
    "Outcome",
    "SessionLease",
    "connect",
    "delete_session",
    "list_sessions",
    "managed_selector",
    "post_deletion_event",
    "read_session",
    "recheck_and_delete",
]

logger = logging.getLogger("kubefixtures.lease")

LEASE = Resource("coordination.k8s.io/v1", "Lease", "leases", namespaced=True)
EVENT_PATH = "/api/v1/namespaces/{namespace}/events"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
LEASE_SELECTOR = f"metadata.name={LEASE_NAME}"
EVENT_REASON = "LeakedSessionDeleted"
EVENT_NAMESPACE = "default"
_CONNECT_TIMEOUT = 5.0


def _now() -> datetime:
    return datetime.now(UTC)


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
    ) -> None:
        self.cluster = cluster
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

    def _path(self) -> str:
        return LEASE.object_path(self.namespace, LEASE_NAME)

    def create(self) -> None:
        now = format_time(_now(), micro=True)
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
            self.cluster.request("POST", LEASE.collection_path(self.namespace), body=body)
        except ClusterError as error:
            raise ClusterError(
                f"creating lease {LEASE_NAME} in namespace {self.namespace} failed: {error}"
            ) from None
        self._last_renewed = time.monotonic()

    def take_over(self) -> None:
        """Hold the Lease another session left behind (a reused namespace): this session is
        its holder from now on, and renews it until ``finish``."""
        now = format_time(_now(), micro=True)
        try:
            self._patch(
                {
                    "spec": {
                        "holderIdentity": self.holder,
                        "leaseDurationSeconds": self.duration,
                        "acquireTime": now,
                        "renewTime": now,
                    }
                }
            )
        except NotFound:
            self.create()  # someone deleted it: a namespace in use must have one
        except ApiError as error:
            raise ClusterError(
                f"taking over lease {LEASE_NAME} in namespace {self.namespace} failed: {error}"
            ) from None
        self._last_renewed = time.monotonic()

    def _patch(self, patch: Mapping[str, Any]) -> None:
        self.cluster.request(
            "PATCH",
            self._path(),
            body=patch,
            content_type="application/merge-patch+json",
            timeout=(_CONNECT_TIMEOUT, max(self.interval, 5.0)),
        )

    def renew(self) -> None:
        """One renewal (no retries): renewTime = now."""
        self._patch({"spec": {"renewTime": format_time(_now(), micro=True)}})

    def keep_until(self, until: datetime) -> None:
        """Ask reapers to keep the namespace until ``until`` (keep-on-failure)."""
        try:
            self._patch({"metadata": {"annotations": {KEEP_UNTIL_ANNOTATION: format_time(until)}}})
        except ClusterError as error:
            raise ClusterError(
                f"marking namespace {self.namespace} to be kept until {format_time(until)} "
                f"failed: {error}"
            ) from None

    def finish(self, keep_for: float | None = None) -> str | None:
        """Teardown: stop renewing and, with ``keep_for`` (seconds), mark the namespace to be
        kept that long. Returns a line for the run's summary, or None when all went well."""
        return self.end(keep_for).line

    def end(self, keep_for: float | None = None) -> LeaseEnd:
        """``finish``, saying also whether its line reports a problem."""
        self.stop()
        if keep_for is None:
            return LeaseEnd(self.trouble, problem=self.trouble is not None)
        until = _now() + timedelta(seconds=keep_for)
        try:
            self.keep_until(until)
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


# --- the reaper side -------------------------------------------------------------------------


def connect(kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    """A connection for reapers and ``status``: they need no right to create namespaces."""
    from kubefixtures.kube.config import load_config

    cluster = Cluster(load_config(kubeconfig, context))
    try:
        cluster.check_reachable()
    except ClusterError:
        cluster.close()
        raise
    return cluster


def read_session(cluster: Cluster, name: str) -> SessionNamespace | None:
    """The namespace ``name`` and its Lease as they are now, or None when it is gone."""
    namespace = cluster.namespace(name)
    if namespace is None:
        return None
    lease = cluster.get_or_none(LEASE, name, LEASE_NAME)
    return namespace_from_object(namespace, lease_from_object(lease) if lease else None)


def managed_selector(extra: str | None = None) -> str:
    """The managed label, narrowed by ``extra`` (a label selector) when given."""
    return f"{MANAGED_SELECTOR},{extra}" if extra and extra.strip() else MANAGED_SELECTOR


def list_sessions(cluster: Cluster, selector: str | None = None) -> list[SessionNamespace]:
    """Every namespace labelled as managed by kubefixtures (and matching ``selector``, a label
    selector), with its Lease: two lists."""
    labels = managed_selector(selector)
    try:
        namespaces = cluster.list_objects(NAMESPACE, None, label_selector=labels)
    except ApiError as error:
        raise ClusterError(f"listing namespaces with labels {labels} failed: {error}") from None
    # The Leases by name only: a Lease is found even if its labels were lost.
    leases = cluster.request(
        "GET", LEASE.collection_path(None), query=[("fieldSelector", LEASE_SELECTOR)]
    )
    by_namespace = {
        item["metadata"]["namespace"]: lease_from_object(item) for item in leases.get("items", [])
    }
    sessions = [
        namespace_from_object(item, by_namespace.get(item["metadata"]["name"]))
        for item in namespaces.get("items", [])
    ]
    return sorted(sessions, key=lambda session: session.name)


def delete_session(cluster: Cluster, session: SessionNamespace) -> bool:
    """Delete the namespace only if it is still exactly what was judged (same uid and
    resourceVersion: nobody relabelled or recreated it since). False if it changed or went."""
    if not session.managed:  # the last line of defence: never anything not labelled as ours
        raise ValueError(f"namespace {session.name} is not managed by kubefixtures")
    preconditions = {"uid": session.uid} if session.uid else {}
    if session.resource_version:
        preconditions["resourceVersion"] = session.resource_version
    try:
        cluster.request(
            "DELETE",
            NAMESPACE.object_path(None, session.name),
            body={
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "propagationPolicy": "Background",
                "preconditions": preconditions,
            },
        )
    except (NotFound, Conflict):
        return False
    except ApiError as error:
        raise ClusterError(f"deleting namespace {session.name} failed: {error}") from None
    return True


def post_deletion_event(
    cluster: Cluster,
    session: SessionNamespace,
    reason: str,
    *,
    component: str,
) -> None:
    """An Event about the deleted namespace. Best effort: a failure is logged, never raised.

    It goes to ``default``: the deleted namespace takes its own events with it, and the API
    keeps events about cluster-scoped objects (Namespaces, like Nodes) in ``default``, where
    ``kubectl describe namespace`` and ``kubectl get events -n default`` find them.
    """
    now = format_time(_now())
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{session.name}.", "namespace": EVENT_NAMESPACE},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "name": session.name,
            "uid": session.uid,
        },
        "type": "Normal",
        "reason": EVENT_REASON,
        "action": "Delete",
        "message": f"deleted namespace {session.name}: {reason}"[:1024],
        "source": {"component": component, "host": socket.gethostname()},
        "reportingComponent": component,
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        cluster.request("POST", EVENT_PATH.format(namespace=EVENT_NAMESPACE), body=body)
    except ClusterError as error:
        logger.warning("posting the event for namespace %s failed: %s", session.name, error)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a reaper did with one namespace after looking at it afresh."""

    namespace: str
    deleted: bool
    decision: Decision | None  # None: the namespace was already gone
    session: SessionNamespace | None = None


def recheck_and_delete(
    cluster: Cluster,
    name: str,
    grace: timedelta | float,
    *,
    component: str,
    now: Callable[[], datetime] = _now,
) -> Outcome:
    """Read the namespace and its Lease from the API, decide again, and delete if condemned.

    This is the only path to a deletion: what a reaper remembers may be stale (a renewal
    it has not seen yet), what the API says now is not.
    """
    decision: Decision | None = None
    session: SessionNamespace | None = None
    # A second round only when the namespace changed between reading and deleting.
    for _ in range(2):
        session = read_session(cluster, name)
        if session is None:
            return Outcome(namespace=name, deleted=False, decision=None)
        decision = decide(session, now(), grace)
        if not decision.delete:
            return Outcome(namespace=name, deleted=False, decision=decision, session=session)
        if delete_session(cluster, session):
            post_deletion_event(
                cluster,
                session,
                decision.reason,
                component=component,
            )
            return Outcome(namespace=name, deleted=True, decision=decision, session=session)
    return Outcome(namespace=name, deleted=False, decision=decision, session=session)
