"""kubefixtures: real services on Kubernetes for your pytest suite.

The pydantic models and the ``Environment`` class are imported on first access (PEP 562),
so that the plugin, which pytest loads for every run, does not pay for pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubefixtures.errors import (
    ApplyError,
    ClusterError,
    ControlError,
    KubefixturesError,
    NotReadyError,
    RenderError,
    SettingsError,
)
from kubefixtures.factories import environment

if TYPE_CHECKING:
    from kubefixtures.control import ExecError, ExecResult
    from kubefixtures.details import Environment, EnvironmentDetails, ServiceDetails

__version__ = "0.1.0"

__all__ = [
    "ApplyError",
    "ClusterError",
    "ControlError",
    "Environment",
    "EnvironmentDetails",
    "ExecError",
    "ExecResult",
    "KubefixturesError",
    "NotReadyError",
    "RenderError",
    "ServiceDetails",
    "SettingsError",
    "environment",
]

_LAZY = {"Environment", "EnvironmentDetails", "ServiceDetails"}
_LAZY_CONTROL = {"ExecError", "ExecResult"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from kubefixtures import details  # the point of this function

        return getattr(details, name)
    if name in _LAZY_CONTROL:
        from kubefixtures import control

        return getattr(control, name)
    raise AttributeError(f"module 'kubefixtures' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
