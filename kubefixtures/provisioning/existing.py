"""``--kubefixtures-namespace NAME``: environments in a namespace the user has, for users
who may not create namespaces (a Role in one namespace on a shared CI cluster).

Nothing creates or deletes that namespace. The session holds the Lease
``kubefixtures-session`` in it, labelled ``kubefixtures.io/existing-namespace=true``
(kubefixtures.leases.existing_namespaces), created before anything is applied and shared
by the session's environments there; every namespaced object an environment applies is
labelled with the session and the environment (pod templates too, so that ``kubectl -l``
finds the pods). Teardown deletes exactly those objects (each read back and deleted only
while it still carries this session's and environment's labels), leaves the owners of its
cluster-scoped objects as usual, and the last environment deletes the Lease.

One session at a time: a second session finds the Lease and is refused with a line naming
its holder (session, user, host), whatever the names of its objects. A Lease whose session
is dead (expired more than the grace ago, or released) is reaped first, as the operator and
``kubefixtures gc`` would. An object of the same name that is not this environment's
(someone else's, or another environment's) is an error before anything is applied:
kubefixtures never changes what it did not apply there.

Keep-on-failure keeps the objects (the Lease gets keep-until) and prints kubectl lines that
select them by label.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from kubefixtures import naming
from kubefixtures.commands_for_people import kept_objects_lines
from kubefixtures.errors import ApplyError, KubefixturesError
from kubefixtures.kube.client import LEASE, run_concurrently
from kubefixtures.kube.errors import Conflict, Forbidden, NotFound
from kubefixtures.leases.existing_namespaces import (
    APPLIED_KINDS_ANNOTATION,
    existing_session,
    kinds_text,
    reap_session,
)
from kubefixtures.leases.ownership import Owner, describe_owner
from kubefixtures.leases.policy import (
    DEFAULT_GRACE_SECONDS,
    EXISTING_NAMESPACE_LABEL,
    LEASE_NAME,
    decide,
    format_time,
    holder_identity,
)
from kubefixtures.leases.renewal import LeaseEnd, SessionLease
from kubefixtures.provisioning.fresh import Adopted, NewNamespace

if TYPE_CHECKING:
    from kubefixtures.kube import Cluster
    from kubefixtures.provisioning.base import EnvironmentSpec, Reporter
    from kubefixtures.provisioning.cluster_scoped import Placed
    from kubefixtures.rendering import Secrets
    from kubefixtures.settings import Settings

__all__ = ["ExistingNamespace"]

_CLAIM_ATTEMPTS = 3


class _Hold:
    """This process's Lease in one existing namespace, and the environments sharing it."""

    def __init__(self, lease: SessionLease) -> None:
        self.lease = lease
        self.users = 0
        self.kinds: set[tuple[str, str]] = set()
        self.keep: tuple[float, str | None] | None = None  # the longest keep asked for


_holds: dict[tuple[str, str], _Hold] = {}  # (cluster, namespace) -> hold
_holds_lock = threading.Lock()  # also serialises claiming: environments start in parallel


class _Share:
    """One environment's share of a ``_Hold`` (a LeaseHold for FreshProvisioning): the last
    environment to finish deletes the Lease, or marks it kept if any of them was kept."""

    def __init__(self, key: tuple[str, str], hold: _Hold) -> None:
        self.key = key
        self.hold = hold
        self._done = False

    def start(self) -> None:
        self.hold.lease.start()  # once: later calls do nothing

    def settle(self) -> None:
        return None

    def finish(self, keep_for: float | None = None, because: str | None = None) -> str | None:
        return self.end(keep_for, because).line

    def end(self, keep_for: float | None = None, because: str | None = None) -> LeaseEnd:
        hold = self.hold
        with _holds_lock:
            if self._done:
                return LeaseEnd(None, problem=False)
            self._done = True
            hold.users -= 1
            if keep_for is not None and (hold.keep is None or keep_for >= hold.keep[0]):
                hold.keep = (keep_for, because)
            if hold.users > 0:
                return LeaseEnd(None, problem=False)
            _holds.pop(self.key, None)
        lease = hold.lease
        if hold.keep is None:
            trouble = lease.delete()
            return LeaseEnd(trouble, problem=trouble is not None)
        lease.stop()
        until = lease.clock.wall() + timedelta(seconds=hold.keep[0])
        try:
            lease.keep_until(until, hold.keep[1], released=True)
        except KubefixturesError as error:
            return LeaseEnd(
                f"kubefixtures: {error}; the operator may delete the objects once the lease "
                "expires",
                problem=True,
            )
        return LeaseEnd(
            f"kubefixtures: the objects of session {self.hold_session} in namespace "
            f"{lease.namespace} are kept until {format_time(until)}; then the operator or "
            "`kubefixtures gc` may delete them (never the namespace)",
            problem=False,
        )

    @property
    def hold_session(self) -> str:
        return self.hold.lease.holder.partition("@")[0]


