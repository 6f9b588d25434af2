"""The operator's settings: from ``kubefixtures operator`` options or, under
``kopf run -m kubefixtures.operator``, from environment variables (the Helm chart sets both)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from kubefixtures.errors import KubefixturesError
from kubefixtures.leases.policy import DEFAULT_GRACE_SECONDS
from kubefixtures.limits import MAX_SECONDS, parse_seconds

__all__ = [
    "COMPONENT",
    "GRACE_VARIABLE",
    "SELECTOR_VARIABLE",
    "OperatorConfig",
    "OperatorConfigError",
    "parse_grace",
]

COMPONENT = "kubefixtures-operator"  # the Events' source, and the operator's name in logs
GRACE_VARIABLE = "KUBEFIXTURES_OPERATOR_GRACE"
SELECTOR_VARIABLE = "KUBEFIXTURES_OPERATOR_SELECTOR"


class OperatorConfigError(KubefixturesError):
    """An operator setting has a value the operator cannot use."""


class OperatorConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    grace_seconds: float = Field(default=DEFAULT_GRACE_SECONDS, ge=0, le=MAX_SECONDS)
    # A label selector that narrows what is watched (and so reaped), added to the managed
    # label: one operator per team or CI runner, or a test that must leave others alone.
    selector: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if environ is None else environ
        raw = env.get(GRACE_VARIABLE, "").strip()
        grace = DEFAULT_GRACE_SECONDS
        if raw:
            grace = parse_grace(raw, GRACE_VARIABLE)
        return cls(
            grace_seconds=grace,
            selector=env.get(SELECTOR_VARIABLE, "").strip() or None,
        )


def parse_grace(text: str, where: str) -> float:
    """Seconds (``30``, ``2.5``) as a float; OperatorConfigError naming ``where`` otherwise."""
    try:
        return parse_seconds(text, zero_allowed=True)
    except ValueError as error:
        raise OperatorConfigError(f"{where}: {error}") from None
