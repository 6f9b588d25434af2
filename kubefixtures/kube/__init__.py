"""The only package that talks to the Kubernetes API (ruff's TID251 keeps it that way).

It reads kubeconfigs itself (``config``) and talks HTTP on the standard library
(``_http``); the official client is only imported for the kubeconfigs it alone can read.
The port forwarder lives beside it in ``portforward``.
"""

from __future__ import annotations

from kubefixtures.kube.client import Cluster, Resource, WatchStream
from kubefixtures.kube.errors import ApiError

__all__ = ["ApiError", "Cluster", "Resource", "WatchStream"]
