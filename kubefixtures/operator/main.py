"""``kubefixtures operator``: configure logging and run the kopf operator until SIGTERM."""

from __future__ import annotations

import kopf

from kubefixtures.operator import handlers  # noqa: F401 - registers the handlers
from kubefixtures.operator.config import OperatorConfig

__all__ = ["run"]


def run(config: OperatorConfig, *, liveness: str | None = None, verbose: bool = False) -> int:
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    kopf.run(
        clusterwide=True,  # namespaces are cluster-scoped, and Leases live in every namespace
        standalone=True,
        liveness_endpoint=liveness,
        memo=kopf.Memo(config=config),
    )
    return 0
