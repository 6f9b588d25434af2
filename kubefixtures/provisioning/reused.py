"""``--kubefixtures-reuse``: environments that outlive a run and serve the next ones.

A reused environment is found again by labels on its namespace: managed by kubefixtures,
the environment's name, the user, and ``kubefixtures.io/reuse-key``, a digest of the
environment's manifests rendered with fixed stand-ins for what changes every session (the
namespace, the session id, generated secrets). Same sources, values and image overrides:
same key, and the next run adopts the namespace. Anything else: another key, and the stale
namespace is deleted (unless a session is using it right now, or it was kept on failure)
before a new one is created.

Owners first: a namespace whose Lease a live session holds is never adopted nor deleted,
and neither is one kept on failure (someone is to look at it). Adopting, and replacing,
take the Lease over on condition that it did not change since it was judged free (its
resourceVersion), so two runs started at once never share a namespace (the second one
adopts another, or creates its own), and a run with other manifests never deletes one that
a run with the old manifests adopted meanwhile.

Adopting a namespace renders the manifests again with the secrets and session id of the
session that created it (read back from the ``kubefixtures-secrets`` Secret and the session
label), applies them (a no-op unless a test changed something) and waits for readiness as
usual, so that what the tests get is identical from one run to the next.

Leases: while a session uses the namespace it holds and renews its Lease; at the end of the
session it stops renewing and sets keep-until (``--kubefixtures-keep-for``, 2 h by default),
so the operator and ``kubefixtures gc`` leave it alone between runs. A reused namespace
that no run adopts within that time is reaped like any other leaked session.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kubefixtures import naming
from kubefixtures.commands_for_people import kubectl_prefix
from kubefixtures.kube.errors import Conflict
from kubefixtures.leases.policy import (
    SessionNamespace,
    format_time,
    held,
    holder_identity,
)
from kubefixtures.provisioning.fresh import Adopted, NewNamespace
from kubefixtures.rendering import RenderContext, Secrets, render_sources

if TYPE_CHECKING:
    from kubefixtures.kube import Cluster
    from kubefixtures.leases.renewal import SessionLease
    from kubefixtures.provisioning.base import EnvironmentSpec, Reporter
    from kubefixtures.settings import Settings

__all__ = ["REUSE_KEY_LABEL", "KnownSecrets", "ReuseNamespace", "reuse_key"]

REUSE_KEY_LABEL = "kubefixtures.io/reuse-key"
_STAND_IN = "kubefixtures-reuse"  # the namespace and session id the key is computed with


class KnownSecrets(Secrets):
    """Generated secrets whose values are known already (a reused namespace's); names not
    known get fresh values, as in any session."""

    def __init__(self, known: dict[str, str]) -> None:
        super().__init__()
        self._known = dict(known)

    def get(self, name: str) -> str:
        if name in self._known:
            return self._known[name]
        return super().get(name)


class _StandInSecrets(Secrets):
    def get(self, name: str) -> str:
        return f"kubefixtures-secret-{name}"


def reuse_key(spec: EnvironmentSpec, settings: Settings) -> str:
    """A digest of the environment's manifests, blind to what every session changes."""
    context = RenderContext(
        namespace=_STAND_IN,
        session_id=_STAND_IN,
        environment=spec.name,
        values=spec.values,
        values_files=spec.values_files,
        secrets=_StandInSecrets(),
        image_overrides=settings.image_overrides,
    )
    manifests = [obj.manifest for obj in render_sources(spec.sources, context)]
    text = json.dumps([spec.name, manifests], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class ReuseNamespace(NewNamespace):
    """The namespace strategy of ``--kubefixtures-reuse``: adopt the namespace a previous
    run left for this environment, and leave this one up for the next run."""

    def __init__(
        self, spec: EnvironmentSpec, settings: Settings, session_id: str, reporter: Reporter
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.session_id = session_id
        self.reporter = reporter
        self.reuse_key = ""
        self.adopted: str | None = None  # the namespace of an earlier run, once adopted

    def labels(self) -> Mapping[str, str]:
        return {REUSE_KEY_LABEL: self.reuse_key}

    def choose(self, connecting: Future[Cluster]) -> Adopted | None:
        self.reuse_key = reuse_key(self.spec, self.settings)  # while the cluster answers
        cluster = connecting.result()
        fresh, stale = self._candidates(cluster)
        for name in stale:
            self._replace(cluster, name)
        for name in fresh:
            adopted = self._adopt(cluster, name)
            if adopted is not None:
                return adopted
        return None

    def _adopt(self, cluster: Cluster, name: str) -> Adopted | None:
        """Take namespace ``name`` over, unless it is someone else's (or becomes so first)."""
        from kubefixtures.kube.client import SECRET
        from kubefixtures.leases.reaping import read_session
        from kubefixtures.secrets import SECRETS_NAME, stored_secrets

        session = read_session(cluster, name)
        if session is None or session.terminating:
            return None
        owner = self._owner(cluster, session)
        if owner is not None:
            self.reporter.write_line(
                f"kubefixtures: environment {self.spec.name!r}: not reusing namespace {name}: "
                f"{owner}"
            )
            return None
        lease = self._claim(cluster, session)
        if lease is None:
            return None  # another run was quicker: it is theirs now
        self.adopted = name
        stored = stored_secrets(cluster.get_or_none(SECRET, name, SECRETS_NAME), name)
        return Adopted(
            namespace=name,
            session_id=session.labels.get(naming.SESSION_LABEL) or self.session_id,
            secrets=KnownSecrets(stored),
            lease=lease,
        )

    def _claim(self, cluster: Cluster, session: SessionNamespace) -> SessionLease | None:
        """Hold the namespace's Lease, or None when another run changed it since ``session``
        was read (it adopted or replaced the namespace meanwhile)."""
        from kubefixtures.leases.renewal import LeaseTaken, SessionLease

        # A compare-and-swap against the very Lease judged free: read again, it could already
        # be another run's, and its newer version would let this run take it over too.
        version = session.lease.resource_version if session.lease else ""
        lease = SessionLease(
            cluster,
            session.name,
            holder_identity(self.session_id),
            self.settings.lease_duration,
            warn=self.reporter.write_line,
        )
        try:
            if version:
                lease.take_over(expected_version=version)
            else:
                lease.create()  # the previous run died before creating it
        except (LeaseTaken, Conflict):
            return None
        return lease

    def _owner(self, cluster: Cluster, session: SessionNamespace) -> str | None:
        """Who the namespace belongs to, if not to whichever run comes next: a live
        session, or whoever is to look at a namespace kept on failure."""
        lease = session.lease
        if lease is not None and held(lease, cluster.server_clock.wall()):
            return f"in use by {lease.holder}"
        if lease is not None and lease.kept_because:
            return f"kept on failure ({lease.kept_because})"
        return None

    def _candidates(self, cluster: Cluster) -> tuple[list[str], list[str]]:
        """This user's namespaces of this environment left for reuse: those of the current
        key (newest first), and those of another key."""
        from kubefixtures.kube.client import NAMESPACE

        labels = naming.namespace_labels(self.session_id, self.spec.name)
        selector = ",".join(
            [
                f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY_VALUE}",
                f"{naming.ENVIRONMENT_LABEL}={labels[naming.ENVIRONMENT_LABEL]}",
                f"{naming.USER_LABEL}={labels.get(naming.USER_LABEL, '')}",
                REUSE_KEY_LABEL,
            ]
        )
        items = cluster.list_objects(NAMESPACE, None, label_selector=selector).get("items") or []
        alive = [item for item in items if not item["metadata"].get("deletionTimestamp")]
        alive.sort(key=lambda item: str(item["metadata"].get("creationTimestamp")), reverse=True)

        def key(item: dict[str, Any]) -> str:
            return str(item["metadata"]["labels"][REUSE_KEY_LABEL])

        fresh = [str(item["metadata"]["name"]) for item in alive if key(item) == self.reuse_key]
        stale = [str(item["metadata"]["name"]) for item in alive if key(item) != self.reuse_key]
        return fresh, stale

    def _replace(self, cluster: Cluster, name: str) -> None:
        """Delete a stale reused namespace, unless it is someone's (see ``_owner``)."""
        from kubefixtures.leases.reaping import read_session

        session = read_session(cluster, name)
        if session is None:
            return
        owner = self._owner(cluster, session)
        if owner is not None:
            self.reporter.write_line(
                f"kubefixtures: environment {self.spec.name!r}: namespace {name} was left for "
                f"reuse with other manifests but is {owner}; left alone"
            )
            return
        # Claimed first, as an adoption would: a run with the old manifests that adopted it
        # since it was judged nobody's keeps it, and none adopts it from now on.
        lease = self._claim(cluster, session)
        if lease is None:
            self.reporter.write_line(
                f"kubefixtures: environment {self.spec.name!r}: namespace {name} was left "
                "for reuse with other manifests but another run took it meanwhile; left alone"
            )
            return
        self.reporter.write_line(
            f"kubefixtures: environment {self.spec.name!r}: its manifests changed; deleting "
            f"namespace {name} left by an earlier run"
        )
        cluster.delete_namespace(name)
        # Settled once its deletion was asked for; until then a cancelled run releases the
        # Lease (reapers delete the namespace), and a failed deletion leaves it unrenewed:
        # the next run judges it nobody's again and retries.
        lease.settle()

    def ready_line(self, namespace: str) -> str | None:
        if self.adopted != namespace:
            return None
        return (
            f"kubefixtures: environment {self.spec.name!r} reused namespace "
            f"{namespace} (--kubefixtures-reuse)"
        )

    def settled(self) -> None:
        pass

    def leave_up(self, namespace: str, context: str | None) -> tuple[float, str]:
        keep_for = self.settings.keep_for
        until = format_time(datetime.now(UTC) + timedelta(seconds=keep_for))  # for people
        kubectl = kubectl_prefix(context, self.settings.kubeconfig)
        return keep_for, (
            f"kubefixtures: environment {self.spec.name!r} stays up in namespace "
            f"{namespace} for the next --kubefixtures-reuse run, kept until {until} "
            f"(`{kubectl} delete namespace {namespace}` removes it)"
        )
