"""Waiting for an environment to become ready by watching, with one overall deadline.

One watcher per watched kind (kubefixtures.kube.watch) keeps what the API server reports in
a shared ``WatchedObjects``; this thread sleeps on its condition variable and re-judges the
objects (kubefixtures.readiness.rules) whenever something changed. So readiness is noticed
as soon as the API server reports it, with no polling interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from kubefixtures.errors import ClusterError, NotReadyError
from kubefixtures.kube.client import ENDPOINT_SLICE, EVENT, POD, Cluster, Resource
from kubefixtures.kube.watch import WatchedObjects, Watcher
from kubefixtures.readiness.rules import (
    WATCHED_KINDS,
    Readiness,
    State,
    assess,
    describe_events,
    describe_pod,
    pod_is_hopeless,
)

__all__ = ["Listed", "Tracked", "ready_now", "wait_ready"]

JSON = dict[str, Any]
_MAX_DETAIL_PODS = 5
_CANCEL_CHECK_SECONDS = 0.25


@dataclass(frozen=True)
class Tracked:
    """An applied object to wait for."""

    resource: Resource
    name: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.resource.kind, self.name)

    def __str__(self) -> str:
        return f"{self.resource.kind.lower()}/{self.name}"


def _matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy a selector's matchLabels (or a Service's plain selector)."""
    if not selector:
        return False
    wanted = selector.get("matchLabels", selector) if "matchLabels" in selector else selector
    return all(labels.get(key) == value for key, value in dict(wanted).items())


def _selector_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    return selector if isinstance(selector, Mapping) else None


class _Judge:
    """Judges every tracked object against what the watches have seen."""

    def __init__(self, tracked: Sequence[Tracked], state: WatchedObjects) -> None:
        self._tracked = tracked
        self._state = state

    def verdicts(self) -> list[tuple[Tracked, Readiness]]:
        slices = self._state.of_kind("EndpointSlice")
        out = []
        for item in self._tracked:
            obj = self._state.objects.get(item.key)
            if obj is None:
                out.append((item, Readiness(State.PENDING, "not seen yet")))
                continue
            service_slices = [
                endpoint_slice
                for endpoint_slice in slices
                if (endpoint_slice.get("metadata", {}).get("labels") or {}).get(
                    "kubernetes.io/service-name"
                )
                == item.name
            ]
            out.append((item, assess(obj, service_slices)))
        return out

    def hopeless_pods(self) -> list[JSON]:
        return [pod for pod in self._state.of_kind("Pod") if pod_is_hopeless(pod)]

    def problem(
        self,
        verdicts: Sequence[tuple[Tracked, Readiness]],
        remaining: float,
        cancelled: threading.Event | None,
    ) -> str:
        """Why waiting must stop now ("" when it may go on)."""
        if cancelled is not None and cancelled.is_set():
            return "was cancelled"
        failed = any(verdict.state is State.FAILED for _, verdict in verdicts)
        if failed or self.hopeless_pods():
            return "failed"
        if self._state.errors:
            return "could not be watched"
        if remaining <= 0:
            return "timed out"
        return ""


def _kinds_to_watch(watched: Sequence[Tracked]) -> set[Resource]:
    kinds = {item.resource for item in watched}
    if any(item.resource.kind != "PersistentVolumeClaim" for item in watched):
        kinds.add(POD)  # pods explain why workloads are not ready, and can fail fast
    if any(item.resource.kind == "Service" for item in watched):
        kinds.add(ENDPOINT_SLICE)
    return kinds


@dataclass(frozen=True)
class Listed:
    """What one list per kind showed: the objects of each kind, and each list's
    resourceVersion (to watch from)."""

    items: Mapping[str, list[JSON]]
    versions: Mapping[str, str]


def ready_now(cluster: Cluster, namespace: str, tracked: Sequence[Tracked]) -> Listed | None:
    """The lists, if every tracked object is ready right now, judged from one list per kind
    (made side by side): the cheap check of objects that were ready before they were asked
    for (a pool's spare). None when one is not, or a list failed: ``wait_ready`` watches."""
    from kubefixtures.kube.client import run_concurrently

    watched = [
        item for item in tracked if (item.resource.group, item.resource.kind) in WATCHED_KINDS
    ]
    # Pods only explain a wait; the verdicts need the objects, and a Service its slices.
    kinds = sorted({item.resource for item in watched}, key=lambda resource: resource.plural)
    if any(item.resource.kind == "Service" for item in watched):
        kinds.append(ENDPOINT_SLICE)
    try:
        listings = run_concurrently(
            [partial(cluster.list_objects, resource, namespace) for resource in kinds]
        )
    except ClusterError:
        return None
    state = WatchedObjects()
    for resource, listing in zip(kinds, listings, strict=True):
        state.replace(resource, listing.get("items") or [])
    if not all(verdict.ready for _, verdict in _Judge(watched, state).verdicts()):
        return None
    return Listed(
        items={resource.kind: state.of_kind(resource.kind) for resource in kinds},
        versions={
            resource.kind: str((listing.get("metadata") or {}).get("resourceVersion") or "")
            for resource, listing in zip(kinds, listings, strict=True)
        },
    )


