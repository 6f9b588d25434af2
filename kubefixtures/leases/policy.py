"""Session leases as proof of life, and the one decision every reaper makes from them.

A session holds a ``coordination.k8s.io/v1`` Lease named ``kubefixtures-session`` in each
namespace it creates and renews it every third of its duration. A cancelled CI job or a
``kill -9`` stops the renewals; the Lease then expires, and after a grace period the
namespace is garbage. The operator (``kubefixtures.operator``) and ``kubefixtures gc`` both
call :func:`decide`, so they can never disagree about a namespace.

Pure logic only: objects come in as the JSON dicts the API returns (kopf's bodies behave the
same), times are timezone-aware UTC datetimes, and nothing here talks to a cluster.
"""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from kubefixtures.limits import parse_seconds
from kubefixtures.naming import MANAGED_BY_LABEL, MANAGED_BY_VALUE

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_LEASE_SECONDS",
    "EXISTING_NAMESPACE_LABEL",
    "KEEP_UNTIL_ANNOTATION",
    "KEPT_BECAUSE_ANNOTATION",
    "LEASE_NAME",
    "RELEASED_ANNOTATION",
    "Decision",
    "LeaseInfo",
    "LeaseState",
    "SessionNamespace",
    "decide",
    "format_time",
    "grace_seconds",
    "held",
    "holder_identity",
    "lease_from_object",
    "lease_problem",
    "lease_state",
    "namespace_from_object",
    "parse_time",
]

LEASE_NAME = "kubefixtures-session"
KEEP_UNTIL_ANNOTATION = "kubefixtures.io/keep-until"
# Why a namespace was kept (keep-on-failure): such a namespace is someone's to look at, and
# `--kubefixtures-reuse` never adopts nor replaces it.
KEPT_BECAUSE_ANNOTATION = "kubefixtures.io/kept-because"
# Set by a session that is done with its Lease: cancelled (SIGTERM, SIGINT, SIGHUP) before
# it could delete the namespace itself, or ended leaving the namespace kept (keep-on-failure,
# reuse). No session holds it any more: reapers delete the namespace without waiting for
# expiry or grace (once any keep-until has passed), and reuse may adopt it at once.
RELEASED_ANNOTATION = "kubefixtures.io/released-at"
DEFAULT_LEASE_SECONDS = 60.0
# On the Lease of a session that brought environments up in a namespace it did not create
# (``--kubefixtures-namespace``): the namespace is the user's, and a reaper only ever
# deletes the session's objects in it and the Lease, never the namespace itself.
EXISTING_NAMESPACE_LABEL = "kubefixtures.io/existing-namespace"
# Sessions write their Leases in the API server's time and the operator measures on its own
# monotonic clock, so skew between machines needs no grace; it absorbs an API server that
# was briefly unreachable from the session, and a watch event that arrived late.
DEFAULT_GRACE_SECONDS = 60.0

# A Lease outside these bounds was not written by a session (or by one whose clock is
# wildly off): reapers log it and leave its namespace alone rather than guess.
_EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
_FUTURE_TOLERANCE = timedelta(days=1)
_LONGEST_LEASE_SECONDS = 366 * 24 * 3600


def grace_seconds(text: str) -> float:
    """A grace period as given on a command line or in a variable: seconds, 0 or more."""
    return parse_seconds(text, zero_allowed=True)


class LeaseState(enum.StrEnum):
    """Where a session namespace stands, as ``kubefixtures status`` shows it."""

    LIVE = "live"  # renewed within its duration: a session holds it
    EXPIRED = "expired"  # not renewed within its duration: the session is gone (or stuck)
    KEPT = "kept"  # keep-until lies in the future (keep-on-failure)
    MISSING = "missing"  # no Lease at all: the session died while creating the namespace
    UNMANAGED = "unmanaged"  # not labelled as ours: never touched
    DELETING = "deleting"  # already being deleted
    RELEASED = "released"  # its session is done with it (cancelled): deleted at once
    MALFORMED = "malformed"  # a Lease no session wrote: logged, never deleted for it


