"""Acting on a running environment from a test: ``env.logs()``, ``env.exec()``,
``env.restart()``, ``env.scale()``, ``env.apply()``, ... and their async twins on
``env.aio``. See docs/control.md."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kubefixtures.control._sync import Controls

if TYPE_CHECKING:
    from kubefixtures.control._aio import AsyncControls
    from kubefixtures.control._core import ExecError, applied_objects
    from kubefixtures.control._targets import Target, parse_target
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


# Every Environment is a Controls; the rest (the kube package, the core with its tar
# handling) loads only when a control is used: a claimed spare is handed to its test sooner.
_LAZY = {
    "AsyncControls": "kubefixtures.control._aio",
    "ExecError": "kubefixtures.control._core",
    "applied_objects": "kubefixtures.control._core",
    "Target": "kubefixtures.control._targets",
    "parse_target": "kubefixtures.control._targets",
    "ExecResult": "kubefixtures.kube._exec",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
