"""The operator's settings: from ``kubefixtures operator`` options or, under
``kopf run -m kubefixtures.operator``, from environment variables (the Helm chart sets both)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from kubefixtures.errors import KubefixturesError
from kubefixtures.leases.policy import DEFAULT_GRACE_SECONDS
from kubefixtures.limits import MAX_POOL_NAMESPACES, MAX_SECONDS, parse_count, parse_seconds

__all__ = [
    "COMPONENT",
    "GRACE_VARIABLE",
    "POOL_MAX_NAMESPACES_VARIABLE",
    "POOL_NAMESPACE_VARIABLE",
    "SELECTOR_VARIABLE",
    "OperatorConfig",
    "OperatorConfigError",
    "parse_grace",
    "parse_pool_cap",
]

COMPONENT = "kubefixtures-operator"  # the Events' source, and the operator's name in logs
GRACE_VARIABLE = "KUBEFIXTURES_OPERATOR_GRACE"
SELECTOR_VARIABLE = "KUBEFIXTURES_OPERATOR_SELECTOR"
# Operator-maintained pools (kubefixtures.operator.pools): where their Pool objects live
# (default: the operator's own namespace, POD_NAMESPACE in its pod), and the most namespaces
# their copies may hold at once, all pools together (0: no pools are kept).
POOL_NAMESPACE_VARIABLE = "KUBEFIXTURES_OPERATOR_POOL_NAMESPACE"
POOL_MAX_NAMESPACES_VARIABLE = "KUBEFIXTURES_OPERATOR_POOL_MAX_NAMESPACES"
DEFAULT_POOL_MAX_NAMESPACES = 0  # pools are kept only where asked for (and granted)


class OperatorConfigError(KubefixturesError):
    """An operator setting has a value the operator cannot use."""


class OperatorConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    grace_seconds: float = Field(default=DEFAULT_GRACE_SECONDS, ge=0, le=MAX_SECONDS)
    # A label selector that narrows what is watched (and so reaped), added to the managed
    # label: one operator per team or CI runner, or a test that must leave others alone.
    selector: str | None = None
    pool_namespace: str | None = None
    pool_max_namespaces: int = Field(
        default=DEFAULT_POOL_MAX_NAMESPACES, ge=0, le=MAX_POOL_NAMESPACES
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if environ is None else environ
        raw = env.get(GRACE_VARIABLE, "").strip()
        grace = DEFAULT_GRACE_SECONDS
        if raw:
            grace = parse_grace(raw, GRACE_VARIABLE)
        cap = DEFAULT_POOL_MAX_NAMESPACES
        raw_cap = env.get(POOL_MAX_NAMESPACES_VARIABLE, "").strip()
        if raw_cap:
            cap = parse_pool_cap(raw_cap, POOL_MAX_NAMESPACES_VARIABLE)
        return cls(
            grace_seconds=grace,
            selector=env.get(SELECTOR_VARIABLE, "").strip() or None,
            pool_namespace=(
                env.get(POOL_NAMESPACE_VARIABLE, "").strip()
                or env.get("POD_NAMESPACE", "").strip()
                or None
            ),
            pool_max_namespaces=cap,
        )


def parse_grace(text: str, where: str) -> float:
    """Seconds (``30``, ``2.5``) as a float; OperatorConfigError naming ``where`` otherwise."""
    try:
        return parse_seconds(text, zero_allowed=True)
    except ValueError as error:
        raise OperatorConfigError(f"{where}: {error}") from None


def parse_pool_cap(text: str, where: str) -> int:
    """The pools' namespace cap: a whole number, 0 to MAX_POOL_NAMESPACES; else
    OperatorConfigError naming ``where``."""
    try:
        return parse_count(text.strip(), maximum=MAX_POOL_NAMESPACES)
    except ValueError as error:
        raise OperatorConfigError(f"{where}: {error}") from None