def wait_ready(
    cluster: Cluster,
    namespace: str,
    tracked: Sequence[Tracked],
    *,
    deadline: float,
    environment: str,
    started: float,
    on_ready: Callable[[Tracked], None] | None = None,
    cancelled: threading.Event | None = None,
) -> None:
    """Return when every tracked object is ready; raise NotReadyError at the deadline or as
    soon as something fails for good. The message says which objects and why.

    ``on_ready(item)`` is called once per object as soon as it is ready (from this thread,
    with the watch state locked: it should only hand work to another thread), so that the
    caller can start using a part of the environment while the rest comes up.
    ``cancelled``, once set, ends the wait within a quarter of a second (NotReadyError).
    """
    announced: set[tuple[str, str]] = set()

    def announce(item: Tracked) -> None:
        if on_ready is not None and item.key not in announced:
            announced.add(item.key)
            on_ready(item)

    watched = []
    for item in tracked:
        if (item.resource.group, item.resource.kind) in WATCHED_KINDS:
            watched.append(item)
        else:
            announce(item)
    if not watched:
        return
    state = WatchedObjects()
    watchers = [
        Watcher(cluster, namespace, kind, state, deadline) for kind in _kinds_to_watch(watched)
    ]
    for watcher in watchers:
        watcher.start()
    judge = _Judge(watched, state)

    def failure(summary: str, verdicts: Sequence[tuple[Tracked, Readiness]]) -> NotReadyError:
        elapsed = time.monotonic() - started
        headline = f"environment {environment!r} {summary} after {elapsed:.1f} s"
        return NotReadyError(_report(cluster, namespace, verdicts, state, headline=headline))

    try:
        with state.changed:
            while True:
                verdicts = judge.verdicts()
                for item, verdict in verdicts:
                    if verdict.ready:
                        announce(item)
                if all(verdict.ready for _, verdict in verdicts):
                    return
                remaining = deadline - time.monotonic()
                problem = judge.problem(verdicts, remaining, cancelled)
                if problem:
                    raise failure(problem, verdicts)
                # Bounded so that a cancellation (a local flag, not the API) is seen soon.
                state.changed.wait(min(remaining, _CANCEL_CHECK_SECONDS))
    finally:
        for watcher in watchers:
            watcher.stop()


def _report(
    cluster: Cluster,
    namespace: str,
    verdicts: Sequence[tuple[Tracked, Readiness]],
    state: WatchedObjects,
    *,
    headline: str,
) -> str:
    """The NotReadyError message: a summary line, then per object why, with pods and events."""
    not_ready = [(item, verdict) for item, verdict in verdicts if not verdict.ready]
    lines = [
        f"{headline} in namespace {namespace}: "
        + ", ".join(f"{item} ({verdict.reason})" for item, verdict in not_ready)
    ]
    lines.extend(state.errors)
    events = _events(cluster, namespace)
    pods = state.of_kind("Pod")
    shown: set[str] = set()
    for item, verdict in not_ready:
        lines.append(f"  {item}: {verdict.state.value}: {verdict.reason}")
        if item.resource.kind == "Pod":
            shown.add(item.name)  # its events are the object's events, shown just below
        for event in describe_events(_events_about(events, item.resource.kind, item.name)):
            lines.append(f"    event: {event}")
        obj = state.objects.get(item.key) or {}
        selector = _selector_of(obj)
        if item.resource.kind == "Pod":
            related = [pod for pod in pods if pod["metadata"]["name"] == item.name]
        else:
            related = [
                pod for pod in pods if _matches(selector, pod["metadata"].get("labels") or {})
            ]
        for pod in related[:_MAX_DETAIL_PODS]:
            name = pod["metadata"]["name"]
            if item.resource.kind != "Pod":
                lines.append(f"    pod/{name}: {describe_pod(pod)}")
            if name in shown:
                continue
            shown.add(name)
            for event in describe_events(_events_about(events, "Pod", name)):
                lines.append(f"      event: {event}")
    for pod in pods:
        name = pod["metadata"]["name"]
        if name not in shown and pod_is_hopeless(pod):
            lines.append(f"  pod/{name}: {describe_pod(pod)}")
    return "\n".join(lines)


def _events(cluster: Cluster, namespace: str) -> list[JSON]:
    try:
        return list(cluster.list_objects(EVENT, namespace).get("items") or [])
    except ClusterError:
        return []  # the report is still useful without events


def _events_about(events: Sequence[JSON], kind: str, name: str) -> list[JSON]:
    """Events of the object, and of the ReplicaSets a Deployment of that name owns."""
    out = []
    for event in events:
        involved = event.get("involvedObject") or {}
        about_it = involved.get("kind") == kind and involved.get("name") == name
        about_its_replica_set = (
            kind == "Deployment"
            and involved.get("kind") == "ReplicaSet"
            and str(involved.get("name", "")).startswith(f"{name}-")
        )
        if about_it or about_its_replica_set:
            out.append(event)
    return out
