"""A kind cluster (Kubernetes in Docker), for laptops and CI runners with a Docker engine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kubefixtures.cluster.base import ClusterStatus
from kubefixtures.cluster.existing import ExistingProvider
from kubefixtures.cluster.tools import require_tool, run_tool

CLUSTER_NAME = os.environ.get("KUBEFIXTURES_KIND_NAME", "kubefixtures")
KIND_HINT = "install kind (https://kind.sigs.k8s.io) and Docker, or use KUBEFIXTURES_CLUSTER=local"


def kind_config() -> Path | None:
    """KUBEFIXTURES_KIND_CONFIG, else kind-config.yaml in the working directory."""
    configured = os.environ.get("KUBEFIXTURES_KIND_CONFIG")
    if configured:
        return Path(configured)
    here = Path("kind-config.yaml")
    return here if here.is_file() else None


class KindProvider:
    name = "kind"

    def __init__(self, cluster_name: str = CLUSTER_NAME) -> None:
        self.cluster_name = cluster_name
        self.context = f"kind-{cluster_name}"

    def available(self) -> bool:
        return bool(shutil.which("kind") and shutil.which("docker"))

    def _exists(self) -> bool:
        kind = require_tool("kind", KIND_HINT)
        clusters = run_tool([kind, "get", "clusters"], "kind get clusters", timeout=60)
        return self.cluster_name in clusters.split()

    def up(self) -> ClusterStatus:
        kind = require_tool("kind", KIND_HINT)
        if not self._exists():
            argv: list[str | Path] = [kind, "create", "cluster", "--name", self.cluster_name]
            config = kind_config()
            if config is not None:
                argv += ["--config", config]
            run_tool([*argv, "--wait", "120s"], "kind create cluster")
        return self.status()

    def down(self) -> None:
        kind = require_tool("kind", KIND_HINT)
        run_tool([kind, "delete", "cluster", "--name", self.cluster_name], "kind delete cluster")

    def status(self) -> ClusterStatus:
        if not self.available() or not self._exists():
            return ClusterStatus(self.name, running=False, context=self.context)
        status = ExistingProvider(self.context).status()
        return ClusterStatus(
            self.name,
            running=status.running,
            context=self.context,
            kubeconfig=status.kubeconfig,
            version=status.version,
            nodes_ready=status.nodes_ready,
        )

    def load_image(self, archive: Path) -> None:
        kind = require_tool("kind", KIND_HINT)
        run_tool(
            [kind, "load", "image-archive", archive, "--name", self.cluster_name],
            f"kind load image-archive {archive}",
        )

    def remove_image(self, ref: str) -> None:
        kind = require_tool("kind", KIND_HINT)
        docker = require_tool("docker", KIND_HINT)
        nodes = run_tool([kind, "get", "nodes", "--name", self.cluster_name], "kind get nodes")
        for node in nodes.split():
            # crictl rmi fails on an absent image: check first, as an absent one is no error
            listed = run_tool([docker, "exec", node, "crictl", "images", "-q", ref], "crictl")
            if listed.strip():
                run_tool([docker, "exec", node, "crictl", "rmi", ref], f"crictl rmi {ref}")
