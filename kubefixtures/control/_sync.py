"""The controls every ``Environment`` has (mixed into it): thin calls into one ControlCore."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubefixtures.control._aio import AsyncControls
    from kubefixtures.control._core import ControlCore
    from kubefixtures.details import Environment, ObjectRef, ServiceDetails
    from kubefixtures.kube import Cluster
    from kubefixtures.kube._exec import ExecResult

__all__ = ["Controls", "caller_directory"]

_CREATING = threading.Lock()
DEFAULT_TIMEOUT = 120.0
EXEC_TIMEOUT = 60.0


def caller_directory(depth: int) -> Path:
    """The directory of the file ``depth`` frames up: relative paths given to ``apply``
    are relative to the test file, as ``environment()``'s are to the conftest."""
    return Path(sys._getframe(depth + 1).f_code.co_filename).resolve().parent


class Controls:
    """Acting on a running environment from a test: logs, exec, restart, scale, apply,
    wait, events, forwards, files. Targets are ``"deployment/web"``, ``"pod/web-abc"``,
    ``"statefulset/db"``, ``"daemonset/x"``, ``"job/migrate"`` or a Service's name (its
    pods). Errors are one-line ``KubefixturesError``s (``ControlError`` for a bad target or
    an RBAC denial) naming the verb and the target, with the environment's secrets masked.
    ``aio`` has the same methods as coroutines."""

    def _bind_controls(
        self, connect: Callable[[], Cluster], image_overrides: Mapping[str, str]
    ) -> None:
        """How the controls reach the cluster (the session's connection) and which image
        overrides ``apply`` uses; without it they connect with the default kubeconfig."""
        self.__dict__["_control_binding"] = (connect, dict(image_overrides))

    def _control_core(self) -> ControlCore:
        core: ControlCore | None = self.__dict__.get("_control_core_instance")
        if core is not None:
            return core
        with _CREATING:
            core = self.__dict__.get("_control_core_instance")
            if core is None:
                from kubefixtures.control._core import ControlCore

                connect, images = self.__dict__.get("_control_binding", (None, {}))
                environment: Environment = self  # type: ignore[assignment]
                core = ControlCore(environment, connect, images)
                self.__dict__["_control_core_instance"] = core
            return core

    def _close_controls(self, keep: bool = False) -> list[str]:
        """Stop ad-hoc forwards and, unless ``keep``, delete what tests applied."""
        core: ControlCore | None = self.__dict__.pop("_control_core_instance", None)
        return core.close(keep=keep) if core is not None else []

    @property
    def aio(self) -> AsyncControls:
        """The same controls as coroutines (``await env.aio.exec(...)``), for asyncio suites."""
        from kubefixtures.control._aio import AsyncControls

        return AsyncControls(self._control_core())

    def logs(
        self,
        target: str,
        *,
        container: str | None = None,
        previous: bool = False,
        tail: int | None = None,
        since: float | timedelta | None = None,
    ) -> str:
        """The log of the target's pod (several pods: each under a ``==> pod/NAME <==``
        line). ``previous``: the container's previous instance; ``tail``: the last lines
        only; ``since``: seconds (or a timedelta) back from now."""
        core = self._control_core()
        with core.masked():
            return core.logs(target, container=container, previous=previous, tail=tail, since=since)

    def exec(
        self,
        target: str,
        argv: Sequence[str],
        *,
        container: str | None = None,
        stdin: bytes | str | None = None,
        timeout: float = EXEC_TIMEOUT,
        check: bool = False,
    ) -> ExecResult:
        """Run ``argv`` (no shell: ``["sh", "-c", "..."]`` for one) in a running pod of
        the target; return ``ExecResult(exit_code, stdout, stderr)``. ``stdin`` is sent and
        then closed. ``check=True`` raises ``ExecError`` (the command, its exit code and
        the last stderr lines) when it exits non-zero."""
        core = self._control_core()
        with core.masked():
            return core.exec(
                target, argv, container=container, stdin=stdin, timeout=timeout, check=check
            )

    def restart(self, target: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """A rollout restart of the target's Deployment, StatefulSet or DaemonSet (a
        Service: of those running its pods); returns when the new pods are available and
        the old ones gone."""
        core = self._control_core()
        with core.masked():
            core.restart(target, timeout)

    def delete_pod(self, target: str) -> str:
        """Delete the target's pod (the first ready one of a workload); returns its name.
        Does not wait: its controller, if any, replaces it."""
        core = self._control_core()
        with core.masked():
            return core.delete_pod(target)

    def scale(self, target: str, replicas: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Scale a Deployment, StatefulSet or ReplicaSet; returns once that many replicas
        are ready and the surplus pods are gone."""
        core = self._control_core()
        with core.masked():
            core.scale(target, replicas, timeout)

    def patch(self, target: str, patch: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
        """Patch an object (``"configmap/settings"``, ``"deployment/web"``, any kind): a
        dict is a strategic merge patch (a merge patch for custom resources), a list a JSON
        patch. Returns the patched object."""
        core = self._control_core()
        with core.masked():
            return core.patch(target, patch)

    def apply(
        self,
        source: str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        values: Mapping[str, Any] | None = None,
        *,
        wait: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[ObjectRef]:
        """Apply more objects to the environment: a YAML file, a directory, a Helm chart,
        an object (dict) or a list of them, rendered like the environment's sources
        (``${namespace}``, ``${secret:NAME}`` with its values, ``values``). Waits until
        they are ready unless ``wait=False``. They are deleted at teardown (with the
        namespace) and listed in a failing test's report."""
        core = self._control_core()
        with core.masked():
            return core.apply(source, values, wait=wait, timeout=timeout, base=caller_directory(1))

    def wait_ready(
        self, targets: str | Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """Wait until the targets (default: every object of the environment and every
        applied one) are ready, by the rules and with the messages of set-up."""
        core = self._control_core()
        with core.masked():
            core.wait_ready(targets, timeout)

    def events(self, since: float | timedelta | datetime | None = None) -> list[dict[str, Any]]:
        """The namespace's events, oldest first; ``since``: seconds or a timedelta back from
        now, or a datetime."""
        core = self._control_core()
        with core.masked():
            return core.events(since)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """One object of the namespace: ``get("configmap", "settings")``; kinds by kind,
        plural, short name or ``plural.group``."""
        core = self._control_core()
        with core.masked():
            return core.get(kind, name)

    def forward(
        self, target: str, port: int | str, timeout: float = DEFAULT_TIMEOUT
    ) -> ServiceDetails:
        """Forward a port of the target to 127.0.0.1 (a Service's port, or a pod port no
        Service exposes); returns its address (``host``, ``port``). It heals across
        restarts like the environment's own forwards and stops with the environment."""
        core = self._control_core()
        with core.masked():
            return core.forward(target, port, timeout)

    def copy_to(
        self,
        target: str,
        local_path: str | Path,
        remote_path: str,
        *,
        container: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Copy a local file or directory to ``remote_path`` in the target's pod (tar over
        exec: the container needs ``tar``; the remote parent directory must exist)."""
        core = self._control_core()
        with core.masked():
            core.copy_to(target, local_path, remote_path, container=container, timeout=timeout)

    def copy_from(
        self,
        target: str,
        remote_path: str,
        local_path: str | Path,
        *,
        container: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Copy a file or directory of the target's pod to ``local_path``."""
        core = self._control_core()
        with core.masked():
            core.copy_from(target, remote_path, local_path, container=container, timeout=timeout)
