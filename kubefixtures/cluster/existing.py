"""Whatever cluster the current kubeconfig context points at (a shared CI cluster, a
cloud cluster, one a colleague set up). kubefixtures never creates or deletes it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from kubefixtures.cluster import kubeconfig
from kubefixtures.cluster.base import ClusterError, ClusterStatus
from kubefixtures.cluster.tools import find_tool, require_tool
from kubefixtures.errors import setting_name

ANSWER_TIMEOUT = "5s"


class ExistingProvider:
    name = "existing"

    def __init__(self, context: str | None = None) -> None:
        self.context = context

    def _kubectl(self) -> list[str]:
        kubectl = require_tool("kubectl", "install kubectl or run `make venv` (see README)")
        argv = [str(kubectl), f"--request-timeout={ANSWER_TIMEOUT}"]
        return [*argv, f"--context={self.context}"] if self.context else argv

    def available(self) -> bool:
        """Whether the current context answers (quickly: this runs on every `auto`)."""
        if find_tool("kubectl") is None:
            return False
        result = subprocess.run(
            [*self._kubectl(), "get", "--raw=/readyz"], capture_output=True, timeout=15
        )
        return result.returncode == 0

    def up(self) -> ClusterStatus:
        current = self.status()
        if not current.running:
            raise ClusterError(
                f"the kubeconfig context {current.context or '(none)'} does not answer; "
                "check `kubectl cluster-info`, or choose KUBEFIXTURES_CLUSTER=local|kind"
            )
        return current

    def down(self) -> None:
        raise ClusterError(
            "kubefixtures did not create the existing cluster and will not tear it down"
        )

    def status(self) -> ClusterStatus:
        context = self.context or _current_context()
        result = subprocess.run(
            [*self._kubectl(), "get", "nodes", "-o", "json"], capture_output=True, text=True
        )
        if result.returncode != 0:
            return ClusterStatus(self.name, running=False, context=context)
        nodes = json.loads(result.stdout).get("items", [])
        ready = sum(
            1
            for node in nodes
            for condition in node["status"].get("conditions", [])
            if condition["type"] == "Ready" and condition["status"] == "True"
        )
        versions = sorted({node["status"]["nodeInfo"]["kubeletVersion"] for node in nodes})
        return ClusterStatus(
            self.name,
            running=True,
            context=context,
            kubeconfig=kubeconfig.user_kubeconfig_path(),
            version=", ".join(versions) or None,
            nodes_ready=ready,
        )

    def load_image(self, archive: Path) -> None:
        raise ClusterError(
            "images cannot be loaded into an existing cluster; push the image to a "
            f"registry the cluster pulls from and map it with {setting_name('image-overrides')} "
            "NAME=REF"
        )

    def remove_image(self, ref: str) -> None:
        raise ClusterError(
            f"images cannot be removed from an existing cluster by kubefixtures ({ref}); "
            "it loads none there"
        )


def _current_context() -> str | None:
    kubectl = find_tool("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run(
        [str(kubectl), "config", "current-context"], capture_output=True, text=True
    )
    return result.stdout.strip() or None