# Plain frozen dataclasses, not pydantic models: sessions import this module on their way to
# creating a namespace, and pydantic costs about 0.1 s to import and build.
@dataclass(frozen=True, kw_only=True)
class LeaseInfo:
    """What a reaper needs of the Lease ``kubefixtures-session``."""

    holder: str | None = None
    duration_seconds: float = DEFAULT_LEASE_SECONDS
    renew_time: datetime | None = None
    acquire_time: datetime | None = None
    created: datetime | None = None
    keep_until: datetime | None = None
    invalid_keep_until: str | None = None  # the raw annotation, when it is not a time
    kept_because: str | None = None  # keep-on-failure's reason (KEPT_BECAUSE_ANNOTATION)
    released: bool = False  # its session is done with it (RELEASED_ANNOTATION)
    existing_namespace: bool = False  # EXISTING_NAMESPACE_LABEL: the namespace is not ours
    problem: str | None = None  # why this is not a Lease a session wrote (malformed)
    # The renewal fields as written, compared by the operator to notice a renewal.
    signature: str = ""
    # When the reaper itself saw the last renewal (the operator: on its monotonic clock,
    # expressed in the frame of the ``now`` it decides with). Wins over renewTime.
    observed: datetime | None = None
    # The version read: a take-over judged on this reading is a compare-and-swap against it.
    resource_version: str = ""

    @property
    def last_sign_of_life(self) -> datetime | None:
        return self.observed or self.renew_time or self.acquire_time or self.created

    @property
    def expires_at(self) -> datetime | None:
        last = self.last_sign_of_life
        if last is None:
            return None
        try:
            return last + timedelta(seconds=self.duration_seconds)
        except OverflowError:  # only malformed Leases come near year 9999
            return datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class SessionNamespace:
    """A namespace as a reaper sees it: identity, labels, age, and its Lease (if any)."""

    name: str
    uid: str = ""
    resource_version: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created: datetime
    terminating: bool = False
    keep_until: datetime | None = None  # a keep-until annotation on the namespace itself
    invalid_keep_until: str | None = None
    lease: LeaseInfo | None = None
    # Judged for the session's objects only (an existing namespace's Lease, or an owner of a
    # cluster-scoped object): a deletion it allows never means deleting the namespace.
    objects_only: bool = False

    @property
    def managed(self) -> bool:
        return self.labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE

    @property
    def kept_until(self) -> datetime | None:
        """The later of the Lease's and the namespace's keep-until annotations."""
        times = [t for t in (self.keep_until, self.lease and self.lease.keep_until) if t]
        return max(times) if times else None

    @property
    def invalid_annotation(self) -> str | None:
        return self.invalid_keep_until or (self.lease.invalid_keep_until if self.lease else None)

    def with_lease(self, lease: LeaseInfo | None) -> SessionNamespace:
        return replace(self, lease=lease)


@dataclass(frozen=True, kw_only=True)
class Decision:
    """Delete or keep, why (one line, for logs and Events), and when to look again."""

    delete: bool
    reason: str
    state: LeaseState
    recheck_at: datetime | None = None  # None: nothing but a change to the objects matters


# --- times ---------------------------------------------------------------------------------


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 time (``2024-05-01T12:00:00Z``, with or without fractions) as UTC, or None."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:  # the API always says Z; a bare time from a human means UTC
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_time(moment: datetime, *, micro: bool = False) -> str:
    """The API's time formats: ``Time`` (seconds) or ``MicroTime`` (microseconds), always Z."""
    moment = moment.astimezone(UTC)
    pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return moment.strftime(pattern)


