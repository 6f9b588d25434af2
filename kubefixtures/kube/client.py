"""The synchronous side of the API: connecting, discovery, namespaces, server-side apply,
lists and watches. Objects travel as plain JSON dicts (no generated models): an environment
holds arbitrary kinds, and decoding into models would only cost time.

The official client provides what is hard to get right (kubeconfig parsing, exec/OIDC auth,
TLS files, token refresh); requests go through its ``ApiClient`` transport as raw HTTP.
``kubernetes`` is imported inside functions so that importing kubefixtures stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kubefixtures.errors import ApplyError, ClusterError

__all__ = ["ApiError", "Cluster", "Resource", "WatchStream"]

FIELD_MANAGER = "kubefixtures"
_CONNECT_TIMEOUT = 5.0
_REQUEST_TIMEOUT = 30.0
_POOL_SIZE = 32  # concurrent applies + one watch per watched kind + port-forward lookups
_APPLY_WORKERS = 8
# Admission errors a freshly created namespace may return for a moment: its `default`
# ServiceAccount is created asynchronously by the controller manager.
_TRANSIENT_APPLY_MARKERS = ("serviceaccount", "service account")

JSON = dict[str, Any]


class ApiError(ClusterError):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API: ``/apis/apps/v1`` + ``deployments``, namespaced or not."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def collection_path(self, namespace: str | None) -> str:
        prefix = f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"
        if self.namespaced and namespace:
            return f"{prefix}/namespaces/{quote(namespace)}/{self.plural}"
        return f"{prefix}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection_path(namespace)}/{quote(name)}"


POD = Resource("v1", "Pod", "pods", namespaced=True)
EVENT = Resource("v1", "Event", "events", namespaced=True)
ENDPOINT_SLICE = Resource("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", True)
NAMESPACE = Resource("v1", "Namespace", "namespaces", namespaced=False)


def _status_message(body: bytes) -> tuple[str, str]:
    """``(reason, message)`` of an error response: a Status object, or the start of the body."""
    text = body[:300].decode("utf-8", "replace").strip()
    try:
        status = json.loads(body)
        return str(status.get("reason") or ""), str(status.get("message") or text)
    except (ValueError, AttributeError):
        return "", text


class WatchStream:
    """An open watch: iterate for events; ``close()`` from another thread ends the iteration."""

    def __init__(self, response: Any) -> None:
        self._response = response  # urllib3.HTTPResponse, not preloaded
        self._closed = False

    def __iter__(self) -> Iterator[JSON]:
        buffer = b""
        try:
            for chunk in self._response.stream(amt=None, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        except Exception:
            if not self._closed:
                raise
        finally:
            self._release()

    def close(self) -> None:
        self._closed = True
        # A thread blocked reading the socket only wakes up when the socket is shut down;
        # closing the response from here would wait for the lock that read holds.
        connection = getattr(self._response, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        try:
            self._response.close()
            self._response.release_conn()
        except Exception:  # best effort: the connection is being thrown away
            pass


class Cluster:
    """One cluster, as reached through a kubeconfig context (or the in-cluster config)."""

    def __init__(self, configuration: Any, context: str | None, description: str) -> None:
        from kubernetes import client  # lazy: keeps `import kubefixtures` cheap

        self.configuration = configuration
        self.context = context
        self.description = description  # "context X (https://host:port)", for messages
        self._api = client.ApiClient(configuration)
        self._resources: dict[tuple[str, str], Resource] = {}
        self._resource_lists: dict[str, list[JSON]] = {}
        self._lock = threading.Lock()

    # --- connecting -----------------------------------------------------------------------

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> Cluster:
        """Load credentials, then check the cluster answers and lets us create namespaces.

        Raises ClusterError with one line saying which kubeconfig/context failed and why.
        """
        configuration, context_name = _load_configuration(kubeconfig, context)
        where = f"context {context_name}" if context_name else "in-cluster config"
        cluster = cls(configuration, context_name, f"{where} ({configuration.host})")
        cluster.check_access()
        return cluster

    def check_access(self) -> None:
        try:
            self.request("GET", "/version", timeout=(_CONNECT_TIMEOUT, 10.0))
        except ApiError as error:
            raise ClusterError(f"{self.description}: the API server refused us: {error}") from None
        except ClusterError as error:
            raise ClusterError(f"{self.description} is unreachable: {error}") from None
        review = self.request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"verb": "create", "resource": "namespaces"}},
            },
        )
        if not (review.get("status") or {}).get("allowed"):
            raise ClusterError(
                f"{self.description}: these credentials may not create namespaces, which "
                "kubefixtures needs (one per environment)"
            )

    # --- raw requests ---------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, Any]] = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = None,
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        request = self._api.param_serialize(
            method,
            path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            return self._api.call_api(*request, _request_timeout=timeout or _REQUEST_TIMEOUT)
        except Exception as error:  # urllib3 and ssl errors: connection problems
            if isinstance(error, ApiError):
                raise
            reason = getattr(error, "reason", None) or error
            raise ClusterError(" ".join(str(reason).split())) from None

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, Any]] = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = None,
    ) -> JSON:
        """One API call; returns the decoded JSON body or raises ApiError/ClusterError."""
        response = self._call(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        data = response.read()
        if not 200 <= response.status <= 299:
            reason, message = _status_message(data)
            raise ApiError(response.status, reason or str(response.reason), message)
        decoded: JSON = json.loads(data) if data else {}
        return decoded

    def request_text(
        self,
        path: str,
        *,
        query: Sequence[tuple[str, Any]] = (),
        timeout: float | tuple[float, float] | None = None,
    ) -> str:
        """A GET whose answer is text rather than JSON (a container's log)."""
        response = self._call("GET", path, query=query, timeout=timeout)
        data = response.read()
        if not 200 <= response.status <= 299:
            reason, message = _status_message(data)
            raise ApiError(response.status, reason or str(response.reason), message)
        return bytes(data).decode("utf-8", "replace")

    def watch(
        self,
        resource: Resource,
        namespace: str | None,
        resource_version: str,
        timeout_seconds: int,
    ) -> WatchStream:
        """Open a watch from ``resource_version``; the server ends it after ``timeout_seconds``."""
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", timeout_seconds),
            ("allowWatchBookmarks", "true"),
        ]
        response = self._call(
            "GET",
            resource.collection_path(namespace),
            query=query,
            timeout=(_CONNECT_TIMEOUT, timeout_seconds + 10.0),
        )
        if not 200 <= response.status <= 299:
            reason, message = _status_message(response.read())
            raise ApiError(response.status, reason or str(response.reason), message)
        return WatchStream(response.response)

    def list_objects(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> JSON:
        query = [("labelSelector", label_selector)] if label_selector else []
        return self.request("GET", resource.collection_path(namespace), query=query)

    # --- discovery ------------------------------------------------------------------------

    def resource_for(self, api_version: str, kind: str) -> Resource | None:
        """The resource serving ``kind`` in ``api_version``, or None when the cluster lacks it."""
        key = (api_version, kind)
        with self._lock:
            if key in self._resources:
                return self._resources[key]
        listing = self._resource_list(api_version)
        for entry in listing:
            if entry.get("kind") == kind and "/" not in str(entry.get("name", "")):
                found = Resource(api_version, kind, entry["name"], bool(entry.get("namespaced")))
                with self._lock:
                    self._resources[key] = found
                return found
        return None

    def _resource_list(self, api_version: str) -> list[JSON]:
        with self._lock:
            if api_version in self._resource_lists:
                return self._resource_lists[api_version]
        path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        try:
            resources = list(self.request("GET", path).get("resources") or [])
        except ApiError as error:
            if error.status != 404:
                raise
            resources = []
        with self._lock:
            self._resource_lists[api_version] = resources
        return resources

    def resolve(self, objects: Sequence[tuple[str, str, str]]) -> list[Resource]:
        """Resources for ``(api_version, kind, location)`` triples, all looked up at once.

        Raises ApplyError naming the location of an unknown or cluster-scoped kind: an
        environment only holds namespaced objects, which die with its namespace.
        """
        versions = sorted({api_version for api_version, _, _ in objects})
        with ThreadPoolExecutor(max_workers=min(len(versions), 8) or 1) as pool:
            list(pool.map(self._resource_list, versions))
        resolved = []
        for api_version, kind, location in objects:
            resource = self.resource_for(api_version, kind)
            if resource is None:
                raise ApplyError(
                    f"{location}: {self.description} does not serve kind {kind} "
                    f"in apiVersion {api_version}"
                )
            if not resource.namespaced:
                raise ApplyError(
                    f"{location}: {kind} is cluster-scoped; an environment may only hold "
                    "namespaced objects (they are deleted with its namespace)"
                )
            resolved.append(resource)
        return resolved

    # --- namespaces -----------------------------------------------------------------------

    def create_namespace(self, name: str, labels: Mapping[str, str]) -> JSON:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels)},
        }
        try:
            return self.request("POST", "/api/v1/namespaces", body=body)
        except ApiError as error:
            raise ClusterError(f"creating namespace {name} failed: {error}") from None

    def delete_namespace(self, name: str, wait: bool = False, timeout: float = 120.0) -> None:
        """Ask for the namespace's deletion; with ``wait``, return once it is gone."""
        try:
            self.request(
                "DELETE",
                NAMESPACE.object_path(None, name),
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": "Background",
                },
            )
        except ApiError as error:
            if error.status != 404:
                raise ClusterError(f"deleting namespace {name} failed: {error}") from None
            return
        if wait:
            self._wait_gone(NAMESPACE, None, name, timeout)

    def _wait_gone(
        self, resource: Resource, namespace: str | None, name: str, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listing = self.request(
                "GET",
                resource.collection_path(namespace),
                query=[("fieldSelector", f"metadata.name={name}")],
            )
            if not listing.get("items"):
                return
            version = listing["metadata"]["resourceVersion"]
            remaining = max(1, int(deadline - time.monotonic()))
            stream = self.watch(resource, namespace, version, min(remaining, 60))
            for event in stream:
                if event.get("type") == "DELETED" and event["object"]["metadata"]["name"] == name:
                    stream.close()
                    return
        raise ClusterError(f"{resource.kind.lower()} {name} still exists after {timeout:.0f} s")

    # --- apply ----------------------------------------------------------------------------

    def apply(
        self,
        resource: Resource,
        manifest: Mapping[str, Any],
        namespace: str,
        deadline: float,
        location: str = "",
    ) -> JSON:
        """Server-side apply one object (field manager ``kubefixtures``, conflicts forced)."""
        body = dict(manifest)
        body["metadata"] = {**manifest["metadata"], "namespace": namespace}
        path = resource.object_path(namespace, manifest["metadata"]["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        delay = 0.05
        while True:
            try:
                return self.request(
                    "PATCH",
                    path,
                    query=query,
                    body=body,
                    content_type="application/apply-patch+yaml",
                )
            except ApiError as error:
                transient = error.status == 403 and any(
                    marker in error.message.lower() for marker in _TRANSIENT_APPLY_MARKERS
                )
                if not transient or time.monotonic() + delay > deadline:
                    where = f"{location}: " if location else ""
                    raise ApplyError(
                        f"{where}{resource.kind.lower()}/{manifest['metadata']['name']} was "
                        f"rejected: {error.message}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def apply_all(
        self,
        items: Sequence[tuple[Resource, Mapping[str, Any], str]],
        namespace: str,
        deadline: float,
    ) -> list[JSON]:
        """Apply every ``(resource, manifest, location)`` concurrently; the first error wins."""
        if not items:
            return []

        def one(item: tuple[Resource, Mapping[str, Any], str]) -> JSON:
            resource, manifest, location = item
            return self.apply(resource, manifest, namespace, deadline, location)

        with ThreadPoolExecutor(max_workers=min(len(items), _APPLY_WORKERS)) as pool:
            return list(pool.map(one, items))

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]


def _load_configuration(kubeconfig: str | None, context: str | None) -> tuple[Any, str | None]:
    """A Configuration from the kubeconfig (or in-cluster), and the context name it used."""
    from kubernetes import client, config  # lazy, see the module docstring

    configuration = client.Configuration()
    configuration.connection_pool_maxsize = _POOL_SIZE
    files = kubeconfig or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    first_file = files.split(os.pathsep)[0]
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if not kubeconfig and not Path(first_file).exists() and in_cluster and not context:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException as error:
            raise ClusterError(f"in-cluster config: {error}") from None
        return configuration, None
    if not Path(first_file).exists():
        raise ClusterError(
            f"kubeconfig {first_file} does not exist (set --kubefixtures-kubeconfig or KUBECONFIG)"
        )
    try:
        contexts, current = config.list_kube_config_contexts(config_file=files)  # type: ignore[no-untyped-call]
        name = context or (current or {}).get("name")
        if context and context not in {entry["name"] for entry in contexts}:
            raise ClusterError(f"kubeconfig {files}: no context named {context!r}")
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=files,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except config.ConfigException as error:
        raise ClusterError(f"kubeconfig {files}: {' '.join(str(error).split())}") from None
    return configuration, name


def run_concurrently(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads; return their results in order, or raise the first error."""
    if not calls:
        return []
    with ThreadPoolExecutor(max_workers=min(len(calls), _APPLY_WORKERS)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]
