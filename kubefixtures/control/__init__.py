"""Acting on a running environment from a test: ``env.logs()``, ``env.exec()``,
``env.restart()``, ``env.scale()``, ``env.apply()``, ... and their async twins on
``env.aio``. See docs/control.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubefixtures.control._aio import AsyncControls
from kubefixtures.control._core import ExecError, applied_objects
from kubefixtures.control._sync import Controls
from kubefixtures.control._targets import Target, parse_target

if TYPE_CHECKING:
    from kubefixtures.kube._exec import ExecResult

__all__ = [
    "AsyncControls",
    "Controls",
    "ExecError",
    "ExecResult",
    "Target",
    "applied_objects",
    "parse_target",
]


def __getattr__(name: str) -> Any:
    # The kube package loads only when a control is used, not with every Environment.
    if name == "ExecResult":
        from kubefixtures.kube._exec import ExecResult

        return ExecResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
