"""What every cluster provider offers, and the errors they raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kubefixtures.errors import ClusterError

__all__ = ["ClusterError", "ClusterProvider", "ClusterStatus"]


@dataclass(frozen=True)
class ClusterStatus:
    provider: str
    running: bool
    context: str | None = None
    kubeconfig: Path | None = None
    version: str | None = None
    nodes_ready: int = 0
    detail: list[str] = field(default_factory=list)

    def describe(self) -> str:
        state = "running" if self.running else "not running"
        lines = [f"{self.provider} cluster: {state}"]
        if self.context:
            lines.append(f"  context:    {self.context}")
        if self.kubeconfig:
            lines.append(f"  kubeconfig: {self.kubeconfig}")
        if self.version:
            lines.append(f"  version:    {self.version}")
        if self.running:
            lines.append(f"  ready nodes: {self.nodes_ready}")
        lines.extend(f"  {line}" for line in self.detail)
        return "\n".join(lines)


class ClusterProvider(Protocol):
    name: str

    def available(self) -> bool:
        """Whether this provider can work on this machine at all."""
        ...

    def up(self) -> ClusterStatus: ...

    def down(self) -> None: ...

    def status(self) -> ClusterStatus: ...

    def load_image(self, archive: Path) -> None:
        """Put an image tarball (docker-archive or OCI) into the cluster's runtime."""
        ...

    def remove_image(self, ref: str) -> None:
        """Remove an image reference (``name:tag``) from the cluster's runtime: what
        ``load_image`` put there for one run. An absent reference is not an error."""
        ...
