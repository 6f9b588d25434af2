"""What a Pod's status says, in words: the one describer of why a pod is not ready, used
by readiness reports (kubefixtures.readiness), by the port forwarder when no pod behind a
Service is ready, and by the failing-test report. Pure functions over the Pod's JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["container_statuses", "describe_container", "describe_pod"]

Object = Mapping[str, Any]
_MESSAGE_LIMIT = 120  # a kubelet message can be a whole stack of lines; one line says enough


def container_statuses(pod: Object) -> Iterable[Mapping[str, Any]]:
    """The statuses of its init containers, then of its containers."""
    status = pod.get("status") or {}
    yield from status.get("initContainerStatuses") or []
    yield from status.get("containerStatuses") or []


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 1] + "…"


def describe_container(container: Mapping[str, Any]) -> str | None:
    """Why one container is not ready, on one line (None when it is ready)."""
    name = container.get("name", "?")
    state = container.get("state") or {}
    if "waiting" in state:
        waiting = state["waiting"] or {}
        text = f"container {name} waiting: {waiting.get('reason', 'unknown reason')}"
        if waiting.get("message"):
            text += f" ({_first_line(str(waiting['message']))})"
    elif "terminated" in state:
        terminated = state["terminated"] or {}
        text = (
            f"container {name} terminated: {terminated.get('reason', '?')} "
            f"(exit code {terminated.get('exitCode', '?')})"
        )
    elif not container.get("ready"):
        text = f"container {name} running but not ready"
    else:
        return None
    restarts = int(container.get("restartCount") or 0)
    if restarts:
        last = (container.get("lastState") or {}).get("terminated") or {}
        text += f", {restarts} restarts"
        if last:
            text += f" (last exit code {last.get('exitCode', '?')} {last.get('reason', '')})"
    return text.strip()


def describe_pod(pod: Object) -> str:
    """One line: phase, scheduling problem, and per container why it is not ready."""
    status = pod.get("status") or {}
    parts = [str(status.get("phase") or "Pending")]
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            why = condition.get("message") or condition.get("reason") or "?"
            parts.append(f"unschedulable: {why}")
    if status.get("reason"):
        parts.append(f"{status['reason']}: {status.get('message', '')}".strip(": "))
    parts.extend(
        text for text in map(describe_container, container_statuses(pod)) if text is not None
    )
    return "; ".join(parts)
