"""The one implementation behind ``Environment``'s controls and their async twins.

Synchronous: it talks to the API through kubefixtures.kube (the blocking client; exec on
the shared event-loop thread). The async facade runs these methods in worker threads, so
an event loop is never blocked. Every error it lets out is a KubefixturesError of one
line that names the verb and the target, with the environment's secrets masked.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shlex
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from kubefixtures.control._targets import Target, parse_target
from kubefixtures.errors import ControlError, KubefixturesError

if TYPE_CHECKING:
    from kubefixtures.details import Environment, ObjectRef, ServiceDetails
    from kubefixtures.kube import Cluster, Resource
    from kubefixtures.kube._exec import ExecResult, PodExec
    from kubefixtures.kube.portforward import ServicePortForward

__all__ = ["ControlCore", "ExecError", "applied_objects"]

JSON = dict[str, Any]
T = TypeVar("T")
DEFAULT_TIMEOUT = 120.0
EXEC_TIMEOUT = 60.0
_DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
_FORWARD_LABEL = "kubefixtures.io/forward-pod"
_HELPER_LABEL = "kubefixtures.io/forward"
_STDERR_LINES = 5
_REPLICATED = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})
_POD_PAUSE = 0.1

# Objects applied from tests, by namespace, for a failing test's report (diagnostics).
_APPLIED: dict[str, list[str]] = {}
_APPLIED_LOCK = threading.Lock()


def applied_objects(namespace: str) -> list[str]:
    """``kind/name`` of the objects tests applied in ``namespace`` (this process)."""
    with _APPLIED_LOCK:
        return list(_APPLIED.get(namespace, ()))


class ExecError(ControlError):
    """A command run with ``check=True`` exited with a non-zero code."""

    def __init__(self, message: str, command: Sequence[str], result: ExecResult) -> None:
        super().__init__(message)
        self.command = list(command)
        self.exit_code = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr


class ControlCore:
    """Acts on one environment's namespace. Thread-safe; ``close()`` releases what it
    started (ad-hoc forwards, objects applied from tests, the exec connection)."""

    def __init__(
        self,
        environment: Environment,
        connect: Callable[[], Cluster] | None = None,
        image_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self._environment = environment
        self.namespace = environment.namespace
        self.name = environment.name
        self._connect = connect
        self._image_overrides = dict(image_overrides or {})
        self._cluster: Cluster | None = None
        self._owns_cluster = connect is None
        self._exec: PodExec | None = None
        self._lock = threading.Lock()
        self._pods: dict[str, str] = {}  # target -> the pod exec last chose for it
        self._forwards: list[ServicePortForward] = []
        self._applied: list[tuple[Resource, str]] = []
        self._helpers: list[tuple[Resource, str]] = []  # forward Services
        self._labelled: list[str] = []  # pods labelled for a forward
        self._extra_masks: set[str] = set()
        self._masker: Callable[[str], str] | None = None

    # --- plumbing ------------------------------------------------------------------------

    @property
    def cluster(self) -> Cluster:
        with self._lock:
            if self._cluster is None:
                if self._connect is not None:
                    self._cluster = self._connect()
                else:  # an Environment built by hand (a script reading a details file)
                    from kubefixtures.kube import Cluster

                    self._cluster = Cluster.connect(context=self._environment.context)
            return self._cluster

    def mask(self, text: str) -> str:
        if self._masker is None:
            from kubefixtures.secrets import Masker, secret_values

            self._masker = Masker(secret_values(self._environment) | self._extra_masks)
        return self._masker(text)

    @contextlib.contextmanager
    def masked(self) -> Iterator[None]:
        """Errors leave with the environment's secrets masked."""
        try:
            yield
        except KubefixturesError as error:
            text = str(error)
            masked = self.mask(text)
            if masked != text:
                error.args = (masked,)
            raise

    def _executor(self) -> PodExec:
        cluster = self.cluster
        with self._lock:
            if self._exec is None:
                from kubefixtures.kube._exec import PodExec

                self._exec = PodExec(cluster.config)
            return self._exec

    def _resource(self, target: Target) -> Resource:
        from kubefixtures.kube.control import WORKLOADS

        return WORKLOADS[target.kind]

    def _get(self, target: Target, verb: str = "get") -> JSON:
        from kubefixtures.kube.control import get_object

        return get_object(
            self.cluster, self._resource(target), self.namespace, target.name, verb=verb
        )

    def pods_of(self, target: Target, verb: str) -> list[JSON]:
        """The target's pods, not being deleted, ready ones first, then by name."""
        from kubefixtures.kube.control import list_pods, selector_of

        if target.kind == "pod":
            pods = [self._get(target, verb)]
        else:
            obj = self._get(target, verb)
            pods = list_pods(self.cluster, self.namespace, selector_of(obj), str(target), verb=verb)
        alive = [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]
        return sorted(alive, key=lambda pod: (not _ready(pod), pod["metadata"]["name"]))

    def _running_pod(self, target: Target, verb: str) -> JSON:
        pods = self.pods_of(target, verb)
        running = [pod for pod in pods if (pod.get("status") or {}).get("phase") == "Running"]
        if running:
            return running[0]
        from kubefixtures.kube.pods import describe_pod

        seen = "; ".join(f"pod/{pod['metadata']['name']}: {describe_pod(pod)}" for pod in pods)
        raise ControlError(f"{verb} {target}: no running pod ({seen or 'it has no pods'})")

    def _wait(self, items: Sequence[tuple[Resource, str]], deadline: float) -> None:
        from kubefixtures.readiness.wait import Tracked, wait_ready

        started = time.monotonic()
        wait_ready(
            self.cluster,
            self.namespace,
            [Tracked(resource, name) for resource, name in items],
            deadline=deadline,
            environment=self.name,
            started=started,
        )
        for resource, name in items:
            if resource.kind in _REPLICATED:
                self._wait_pods(Target(resource.kind.lower(), name), deadline, started)

    def _wait_pods(self, target: Target, deadline: float, started: float) -> None:
        """Until as many of the workload's pods are ready as it wants. Its status lags
        behind its pods for a moment (a pod just deleted still counts as available), so a
        ready status alone is not proof after a ``delete_pod``."""
        from kubefixtures.kube.client import POD
        from kubefixtures.kube.control import list_pods, selector_of
        from kubefixtures.readiness.wait import Tracked, wait_ready

        obj = self._get(target, "wait for")
        wanted = (obj.get("spec") or {}).get("replicas")
        wanted = 1 if wanted is None else int(wanted)
        selector = selector_of(obj)
        while True:
            pods = list_pods(self.cluster, self.namespace, selector, str(target), verb="wait for")
            alive = [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]
            if sum(_ready(pod) for pod in alive) >= wanted:
                return
            pending = [pod["metadata"]["name"] for pod in alive if not _ready(pod)]
            if pending:
                tracked = [Tracked(POD, name) for name in pending]
                wait_ready(
                    self.cluster,
                    self.namespace,
                    tracked,
                    deadline=deadline,
                    environment=self.name,
                    started=started,
                )
            elif time.monotonic() > deadline:
                raise ControlError(
                    f"wait for {target}: {len(alive)}/{wanted} pods after "
                    f"{time.monotonic() - started:.1f} s"
                )
            else:  # its controller has not made the replacement pod yet
                time.sleep(_POD_PAUSE)

    def _wait_terminated(self, target: Target, selector: str, deadline: float) -> None:
        """Wait until the pods of ``selector`` being deleted are gone."""
        from kubefixtures.kube.client import POD
        from kubefixtures.kube.control import list_pods, wait_gone

        pods = list_pods(self.cluster, self.namespace, selector, str(target))
        leaving = [p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp")]
        wait_gone(self.cluster, POD, self.namespace, leaving, deadline)

    # --- reading -------------------------------------------------------------------------

    def logs(
        self,
        target: str | Target,
        *,
        container: str | None = None,
        previous: bool = False,
        tail: int | None = None,
        since: float | timedelta | None = None,
    ) -> str:
        from kubefixtures.kube.control import pod_log

        parsed = parse_target(target, "read the logs of")
        if tail is not None and tail < 0:
            raise ControlError(f"read the logs of {parsed}: tail must be >= 0, not {tail}")
        since_seconds = None
        if since is not None:
            seconds = since.total_seconds() if isinstance(since, timedelta) else float(since)
            since_seconds = max(1, int(seconds + 0.999))
        pods = self.pods_of(parsed, "read the logs of")
        if not pods:
            raise ControlError(f"read the logs of {parsed}: it has no pods")
        texts = [
            pod_log(
                self.cluster,
                self.namespace,
                pod["metadata"]["name"],
                container=container or _default_container(pod),
                previous=previous,
                tail=tail,
                since=since_seconds,
            )
            for pod in pods
        ]
        if len(texts) == 1:
            return texts[0]
        return "".join(
            f"==> pod/{pod['metadata']['name']} <==\n{text}" + ("" if text.endswith("\n") else "\n")
            for pod, text in zip(pods, texts, strict=True)
        )

    def events(self, since: float | timedelta | datetime | None = None) -> list[JSON]:
        from kubefixtures.kube.control import list_events
        from kubefixtures.kube.pods import event_time, oldest_first

        events = oldest_first(list_events(self.cluster, self.namespace))
        if since is None:
            return events
        if isinstance(since, datetime):
            cutoff = since if since.tzinfo else since.replace(tzinfo=UTC)
        else:
            seconds = since.total_seconds() if isinstance(since, timedelta) else float(since)
            cutoff = datetime.now(UTC) - timedelta(seconds=seconds)
        return [event for event in events if _parse_time(event_time(event)) >= cutoff]

    def get(self, kind: str, name: str) -> JSON:
        from kubefixtures.kube.control import find_resource, get_object

        resource = find_resource(self.cluster, kind)
        return get_object(self.cluster, resource, self.namespace, name)

    # --- exec ------------------------------------------------------------------------------

    def exec(
        self,
        target: str | Target,
        argv: Sequence[str],
        *,
        container: str | None = None,
        stdin: bytes | str | None = None,
        timeout: float = EXEC_TIMEOUT,
        check: bool = False,
    ) -> ExecResult:
        parsed = parse_target(target, "exec in")
        _check_timeout("exec in", parsed, timeout)
        if isinstance(argv, str | bytes) or not argv or not all(isinstance(a, str) for a in argv):
            raise ControlError(
                f"exec in {parsed}: argv is a non-empty list of strings, such as "
                f"['sh', '-c', 'echo hello'], not {argv!r}"
            )
        data = stdin.encode() if isinstance(stdin, str) else stdin
        key = f"{parsed}/{container or ''}"
        cached = self._pods.get(key)
        pod = cached or self._pod_for_exec(parsed, container)
        what = str(parsed) if parsed.kind == "pod" else f"{parsed} (pod/{pod})"
        executor = self._executor()

        def run_in(pod: str, what: str) -> ExecResult:
            return executor.run(
                self.namespace,
                pod,
                argv,
                container=container,
                stdin=data,
                timeout=timeout,
                what=what,
            )

        try:
            result = run_in(pod, what)
        except ControlError:
            self._pods.pop(key, None)
            if cached is None or parsed.kind == "pod":
                raise
            # The pod chosen earlier may have gone (a restart): choose again, once.
            fresh = self._pod_for_exec(parsed, container)
            if fresh == cached:
                raise
            pod, what = fresh, f"{parsed} (pod/{fresh})"
            result = run_in(pod, what)
        self._pods[key] = pod
        if check and result.exit_code != 0:
            raise ExecError(_exec_failure(what, argv, result), argv, result)
        return result

    def _pod_for_exec(self, target: Target, container: str | None) -> str:
        if target.kind == "pod":
            return target.name
        return str(self._running_pod(target, "exec in")["metadata"]["name"])

    # --- acting ----------------------------------------------------------------------------

    def _workloads(self, target: Target, verb: str) -> list[tuple[Resource, str]]:
        """The workloads a restart or a scale acts on: the target itself, or for a
        Service the controllers of its pods."""
        from kubefixtures.kube.control import DEPLOYMENT, REPLICA_SET, WORKLOADS, get_object

        if target.kind in ("deployment", "statefulset", "daemonset") or (
            target.kind == "replicaset" and verb == "scale"
        ):
            self._get(target, verb)  # a missing one fails here, naming the target
            return [(WORKLOADS[target.kind], target.name)]
        if target.kind != "service":
            hint = {
                "pod": "delete_pod() it (its controller replaces it) or act on its workload",
                "job": "a Job runs once: delete it and apply it again",
                "replicaset": "act on the Deployment that owns it",
            }[target.kind]
            raise ControlError(f"{verb} {target}: not a workload that can {verb}; {hint}")
        found: list[tuple[Resource, str]] = []
        for pod in self.pods_of(target, verb):
            owner = _controller(pod)
            if owner is None:
                continue
            kind, name = owner
            if kind == "ReplicaSet":
                replica_set = get_object(self.cluster, REPLICA_SET, self.namespace, name, verb=verb)
                owner = _controller(replica_set)
                if owner is None or owner[0] != "Deployment":
                    continue
                item = (DEPLOYMENT, owner[1])
            elif kind.lower() in WORKLOADS:
                item = (WORKLOADS[kind.lower()], name)
            else:
                continue
            if item not in found:
                found.append(item)
        if not found:
            raise ControlError(
                f"{verb} {target}: no Deployment, StatefulSet or DaemonSet runs its pods"
            )
        return found

    def restart(self, target: str | Target, timeout: float = DEFAULT_TIMEOUT) -> None:
        from kubefixtures.kube.client import POD
        from kubefixtures.kube.control import restart_workload, wait_gone

        parsed = parse_target(target, "restart")
        _check_timeout("restart", parsed, timeout)
        deadline = time.monotonic() + timeout
        workloads = self._workloads(parsed, "restart")
        old = [
            pod["metadata"]["name"]
            for resource, name in workloads
            for pod in self.pods_of(Target(resource.kind.lower(), name), "restart")
        ]
        for resource, name in workloads:
            restart_workload(self.cluster, resource, self.namespace, name)
        self._pods.clear()
        self._wait(workloads, deadline)
        wait_gone(self.cluster, POD, self.namespace, old, deadline)

    def delete_pod(self, target: str | Target) -> str:
        from kubefixtures.kube.client import POD
        from kubefixtures.kube.control import delete_object

        parsed = parse_target(target, "delete the pod of")
        if parsed.kind == "pod":
            name = parsed.name
        else:
            pods = self.pods_of(parsed, "delete the pod of")
            if not pods:
                raise ControlError(f"delete the pod of {parsed}: it has no pods")
            name = pods[0]["metadata"]["name"]
        delete_object(self.cluster, POD, self.namespace, name, verb="delete")
        self._pods.clear()
        return str(name)

    def scale(self, target: str | Target, replicas: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        from kubefixtures.kube.control import scale_workload, selector_of

        parsed = parse_target(target, "scale")
        _check_timeout("scale", parsed, timeout)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ControlError(f"scale {parsed}: replicas must be an int >= 0, not {replicas!r}")
        deadline = time.monotonic() + timeout
        workloads = self._workloads(parsed, "scale")
        for resource, name in workloads:
            scale_workload(self.cluster, resource, self.namespace, name, replicas)
        self._pods.clear()
        self._wait(workloads, deadline)
        for resource, name in workloads:
            workload = Target(resource.kind.lower(), name)
            selector = selector_of(self._get(workload, "scale"))
            self._wait_terminated(workload, selector, deadline)

    def patch(self, target: str, patch: Mapping[str, Any] | Sequence[Any]) -> JSON:
        from kubefixtures.control._targets import KINDS
        from kubefixtures.kube.control import WORKLOADS, find_resource, patch_object

        if not isinstance(target, str):
            raise ControlError(f"patch {target!r}: a target is a string such as configmap/NAME")
        word, slash, name = target.partition("/")
        if slash and word.lower() not in KINDS:
            resource = find_resource(self.cluster, word)
        else:
            parsed = parse_target(target, "patch")
            resource, name = WORKLOADS[parsed.kind], parsed.name
        return patch_object(self.cluster, resource, self.namespace, name, patch)

    def apply(
        self,
        source: str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        values: Mapping[str, Any] | None = None,
        *,
        wait: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        base: Path | None = None,
    ) -> list[ObjectRef]:
        import yaml

        from kubefixtures.details import ObjectRef
        from kubefixtures.provisioning.reused import KnownSecrets
        from kubefixtures.rendering import RenderContext, render_sources, render_text

        _check_timeout("apply", "objects", timeout)
        details = self._environment.details
        context = RenderContext(
            namespace=self.namespace,
            session_id=details.session_id,
            environment=self.name,
            values=dict(values or {}),
            secrets=KnownSecrets(dict(self._environment.secrets)),
            image_overrides=self._image_overrides,
        )
        if isinstance(source, str | Path):
            path = Path(source).expanduser()
            if not path.is_absolute() and base is not None:
                path = base / path
            rendered = render_sources([path], context)
        elif isinstance(source, Mapping):
            text = yaml.safe_dump(dict(source), sort_keys=False)
            rendered = render_text(text, "apply(object)", context)
        else:
            objects = [dict(item) for item in source]
            text = yaml.safe_dump_all(objects, sort_keys=False)
            rendered = render_text(text, "apply(objects)", context)
        for name in context.used_secrets:
            self._extra_masks.add(context.secrets.get(name))
        self._masker = None  # new secrets may have been generated
        deadline = time.monotonic() + timeout
        cluster = self.cluster
        resources = cluster.resolve(
            [(item.api_version, item.kind, item.location) for item in rendered]
        )
        items = [
            (resource, item.manifest, item.location)
            for resource, item in zip(resources, rendered, strict=True)
        ]
        try:
            cluster.apply_all(items, self.namespace, deadline)
        finally:
            # Whatever got through is recorded, so that teardown and reports know of it.
            with self._lock:
                for resource, item in zip(resources, rendered, strict=True):
                    if (resource, item.name) not in self._applied:
                        self._applied.append((resource, item.name))
            with _APPLIED_LOCK:
                known = _APPLIED.setdefault(self.namespace, [])
                for item in rendered:
                    if str(item) not in known:
                        known.append(str(item))
        if wait:
            pairs = zip(resources, rendered, strict=True)
            self._wait([(resource, item.name) for resource, item in pairs], deadline)
        return [
            ObjectRef(
                api_version=item.api_version,
                kind=item.kind,
                name=item.name,
                namespace=self.namespace,
            )
            for item in rendered
        ]

    def wait_ready(
        self, targets: str | Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        from kubefixtures.kube.control import WORKLOADS

        _check_timeout("wait for", targets or "the environment", timeout)
        deadline = time.monotonic() + timeout
        if targets is None:
            declared = [
                (str(obj.get("apiVersion")), str(obj.get("kind")), f"{obj.get('kind')}")
                for obj in self._environment.objects
            ]
            resources = self.cluster.resolve(declared)
            items = [
                (resource, str(obj["metadata"]["name"]))
                for resource, obj in zip(resources, self._environment.objects, strict=True)
            ]
            with self._lock:
                items += [item for item in self._applied if item not in items]
        else:
            wanted = [targets] if isinstance(targets, str) else list(targets)
            parsed = [parse_target(target, "wait for") for target in wanted]
            for target in parsed:  # a typo fails now, not at the deadline
                self._get(target, "wait for")
            items = [(WORKLOADS[target.kind], target.name) for target in parsed]
        self._wait(items, deadline)

    # --- forwards --------------------------------------------------------------------------

    def forward(
        self, target: str | Target, port: int | str, timeout: float = DEFAULT_TIMEOUT
    ) -> ServiceDetails:
        from kubefixtures.details import ServiceDetails
        from kubefixtures.kube.portforward import PortForwardError, ServicePortForward

        parsed = parse_target(target, "forward to")
        _check_timeout("forward to", parsed, timeout)
        if isinstance(port, bool) or not isinstance(port, int | str) or port in ("", 0):
            raise ControlError(
                f"forward to {parsed}: port is a number or a port name, not {port!r}"
            )
        service, service_port = (
            (parsed.name, port) if parsed.kind == "service" else self._forward_service(parsed, port)
        )
        forward = ServicePortForward(
            self.cluster.config, self.namespace, service, service_port, ready_timeout=timeout
        )
        try:
            forward.start()
        except PortForwardError as error:
            raise ControlError(f"forward to {parsed} port {port}: {error}") from None
        with self._lock:
            self._forwards.append(forward)
        local = forward.local_port
        return ServiceDetails(
            name=f"{parsed}",
            namespace=self.namespace,
            port=local,
            ports={port: local} if isinstance(port, int) else {},
            named_ports={port: local} if isinstance(port, str) else {},
        )

    def _forward_service(self, target: Target, port: int | str) -> tuple[str, int]:
        """A Service of our own selecting the target's pods: the forwarder heals by
        following a Service's ready endpoints, so a workload's forward survives restarts."""
        from kubefixtures.kube.client import POD
        from kubefixtures.kube.control import SERVICE, patch_object

        obj = self._get(target, "forward to")
        digest = hashlib.sha256(f"{target}:{port}".encode()).hexdigest()[:10]
        if target.kind == "pod":
            # A pod's labels may match its siblings': mark this one.
            patch_object(
                self.cluster,
                POD,
                self.namespace,
                target.name,
                {"metadata": {"labels": {_FORWARD_LABEL: digest}}},
                verb="label for a forward",
            )
            with self._lock:
                self._labelled.append(target.name)
            selector = {_FORWARD_LABEL: digest}
        else:
            spec_selector = (obj.get("spec") or {}).get("selector") or {}
            if spec_selector.get("matchExpressions"):
                raise ControlError(
                    f"forward to {target}: its selector uses matchExpressions, which a Service "
                    "cannot express; forward to one of its pods (pod/NAME)"
                )
            selector = dict(spec_selector.get("matchLabels") or {})
        name = f"kf-forward-{digest}"
        service_port = port if isinstance(port, int) else 80
        manifest = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": {_HELPER_LABEL: "true"}},
            "spec": {
                "selector": selector,
                "ports": [{"name": "forward", "port": service_port, "targetPort": port}],
            },
        }
        self.cluster.apply(SERVICE, manifest, self.namespace, time.monotonic() + 30, str(target))
        with self._lock:
            if (SERVICE, name) not in self._helpers:
                self._helpers.append((SERVICE, name))
        return name, service_port

    # --- files -----------------------------------------------------------------------------

    def copy_to(
        self,
        target: str | Target,
        local_path: str | Path,
        remote_path: str,
        *,
        container: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        parsed = parse_target(target, "copy to")
        source = Path(local_path)
        if not source.exists():
            raise ControlError(f"copy to {parsed}: {source} does not exist")
        remote = PurePosixPath(remote_path)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.add(str(source), arcname=remote.name)
        self.exec(
            parsed,
            ["tar", "-x", "-f", "-", "-C", str(remote.parent)],
            container=container,
            stdin=buffer.getvalue(),
            timeout=timeout,
            check=True,
        )

    def copy_from(
        self,
        target: str | Target,
        remote_path: str,
        local_path: str | Path,
        *,
        container: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        parsed = parse_target(target, "copy from")
        remote = PurePosixPath(remote_path)
        result = self.exec(
            parsed,
            ["tar", "-c", "-f", "-", "-C", str(remote.parent), remote.name],
            container=container,
            timeout=timeout,
            check=True,
        )
        destination = Path(local_path)
        with tarfile.open(fileobj=io.BytesIO(result.stdout), mode="r") as archive:
            for member in archive.getmembers():
                parts = PurePosixPath(member.name).parts
                if not parts or parts[0] != remote.name:
                    continue
                member.name = str(PurePosixPath(destination.name, *parts[1:]))
                # The data filter refuses links out of the tree, devices and absolute paths.
                archive.extract(member, destination.parent, filter="data")

    # --- the end ---------------------------------------------------------------------------

    def close(self, keep: bool = False) -> list[str]:
        """Stop the forwards; unless ``keep``, delete what tests applied and the forward
        Services. Returns what went wrong (best effort: teardown goes on)."""
        from kubefixtures.kube.client import POD
        from kubefixtures.kube.control import delete_object, patch_object

        problems: list[str] = []
        with self._lock:
            forwards, self._forwards = self._forwards, []
            applied, self._applied = self._applied, []
            helpers, self._helpers = self._helpers, []
            labelled, self._labelled = self._labelled, []
            executor, self._exec = self._exec, None
            cluster = self._cluster
        for forward in forwards:
            with contextlib.suppress(Exception):
                forward.stop()
        if executor is not None:
            with contextlib.suppress(Exception):
                executor.close()
        if cluster is not None and not keep:
            for resource, name in [*reversed(applied), *helpers]:
                try:
                    delete_object(cluster, resource, self.namespace, name, missing_ok=True)
                except KubefixturesError as error:
                    problems.append(self.mask(str(error)))
            for pod in labelled:
                with contextlib.suppress(KubefixturesError):
                    patch_object(
                        cluster,
                        POD,
                        self.namespace,
                        pod,
                        {"metadata": {"labels": {_FORWARD_LABEL: None}}},
                    )
        with _APPLIED_LOCK:
            _APPLIED.pop(self.namespace, None)
        if self._owns_cluster and cluster is not None:
            with self._lock:
                self._cluster = None
            cluster.close()
        return problems


def _ready(pod: Mapping[str, Any]) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _default_container(pod: Mapping[str, Any]) -> str | None:
    annotations = pod["metadata"].get("annotations") or {}
    if annotations.get(_DEFAULT_CONTAINER):
        return str(annotations[_DEFAULT_CONTAINER])
    containers = (pod.get("spec") or {}).get("containers") or []
    return str(containers[0]["name"]) if containers else None


def _controller(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    for owner in obj["metadata"].get("ownerReferences") or []:
        if owner.get("controller"):
            return str(owner.get("kind")), str(owner.get("name"))
    return None


def _parse_time(text: str) -> datetime:
    if not text:
        return datetime.min.replace(tzinfo=UTC)
    cleaned = text.replace("Z", "+00:00")
    if "." in cleaned:  # microseconds at most
        head, _, rest = cleaned.partition(".")
        zone_at = next((at for at, ch in enumerate(rest) if not ch.isdigit()), len(rest))
        digits, zone = rest[:zone_at], rest[zone_at:]
        cleaned = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(cleaned)


def _check_timeout(verb: str, target: object, timeout: float) -> None:
    """A timeout is finite, positive and at most a year (as every setting's seconds are)."""
    from kubefixtures.limits import MAX_SECONDS

    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ControlError(f"{verb} {target}: timeout is a number of seconds, not {timeout!r}")
    if not 0 < timeout <= MAX_SECONDS:  # NaN fails both comparisons
        raise ControlError(
            f"{verb} {target}: timeout must be more than 0 and at most {MAX_SECONDS} s, "
            f"not {timeout!r}"
        )


def _exec_failure(what: str, argv: Sequence[str], result: ExecResult) -> str:
    lines = result.stderr.decode("utf-8", "replace").rstrip("\n").splitlines()[-_STDERR_LINES:]
    shown = "".join(f"\n  stderr: {line}" for line in lines) if lines else " (no stderr)"
    return f"exec in {what}: {shlex.join(argv)} exited with code {result.exit_code}{shown}"
