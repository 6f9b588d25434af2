"""``env.aio``: the controls as coroutines, for pytest-asyncio and anyio suites.

They share the synchronous core: each call runs it in a worker thread
(``asyncio.to_thread``), so nothing blocks the event loop, and sync and async calls see
the same warm exec connection, forwards and applied objects. A cancelled call stops
waiting at once; the action it started (a restart, say) still runs to its end.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kubefixtures.control._sync import DEFAULT_TIMEOUT, EXEC_TIMEOUT, caller_directory

if TYPE_CHECKING:
    from kubefixtures.control._core import ControlCore
    from kubefixtures.details import ObjectRef, ServiceDetails
    from kubefixtures.kube._exec import ExecResult

__all__ = ["AsyncControls"]

T = TypeVar("T")


class AsyncControls:
    """The async twins of ``Environment``'s controls; see there for each one."""

    def __init__(self, core: ControlCore) -> None:
        self._core = core

    async def _run(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        core = self._core

        def call() -> T:
            with core.masked():
                return method(*args, **kwargs)

        return await asyncio.to_thread(functools.partial(call))

    async def logs(
        self,
        target: str,
        *,
        container: str | None = None,
        previous: bool = False,
        tail: int | None = None,
        since: float | timedelta | None = None,
    ) -> str:
        return await self._run(
            self._core.logs, target, container=container, previous=previous, tail=tail, since=since
        )

    async def exec(
        self,
        target: str,
        argv: Sequence[str],
        *,
        container: str | None = None,
        stdin: bytes | str | None = None,
        timeout: float = EXEC_TIMEOUT,
        check: bool = False,
    ) -> ExecResult:
        return await self._run(
            self._core.exec,
            target,
            argv,
            container=container,
            stdin=stdin,
            timeout=timeout,
            check=check,
        )

    async def restart(self, target: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        await self._run(self._core.restart, target, timeout)

    async def delete_pod(self, target: str) -> str:
        return await self._run(self._core.delete_pod, target)

    async def scale(self, target: str, replicas: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        await self._run(self._core.scale, target, replicas, timeout)

    async def patch(self, target: str, patch: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
        return await self._run(self._core.patch, target, patch)

    async def apply(
        self,
        source: str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        values: Mapping[str, Any] | None = None,
        *,
        wait: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[ObjectRef]:
        base = caller_directory(1)
        return await self._run(
            self._core.apply, source, values, wait=wait, timeout=timeout, base=base
        )

    async def wait_ready(
        self, targets: str | Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        await self._run(self._core.wait_ready, targets, timeout)

    async def events(
        self, since: float | timedelta | datetime | None = None
    ) -> list[dict[str, Any]]:
        return await self._run(self._core.events, since)

    async def get(self, kind: str, name: str) -> dict[str, Any]:
        return await self._run(self._core.get, kind, name)

    async def forward(
        self, target: str, port: int | str, timeout: float = DEFAULT_TIMEOUT
    ) -> ServiceDetails:
        return await self._run(self._core.forward, target, port, timeout)

    async def copy_to(
        self,
        target: str,
        local_path: str | Path,
        remote_path: str,
        *,
        container: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        await self._run(
            self._core.copy_to,
            target,
            local_path,
            remote_path,
            container=container,
            timeout=timeout,
        )

    async def copy_from(
        self,
        target: str,
        remote_path: str,
        local_path: str | Path,
        *,
        container: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        await self._run(
            self._core.copy_from,
            target,
            remote_path,
            local_path,
            container=container,
            timeout=timeout,
        )
