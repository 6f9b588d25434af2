"""The only package that talks to the Kubernetes API (ruff's TID251 keeps it that way).

``kubernetes`` itself is imported lazily inside functions, so importing this package is
cheap; the port forwarder lives beside it in ``portforward``.
"""

from __future__ import annotations

from kubefixtures.kube.client import ApiError, Cluster, Resource, WatchStream
from kubefixtures.kube.waiter import Tracked, wait_ready

__all__ = ["ApiError", "Cluster", "Resource", "Tracked", "WatchStream", "wait_ready"]
