"""Cluster providers: where the tests' Kubernetes comes from.

- ``local``: a real single-node Kubernetes built from upstream sources, run on this host.
- ``kind``: Kubernetes in Docker.
- ``existing``: whatever the current kubeconfig context points at.
- ``auto`` (default): the current context if it answers, else kind where Docker and kind
  exist, else local. ``KUBEFIXTURES_CLUSTER`` forces one.
"""

from __future__ import annotations

import os

from kubefixtures.cluster.base import ClusterError, ClusterProvider, ClusterStatus

PROVIDERS = ("auto", "local", "kind", "existing")

__all__ = ["PROVIDERS", "ClusterError", "ClusterProvider", "ClusterStatus", "get_provider"]


def get_provider(name: str | None = None) -> ClusterProvider:
    chosen = name or os.environ.get("KUBEFIXTURES_CLUSTER") or "auto"
    if chosen not in PROVIDERS:
        raise ClusterError(
            f"unknown cluster provider {chosen!r} (from KUBEFIXTURES_CLUSTER or --provider); "
            f"choose one of: {', '.join(PROVIDERS)}"
        )
    # Imported on demand: each provider pulls in only what it needs.
    from kubefixtures.cluster.existing import ExistingProvider
    from kubefixtures.cluster.kind import KindProvider
    from kubefixtures.cluster.local.provider import LocalProvider

    if chosen == "local":
        return LocalProvider()
    if chosen == "kind":
        return KindProvider()
    if chosen == "existing":
        return ExistingProvider()
    local = LocalProvider()
    if local.status().running:
        return local
    existing = ExistingProvider()
    if existing.available():
        return existing
    kind = KindProvider()
    return kind if kind.available() else local