class ExistingNamespace(NewNamespace):
    """The namespace strategy of ``--kubefixtures-namespace``: the user's namespace, where
    only this environment's objects come and go."""

    owns_namespace = False

    def __init__(
        self,
        spec: EnvironmentSpec,
        settings: Settings,
        session_id: str,
        reporter: Reporter,
        secrets: Callable[[], Secrets],
    ) -> None:
        assert settings.namespace is not None
        self.spec = spec
        self.settings = settings
        self.namespace = settings.namespace
        self.session_id = session_id
        self.reporter = reporter
        self.secrets = secrets
        self.share: _Share | None = None
        self.labels_of_objects = naming.namespace_labels(session_id, spec.name)
        self._kinds: list[str] = []  # plural names of the namespaced kinds, for kubectl

    # --- choosing: the Lease -------------------------------------------------------------

    def choose(self, connecting: Future[Cluster]) -> Adopted:
        cluster = connecting.result()
        key = (cluster.description, self.namespace)
        with _holds_lock:
            hold = _holds.get(key)
            if hold is None:
                hold = _Hold(self._claim(cluster))
                _holds[key] = hold
            hold.users += 1
            self.share = _Share(key, hold)
        return Adopted(
            namespace=self.namespace,
            session_id=self.session_id,
            secrets=self.secrets(),
            lease=self.share,
        )

    def _claim(self, cluster: Cluster) -> SessionLease:
        """Create the session's Lease in the namespace: refused while another session holds
        one there; a dead session's is reaped first."""
        self._refuse_a_session_namespace(cluster)
        lease = SessionLease(
            cluster,
            self.namespace,
            holder_identity(self.session_id),
            self.settings.lease_duration,
            labels={**self.labels_of_objects, EXISTING_NAMESPACE_LABEL: "true"},
            warn=self.reporter.write_line,
        )
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                lease.create()
                return lease
            except NotFound:
                raise KubefixturesError(
                    f"--kubefixtures-namespace {self.namespace}: {cluster.description} has no "
                    "namespace of that name (in this mode kubefixtures never creates one)"
                ) from None
            except Conflict:
                other = cluster.get_or_none(LEASE, self.namespace, LEASE_NAME)
                if other is not None:
                    self._refuse_or_reap(cluster, other)
        raise KubefixturesError(
            f"--kubefixtures-namespace {self.namespace}: another session keeps creating lease "
            f"{LEASE_NAME} there; try again"
        )

    def _refuse_a_session_namespace(self, cluster: Cluster) -> None:
        """A namespace kubefixtures created for a session is reaped with its Lease: never
        one to bring environments up in. (Credentials limited to one namespace may not
        read it: then there is nothing to check.)"""
        try:
            namespace = cluster.namespace(self.namespace)
        except Forbidden:
            return
        labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
        if labels.get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY_VALUE:
            raise KubefixturesError(
                f"--kubefixtures-namespace {self.namespace}: that namespace was created by "
                f"kubefixtures for a session (label {naming.MANAGED_BY_LABEL}="
                f"{naming.MANAGED_BY_VALUE}) and is deleted with it; name a namespace of yours"
            )

    def _refuse_or_reap(self, cluster: Cluster, lease: Mapping[str, Any]) -> None:
        judged = existing_session(lease)
        holder = describe_owner(
            Owner(self.namespace, judged.labels.get(naming.SESSION_LABEL, "?")), judged
        )
        if judged.lease is None or not judged.lease.existing_namespace:
            raise KubefixturesError(
                f"--kubefixtures-namespace {self.namespace}: lease {LEASE_NAME} there belongs "
                f"to {holder}, which created the namespace; name a namespace of yours"
            )
        decision = decide(judged, cluster.server_clock.wall(), DEFAULT_GRACE_SECONDS)
        if not decision.delete:
            raise KubefixturesError(
                f"--kubefixtures-namespace {self.namespace}: the namespace is in use by "
                f"{holder} ({decision.reason}); one session at a time may use it: give each "
                "run a namespace of its own"
            )
        deleted = reap_session(cluster, lease)
        self.reporter.write_line(
            f"kubefixtures: namespace {self.namespace}: deleted {len(deleted)} objects of "
            f"{holder}, whose session is gone ({decision.reason})"
        )

    # --- applying -----------------------------------------------------------------------

    def before_apply(self, cluster: Cluster, namespace: str, placed: Sequence[Placed]) -> None:
        """Refuse objects not this environment's, record the kinds on the Lease, label."""
        namespaced = [item for item in placed if item.resource.namespaced]
        run_concurrently([partial(self._refuse_if_not_ours, cluster, item) for item in namespaced])
        self._kinds = sorted({item.resource.plural for item in namespaced})
        assert self.share is not None
        hold = self.share.hold
        with _holds_lock:
            hold.kinds |= {(item.obj.api_version, item.obj.kind) for item in namespaced}
            try:
                text = kinds_text(hold.kinds)
            except ValueError as error:
                raise ApplyError(f"environment {self.spec.name!r}: {error}") from None
        hold.lease.annotate({APPLIED_KINDS_ANNOTATION: text})
        for item in namespaced:
            _label(item.obj.manifest, self.labels_of_objects)

    def _refuse_if_not_ours(self, cluster: Cluster, item: Placed) -> None:
        live = cluster.get_or_none(item.resource, self.namespace, item.obj.name)
        if live is None or self._ours(live):
            return
        labels = (live.get("metadata") or {}).get("labels") or {}
        owner = (
            f"environment {labels.get(naming.ENVIRONMENT_LABEL)!r} of session "
            f"{labels.get(naming.SESSION_LABEL)}"
            if labels.get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY_VALUE
            else "not made by kubefixtures"
        )
        raise ApplyError(
            f"{item.obj.location}: {item.obj} already exists in namespace {self.namespace} "
            f"({owner}); kubefixtures never changes what it did not apply there: rename it "
            "(${session_id} makes a name unique) or remove the existing one"
        )

    def _ours(self, live: Mapping[str, Any]) -> bool:
        labels = (live.get("metadata") or {}).get("labels") or {}
        return all(
            labels.get(key) == self.labels_of_objects[key]
            for key in (naming.MANAGED_BY_LABEL, naming.SESSION_LABEL, naming.ENVIRONMENT_LABEL)
        )

    # --- teardown -----------------------------------------------------------------------

    def remove(self, cluster: Cluster, namespace: str, placed: Sequence[Placed]) -> list[str]:
        """Delete each namespaced object of the environment that still carries its labels."""
        problems: list[str] = []

        def remove_one(item: Placed) -> None:
            try:
                live = cluster.get_or_none(item.resource, namespace, item.obj.name)
                if live is None or not self._ours(live):
                    return
                uid = str((live.get("metadata") or {}).get("uid") or "")
                cluster.delete_unchanged(item.resource, namespace, item.obj.name, {"uid": uid})
            except KubefixturesError as error:
                problems.append(
                    f"kubefixtures: deleting {item.obj} of environment {self.spec.name!r} in "
                    f"namespace {namespace}: {error}; the operator or `kubefixtures gc` "
                    "deletes it once the session's lease expires"
                )

        run_concurrently([partial(remove_one, item) for item in placed if item.resource.namespaced])
        return problems

    def kept_lines(self, namespace: str, why: str, context: str | None) -> list[str]:
        selector = (
            f"{naming.SESSION_LABEL}={self.labels_of_objects[naming.SESSION_LABEL]},"
            f"{naming.ENVIRONMENT_LABEL}={self.labels_of_objects[naming.ENVIRONMENT_LABEL]}"
        )
        return kept_objects_lines(
            namespace,
            self.spec.name,
            why,
            selector=selector,
            kinds=self._kinds,
            context=context,
            kubeconfig=self.settings.kubeconfig,
        )

    def ready_line(self, namespace: str) -> str | None:
        return (
            f"kubefixtures: environment {self.spec.name!r} is in namespace {namespace} "
            "(--kubefixtures-namespace: its objects only are deleted at the end)"
        )


def _label(manifest: dict[str, Any], labels: Mapping[str, str]) -> None:
    """Add ``labels`` to an object, and to its pod template if it has one."""
    metadata = manifest.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    template = (manifest.get("spec") or {}).get("template")
    if isinstance(template, dict):
        template_metadata = template.setdefault("metadata", {})
        if isinstance(template_metadata, dict):
            template_metadata["labels"] = {**(template_metadata.get("labels") or {}), **labels}
