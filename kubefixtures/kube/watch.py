"""Watching a namespace: one thread per kind lists its objects, then watches from that
list's resourceVersion, and hands every change to a shared ``WatchedObjects``, whose
condition variable wakes whoever waits on it. What the objects mean is not decided here
(kubefixtures.readiness judges them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from kubefixtures.kube.client import Cluster, Resource, WatchStream
from kubefixtures.kube.errors import Forbidden, Unauthorized

__all__ = ["WatchedObjects", "Watcher"]

JSON = dict[str, Any]
_WATCH_CHUNK_SECONDS = 60  # re-open long watches now and then; the server may drop them
_RETRY_PAUSE = 0.2


class WatchedObjects:
    """What the watches have seen so far, shared between the watch threads and the waiter."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.objects: dict[tuple[str, str], JSON] = {}  # (kind, name) -> latest object
        self.errors: list[str] = []

    def replace(self, resource: Resource, items: Iterable[JSON]) -> None:
        kind = resource.kind
        with self.changed:
            for key in [key for key in self.objects if key[0] == kind]:
                del self.objects[key]
            for item in items:
                # Items of a list response carry no kind or apiVersion; the rules need them.
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", kind)
                self.objects[(kind, item["metadata"]["name"])] = item
            self.changed.notify_all()

    def update(self, resource: Resource, event_type: str, item: JSON) -> None:
        kind = resource.kind
        with self.changed:
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", kind)
            key = (kind, item["metadata"]["name"])
            if event_type == "DELETED":
                self.objects.pop(key, None)
            else:
                self.objects[key] = item
            self.changed.notify_all()

    def of_kind(self, kind: str) -> list[JSON]:
        return [item for key, item in self.objects.items() if key[0] == kind]


class Watcher(threading.Thread):
    """List, then watch, one kind in the namespace until told to stop."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        resource: Resource,
        state: WatchedObjects,
        deadline: float,
    ) -> None:
        super().__init__(name=f"kubefixtures-watch-{resource.plural}", daemon=True)
        self._cluster = cluster
        self._namespace = namespace
        self._resource = resource
        self._state = state
        self._deadline = deadline
        self._stopping = threading.Event()
        self._stream: WatchStream | None = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._stream is not None:
                self._stream.close()

    def run(self) -> None:
        version: str | None = None
        while not self._stopping.is_set() and time.monotonic() < self._deadline:
            try:
                if version is None:
                    listing = self._cluster.list_objects(self._resource, self._namespace)
                    self._state.replace(self._resource, listing.get("items") or [])
                    version = str(listing["metadata"]["resourceVersion"])
                remaining = int(self._deadline - time.monotonic()) + 1
                stream = self._cluster.watch(
                    self._resource,
                    self._namespace,
                    version,
                    max(1, min(remaining, _WATCH_CHUNK_SECONDS)),
                )
                with self._lock:
                    self._stream = stream
                if self._stopping.is_set():
                    stream.close()
                for event in stream:
                    item = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        version = None  # typically 410 Gone: list again, after a breath
                        self._stopping.wait(_RETRY_PAUSE)
                        break
                    version = item.get("metadata", {}).get("resourceVersion", version)
                    if event.get("type") != "BOOKMARK":
                        self._state.update(self._resource, str(event.get("type")), item)
            except Exception as error:  # a dying watch thread would hide what it saw
                if self._stopping.is_set():
                    return
                if isinstance(error, Unauthorized | Forbidden):
                    with self._state.changed:
                        self._state.errors.append(f"watching {self._resource.plural}: {error}")
                        self._state.changed.notify_all()
                    return
                version = None
                self._stopping.wait(_RETRY_PAUSE)
            finally:
                with self._lock:
                    opened, self._stream = self._stream, None
                if opened is not None:
                    opened.close()  # also when the loop left it early (an ERROR event)