def _seconds(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if abs(seconds) < 120:
        return f"{seconds:.0f} s"
    if abs(seconds) < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- reading objects ------------------------------------------------------------------------


def holder_identity(session_id: str, host: str | None = None, pid: int | None = None) -> str:
    """``<session-id>@<host>/<pid>``: who holds a Lease, for humans reading ``status``."""
    return f"{session_id}@{host or socket.gethostname()}/{os.getpid() if pid is None else pid}"


def _keep_until(annotations: Mapping[str, Any]) -> tuple[datetime | None, str | None]:
    raw = annotations.get(KEEP_UNTIL_ANNOTATION)
    if raw is None or raw == "":
        return None, None
    parsed = parse_time(raw)
    return (parsed, None) if parsed is not None else (None, str(raw))


def _time_field(fields: Mapping[str, Any], key: str) -> tuple[datetime | None, str | None]:
    """A time field: (the time, None), (None, None) when absent, (None, why) when unreadable."""
    raw = fields.get(key)
    if raw is None or raw == "":
        return None, None
    parsed = parse_time(raw)
    if parsed is None:
        return None, f"{key} {raw!r} is not an RFC 3339 time"
    return parsed, None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def lease_from_object(lease: Mapping[str, Any]) -> LeaseInfo:
    """LeaseInfo of a Lease object (a JSON dict or a kopf body). Never raises: what no session
    would have written is described in ``problem`` (see ``lease_problem``)."""
    metadata = _mapping(lease.get("metadata"))
    spec = lease.get("spec")
    problems = [] if isinstance(spec, Mapping) else ["it has no spec"]
    spec = _mapping(spec)
    annotations = _mapping(metadata.get("annotations"))
    keep_until, invalid = _keep_until(annotations)
    duration = spec.get("leaseDurationSeconds")
    if duration is None:  # a Lease without a duration still proves life for the default
        duration = DEFAULT_LEASE_SECONDS
    elif (
        not isinstance(duration, int | float)
        or isinstance(duration, bool)
        or not 0 < duration <= _LONGEST_LEASE_SECONDS
    ):
        problems.append(f"leaseDurationSeconds {duration!r} is not 1 to {_LONGEST_LEASE_SECONDS}")
        duration = DEFAULT_LEASE_SECONDS
    holder = spec.get("holderIdentity")
    if not isinstance(holder, str) or not holder:
        problems.append(f"holderIdentity {holder!r} is not a name")
        holder = None
    renew_time, renew_problem = _time_field(spec, "renewTime")
    acquire_time, acquire_problem = _time_field(spec, "acquireTime")
    problems += [problem for problem in (renew_problem, acquire_problem) if problem]
    for name, moment in (("renewTime", renew_time), ("acquireTime", acquire_time)):
        if moment is not None and moment < _EARLIEST_TIME:
            problems.append(f"{name} {format_time(moment)} is before {_EARLIEST_TIME.year}")
    kept_because = annotations.get(KEPT_BECAUSE_ANNOTATION)
    labels = _mapping(metadata.get("labels"))
    signature = "|".join(
        str(spec.get(key)) for key in ("holderIdentity", "renewTime", "acquireTime")
    )
    return LeaseInfo(
        holder=holder,
        duration_seconds=float(duration),
        renew_time=renew_time,
        acquire_time=acquire_time,
        created=parse_time(metadata.get("creationTimestamp")),
        keep_until=keep_until,
        invalid_keep_until=invalid,
        kept_because=str(kept_because) if kept_because else None,
        released=bool(annotations.get(RELEASED_ANNOTATION)),
        existing_namespace=labels.get(EXISTING_NAMESPACE_LABEL) == "true",
        problem="; ".join(problems) or None,
        signature=f"{signature}|{duration}",
        resource_version=str(metadata.get("resourceVersion") or ""),
    )


def lease_problem(lease: LeaseInfo, now: datetime) -> str | None:
    """Why ``lease`` is malformed at ``now`` (None: it is not). Besides what
    ``lease_from_object`` found, a renewal more than a day in the future: no session wrote
    it in the API server's time."""
    if lease.problem is not None:
        return lease.problem
    for name, moment in (("renewTime", lease.renew_time), ("acquireTime", lease.acquire_time)):
        if moment is not None and moment - now > _FUTURE_TOLERANCE:
            return f"{name} {format_time(moment)} is {_seconds(moment - now)} in the future"
    return None


def held(lease: LeaseInfo | None, now: datetime) -> bool:
    """A session holds ``lease`` right now: renewed within its duration, not released, not
    malformed. Whatever any keep-until says: a namespace in use is never adopted nor
    replaced by another run."""
    return lease is not None and _lease_state(lease, now) is LeaseState.LIVE


def namespace_from_object(
    namespace: Mapping[str, Any], lease: LeaseInfo | None = None
) -> SessionNamespace:
    """SessionNamespace of a Namespace object (a JSON dict or a kopf body)."""
    metadata = _mapping(namespace.get("metadata"))
    status = _mapping(namespace.get("status"))
    keep_until, invalid = _keep_until(_mapping(metadata.get("annotations")))
    created = parse_time(metadata.get("creationTimestamp")) or datetime.now(UTC)
    return SessionNamespace(
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        resource_version=str(metadata.get("resourceVersion") or ""),
        labels={str(k): str(v) for k, v in _mapping(metadata.get("labels")).items()},
        created=created,
        terminating=bool(metadata.get("deletionTimestamp")) or status.get("phase") == "Terminating",
        keep_until=keep_until,
        invalid_keep_until=invalid,
        lease=lease,
    )


# --- the decision -----------------------------------------------------------------------------


def lease_state(namespace: SessionNamespace, now: datetime) -> LeaseState:
    """live / expired / kept / missing (or unmanaged / deleting) at ``now``."""
    if not namespace.managed:
        return LeaseState.UNMANAGED
    if namespace.terminating:
        return LeaseState.DELETING
    kept = namespace.kept_until
    if (kept is not None and kept > now) or namespace.invalid_annotation is not None:
        return LeaseState.KEPT
    lease = namespace.lease
    if lease is None:
        return LeaseState.MISSING
    return _lease_state(lease, now)


def _lease_state(lease: LeaseInfo, now: datetime) -> LeaseState:
    if lease_problem(lease, now) is not None:
        return LeaseState.MALFORMED
    if lease.released:
        return LeaseState.RELEASED
    expires = lease.expires_at
    return LeaseState.LIVE if expires is not None and now < expires else LeaseState.EXPIRED


def decide(namespace: SessionNamespace, now: datetime, grace: timedelta | float) -> Decision:
    """Delete ``namespace`` now, or keep it (and when to look again)?

    Deleted only when it is labelled as managed by kubefixtures, not already being deleted,
    not kept (keep-until in the future, or an unreadable keep-until: a human meant to keep
    it), and either its Lease expired more than ``grace`` ago, or its session released the
    Lease when cancelled, or it has no Lease and is older than ``grace`` (the session died
    between creating the namespace and its Lease). A malformed Lease (see
    ``lease_from_object`` and ``lease_problem``) keeps its namespace: no session wrote it,
    so it says nothing about one being gone.
    """
    grace = grace if isinstance(grace, timedelta) else timedelta(seconds=grace)
    state = lease_state(namespace, now)
    kept = _kept(namespace, state, now, grace)
    if kept is not None:
        return kept
    lease = namespace.lease
    if lease is None:
        return _without_lease(namespace, now, grace)
    if state is LeaseState.MALFORMED:
        return Decision(
            delete=False,
            state=state,
            reason=f"lease {LEASE_NAME} is malformed ({lease_problem(lease, now)}): kept until "
            "someone fixes or deletes it",
        )
    if state is LeaseState.RELEASED:
        holder = f" by {lease.holder}" if lease.holder else ""
        return Decision(
            delete=True,
            state=state,
            reason=f"lease released{holder}: its session is done with it{_passed(namespace)}",
        )
    return _with_lease(namespace, lease, state, now, grace)


def _due(namespace: SessionNamespace, grace: timedelta) -> datetime:
    """When the namespace becomes deletable, keep-until aside."""
    lease = namespace.lease
    expires = lease.expires_at if lease is not None else None
    try:
        return (expires if expires is not None else namespace.created) + grace
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def _passed(namespace: SessionNamespace) -> str:
    kept = namespace.kept_until
    return f"; keep-until {format_time(kept)} has passed" if kept is not None else ""


def _kept(
    namespace: SessionNamespace, state: LeaseState, now: datetime, grace: timedelta
) -> Decision | None:
    """The decisions that do not depend on the Lease: not ours, going, or kept."""
    if state is LeaseState.UNMANAGED:
        return Decision(
            delete=False,
            state=state,
            reason=f"not managed by kubefixtures (no label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE})",
        )
    if state is LeaseState.DELETING:
        return Decision(delete=False, state=state, reason="already being deleted")
    lease = namespace.lease
    if lease is not None and lease.existing_namespace and not namespace.objects_only:
        # The last line of defence for a user's namespace (--kubefixtures-namespace).
        return Decision(
            delete=False,
            state=LeaseState.UNMANAGED,
            reason=f"its lease says the namespace is not ours ({EXISTING_NAMESPACE_LABEL}): "
            "only the session's objects in it are ever reaped",
        )
    invalid = namespace.invalid_annotation
    if invalid is not None:
        return Decision(
            delete=False,
            state=state,
            reason=f"annotation {KEEP_UNTIL_ANNOTATION}={invalid!r} is not an RFC 3339 time: "
            "kept until someone fixes or removes it",
        )
    if state is LeaseState.KEPT:
        kept = namespace.kept_until
        assert kept is not None
        # Whatever the keep-until, the namespace also waits for its lease to expire (+ grace).
        return Decision(
            delete=False,
            state=state,
            reason=f"kept until {format_time(kept)} ({_seconds(kept - now)} from now)",
            recheck_at=max(kept, _due(namespace, grace)),
        )
    return None


def _without_lease(namespace: SessionNamespace, now: datetime, grace: timedelta) -> Decision:
    age = now - namespace.created
    due = _due(namespace, grace)
    if now < due:
        return Decision(
            delete=False,
            state=LeaseState.MISSING,
            reason=f"no lease yet, {_seconds(age)} old (grace {_seconds(grace)})",
            recheck_at=due,
        )
    return Decision(
        delete=True,
        state=LeaseState.MISSING,
        reason=f"no lease and {_seconds(age)} old (grace {_seconds(grace)}){_passed(namespace)}",
    )


def _with_lease(
    namespace: SessionNamespace,
    lease: LeaseInfo,
    state: LeaseState,
    now: datetime,
    grace: timedelta,
) -> Decision:
    holder = f" held by {lease.holder}" if lease.holder else ""
    expires = lease.expires_at or namespace.created
    due = _due(namespace, grace)
    if state is LeaseState.LIVE:
        return Decision(
            delete=False,
            state=state,
            reason=f"lease{holder} live for {_seconds(expires - now)} more",
            recheck_at=due,
        )
    if now < due:
        return Decision(
            delete=False,
            state=state,
            reason=f"lease{holder} expired {_seconds(now - expires)} ago, within the grace "
            f"of {_seconds(grace)}",
            recheck_at=due,
        )
    return Decision(
        delete=True,
        state=state,
        reason=f"lease{holder} expired {_seconds(now - expires)} ago "
        f"(duration {lease.duration_seconds:.0f} s, grace {_seconds(grace)}){_passed(namespace)}",
    )
