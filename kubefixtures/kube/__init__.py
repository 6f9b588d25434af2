"""The only package that talks to the Kubernetes API: plumbing, no domain rules.

It reads kubeconfigs itself (``config``), talks HTTP on the standard library (``_http``),
lists and watches (``client``, ``watch``), raises one hierarchy of errors (``errors``),
describes pod status in words (``pods``) and forwards ports (``portforward``); the
official client is only imported for the kubeconfigs it alone can read. ruff's TID251
keeps ``import kubernetes`` here, tests/unit/test_structure.py keeps REST paths, raw
requests and status codes here, and keeps this package from importing anything above it.
"""

from __future__ import annotations

from kubefixtures.kube.client import Cluster, Resource, WatchStream
from kubefixtures.kube.errors import ApiError

__all__ = ["ApiError", "Cluster", "Resource", "WatchStream"]
