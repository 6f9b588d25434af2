"""``--kubefixtures-reuse``: environments that outlive a run and serve the next ones.

A reused environment is found again by labels on its namespace: managed by kubefixtures,
the environment's name, the user, and ``kubefixtures.io/reuse-key``, a digest of the
environment's manifests rendered with fixed stand-ins for what changes every session (the
namespace, the session id, generated secrets). Same sources, values and image overrides:
same key, and the next run adopts the namespace. Anything else: another key, and the stale
namespace is deleted (unless a session is using it right now: its Lease is live) before a
new one is created.

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

import base64
import hashlib
import json
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kubefixtures import naming
from kubefixtures.errors import KubefixturesError
from kubefixtures.kubectl import kubectl_prefix
from kubefixtures.lease import LeaseState, format_time, holder_identity, lease_state
from kubefixtures.lifecycle import SECRETS_KEY, SECRETS_NAME, Lifecycle
from kubefixtures.rendering import RenderContext, Secrets, render_sources

if TYPE_CHECKING:
    from kubefixtures.kube import Cluster
    from kubefixtures.lifecycle import EnvironmentSpec
    from kubefixtures.session import SessionState
    from kubefixtures.settings import Settings

__all__ = ["REUSE_KEY_LABEL", "KnownSecrets", "ReusingLifecycle", "reuse_key"]

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
        secrets=_StandInSecrets(),
        image_overrides=settings.image_overrides,
    )
    manifests = [obj.manifest for obj in render_sources(spec.sources, context)]
    text = json.dumps([spec.name, manifests], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class ReusingLifecycle(Lifecycle):
    """A Lifecycle that adopts the namespace a previous run left for it, and leaves its own
    namespace up for the next run."""

    def __init__(self, spec: EnvironmentSpec, session: SessionState) -> None:
        super().__init__(spec, session)
        self.reuse_key = ""
        self.reused = False
        self._reusable = True  # False once setup failed: a broken environment goes

    # --- setup --------------------------------------------------------------------------------

    def _choose_namespace(self, connecting: Future[Cluster]) -> str:
        self.reuse_key = reuse_key(self.spec, self.settings)  # while the cluster answers
        cluster = connecting.result()
        fresh, stale = self._candidates(cluster)
        for name in stale:
            self._replace(cluster, name)
        if not fresh:
            return super()._choose_namespace(connecting)
        namespace = fresh[0]
        self.secrets = KnownSecrets(_stored_secrets(cluster, namespace["metadata"]["name"]))
        labels = namespace["metadata"].get("labels") or {}
        self.render_session_id = labels.get(naming.SESSION_LABEL) or self.session.session_id
        self.reused = True
        return str(namespace["metadata"]["name"])

    def _candidates(self, cluster: Cluster) -> tuple[list[dict[str, Any]], list[str]]:
        """This user's namespaces of this environment left for reuse: those of the current
        key (newest first), and the names of stale ones (another key)."""
        from kubefixtures.kube.client import NAMESPACE

        labels = self._namespace_labels()
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
        fresh = [
            item for item in alive if item["metadata"]["labels"][REUSE_KEY_LABEL] == self.reuse_key
        ]
        fresh.sort(key=lambda item: str(item["metadata"].get("creationTimestamp")), reverse=True)
        stale = [
            str(item["metadata"]["name"])
            for item in alive
            if item["metadata"]["labels"][REUSE_KEY_LABEL] != self.reuse_key
        ]
        return fresh, stale

    def _replace(self, cluster: Cluster, name: str) -> None:
        """Delete a stale reused namespace, unless a session is using it right now."""
        from kubefixtures.kube.lease import read_session

        session = read_session(cluster, name)
        if session is None:
            return
        if lease_state(session, datetime.now(UTC)) is LeaseState.LIVE:
            self.session.write_line(
                f"kubefixtures: environment {self.spec.name!r}: namespace {name} was left for "
                "reuse with other manifests but is in use; left to its lease"
            )
            return
        self.session.write_line(
            f"kubefixtures: environment {self.spec.name!r}: its manifests changed; deleting "
            f"namespace {name} left by an earlier run"
        )
        cluster.delete_namespace(name)

    def _namespace_labels(self) -> dict[str, str]:
        return {**super()._namespace_labels(), REUSE_KEY_LABEL: self.reuse_key}

    def _prepare_namespace(self, cluster: Cluster, namespace: str) -> None:
        if not self.reused:
            super()._prepare_namespace(cluster, namespace)
            return
        from kubefixtures.kube.lease import SessionLease

        self.namespace = namespace
        self._created = True
        lease = SessionLease(
            cluster,
            namespace,
            holder_identity(self.session.session_id),
            self.settings.lease_duration,
            warn=self.session.write_line,
        )
        lease.take_over()
        self.lease = lease
        lease.start()

    def _abort(self, error: BaseException) -> None:
        self._reusable = False
        super()._abort(error)

    def report_ready(self) -> None:
        super().report_ready()
        if self.reused:
            self.session.write_line(
                f"kubefixtures: environment {self.spec.name!r} reused namespace "
                f"{self.namespace} (--kubefixtures-reuse)"
            )

    # --- teardown -----------------------------------------------------------------------------

    def teardown(self, *, keep: bool = False, why: str = "") -> None:
        if keep or not self._reusable or not self._created or self.namespace is None:
            super().teardown(keep=keep, why=why)
            return
        until = format_time(datetime.now(UTC) + timedelta(seconds=self.settings.keep_for))
        line = self.release(self.settings.keep_for)
        if line is not None and "is kept until" not in line:  # marking it failed: say why
            self.session.summary_lines.append(line)
        kubectl = kubectl_prefix(
            self.cluster.context if self.cluster else None, self.settings.kubeconfig
        )
        self.session.summary_lines.append(
            f"kubefixtures: environment {self.spec.name!r} stays up in namespace "
            f"{self.namespace} for the next --kubefixtures-reuse run, kept until {until} "
            f"(`{kubectl} delete namespace {self.namespace}` removes it)"
        )


def _stored_secrets(cluster: Cluster, namespace: str) -> dict[str, str]:
    """The generated secrets kept in the namespace; none when it has no such Secret."""
    from kubefixtures.kube.client import ApiError

    try:
        secret = cluster.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{SECRETS_NAME}")
    except ApiError as error:
        if error.status == 404:
            return {}
        raise
    try:
        encoded = (secret.get("data") or {})[SECRETS_KEY]
        values = json.loads(base64.b64decode(encoded))
    except (KeyError, ValueError) as error:
        raise KubefixturesError(
            f"namespace {namespace}: Secret {SECRETS_NAME} is not what kubefixtures wrote "
            f"({type(error).__name__}); delete the namespace to start afresh"
        ) from None
    return {str(name): str(value) for name, value in dict(values).items()}
