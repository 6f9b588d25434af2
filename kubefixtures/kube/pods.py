"""What a Pod's status and a namespace's events say, in words: the one describer of pods
and the one formatter of events, used by readiness errors (kubefixtures.readiness), by the
port forwarder when no pod behind a Service is ready, by the failing-test report and by
the diagnostics bundle (kubefixtures.reporting). Pure functions over the objects' JSON.

- ``describe_pod``: one line, why a pod is not ready (errors and summaries).
- ``describe_pod_lines``: the same words at length, one line per container plus the pod's
  own events (the bundle's describe.txt).
- ``event_line``: one event on one line; with ``context`` its time and the object it is
  about (where the events of many objects are listed together), without them under an
  object already named.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = [
    "container_state",
    "container_statuses",
    "describe_conditions",
    "describe_container",
    "describe_events",
    "describe_pod",
    "describe_pod_lines",
    "event_line",
    "event_time",
    "oldest_first",
]

Object = Mapping[str, Any]
_MESSAGE_LIMIT = 120  # a kubelet message can be a whole stack of lines; one line says enough
_Event = TypeVar("_Event", bound=Mapping[str, Any])
_POD_EVENTS = 10  # events shown under a pod at length


def container_statuses(pod: Object) -> Iterable[Mapping[str, Any]]:
    """The statuses of its init containers, then of its containers."""
    status = pod.get("status") or {}
    yield from status.get("initContainerStatuses") or []
    yield from status.get("containerStatuses") or []


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 1] + "…"


def container_state(state: Mapping[str, Any], *, times: bool = False) -> str:
    """A container's ``state`` (or ``lastState``) in words: ``waiting: Reason (message)``,
    ``terminated: Reason (exit code N)``, ``running``; with ``times`` since or at when."""
    for phase, found in state.items():
        detail = found or {}
        if phase == "waiting":
            text = f"waiting: {detail.get('reason', 'unknown reason')}"
            if detail.get("message"):
                text += f" ({_first_line(str(detail['message']))})"
            return text
        if phase == "terminated":
            text = (
                f"terminated: {detail.get('reason', '?')} (exit code {detail.get('exitCode', '?')})"
            )
            return text + (f" at {detail.get('finishedAt', '?')}" if times else "")
        if phase == "running":
            return "running" + (f" since {detail.get('startedAt', '?')}" if times else "")
    return "unknown"


def _restarts(container: Mapping[str, Any]) -> str:
    """``, N restarts (last exit code N Reason)``, or nothing when it never restarted."""
    restarts = int(container.get("restartCount") or 0)
    if not restarts:
        return ""
    text = f", {restarts} restart{'s' if restarts != 1 else ''}"
    last = (container.get("lastState") or {}).get("terminated") or {}
    if last:
        text += f" (last exit code {last.get('exitCode', '?')} {last.get('reason', '')}".rstrip()
        text += ")"
    return text


def describe_container(container: Mapping[str, Any]) -> str | None:
    """Why one container is not ready, on one line (None when it is ready)."""
    name = container.get("name", "?")
    state = container.get("state") or {}
    if "waiting" in state or "terminated" in state:
        text = f"container {name} {container_state(state)}"
    elif not container.get("ready"):
        text = f"container {name} running but not ready"
    else:
        return None
    return text + _restarts(container)


def describe_conditions(status: Mapping[str, Any]) -> str:
    """An object's status conditions as ``Type=Status (Reason), ...``."""
    parts = []
    for condition in status.get("conditions") or []:
        reason = f" ({condition['reason']})" if condition.get("reason") else ""
        parts.append(f"{condition.get('type')}={condition.get('status')}{reason}")
    return ", ".join(parts) or "none"


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


def describe_pod_lines(pod: Object, events: Sequence[Object] = ()) -> list[str]:
    """The pod at length: a headline (phase, node, IP, and the one-line why when it is not
    running well), its conditions, a line per container, then its last events."""
    metadata, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    lines = [
        f"Pod {metadata['name']}: phase {status.get('phase', '?')}, node "
        f"{spec.get('nodeName', '-')}, IP {status.get('podIP', '-')}",
        f"  conditions: {describe_conditions(status)}",
    ]
    images = {c["name"]: c.get("image", "?") for c in spec.get("containers") or []}
    images.update({c["name"]: c.get("image", "?") for c in spec.get("initContainers") or []})
    init = {str(c.get("name")) for c in status.get("initContainerStatuses") or []}
    for container in container_statuses(pod):
        name = container.get("name")
        kind = "init container" if name in init else "container"
        restarts = int(container.get("restartCount") or 0)
        lines.append(
            f"  {kind} {name} ({images.get(name, container.get('image', '?'))}): "
            f"{'ready' if container.get('ready') else 'not ready'}, "
            f"{container_state(container.get('state') or {}, times=True)}, "
            f"{restarts} restart{'s' if restarts != 1 else ''}"
        )
        last = container.get("lastState") or {}
        if last:
            lines.append(f"    last state: {container_state(last, times=True)}")
    mine = [
        event
        for event in events
        if (event.get("involvedObject") or {}).get("name") == metadata["name"]
        and (event.get("involvedObject") or {}).get("kind") == "Pod"
    ]
    if mine:
        lines.append("  events:")
        lines += [f"    {event_line(event)}" for event in oldest_first(mine)[-_POD_EVENTS:]]
    return lines


def event_time(event: Object) -> str:
    """When the event last happened (RFC 3339; the newest field the event has)."""
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def oldest_first(events: Iterable[_Event]) -> list[_Event]:
    return sorted(events, key=event_time)


def event_line(event: Object, *, context: bool = True) -> str:
    """``Type Reason (xN): message`` with its whitespace collapsed; with ``context``,
    preceded by its time and the object it is about (``kind/name``)."""
    count = event.get("count") or (event.get("series") or {}).get("count")
    repeated = f" (x{count})" if count and int(count) > 1 else ""
    message = " ".join(str(event.get("message") or "").split())
    text = f"{event.get('type') or 'Normal'} {event.get('reason') or '?'}{repeated}: {message}"
    if not context:
        return text
    involved = event.get("involvedObject") or {}
    what = f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"
    return f"{event_time(event)}  {what}  {text}"


def describe_events(events: Iterable[Object], limit: int = 3) -> list[str]:
    """The last ``limit`` events, oldest first, one line each, without context (they are
    shown under the object they are about)."""
    return [event_line(event, context=False) for event in oldest_first(events)[-limit:]]
