"""The life of one environment in a namespace of its own: render -> connect -> choose the
namespace -> apply -> wait ready -> forward -> details, and the teardown that undoes it.

Every step is a method, so later features slot in between steps rather than into one long
function. Where the namespace comes from is a strategy: a new one (``NewNamespace``), one
an earlier run left for reuse (kubefixtures.provisioning.reused), or one the user has and
kubefixtures neither creates nor deletes (kubefixtures.provisioning.existing). Sharing with
xdist workers (provisioning.shared) wraps the whole; a details file (provisioning.attached)
replaces it.
Anything that fails before the namespace exists leaves nothing behind; anything that fails
after it stops the forwards and deletes (or, with keep-on-failure, keeps) the namespace.

Generated secrets used by the environment are also stored in the namespace, in the Secret
``kubefixtures-secrets`` (kubefixtures.secrets).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kubefixtures import cancel, naming
from kubefixtures.commands_for_people import kept_namespace_lines
from kubefixtures.errors import KubefixturesError
from kubefixtures.leases.policy import holder_identity
from kubefixtures.provisioning.base import (
    EnvironmentSpec,
    Inspection,
    PortForward,
    SessionView,
    inspect,
    ports_to_serve_locally,
    service_details,
    tcp_ports,
    wait_answering,
)
from kubefixtures.provisioning.cluster_scoped import (
    ClusterScoped,
    Placed,
    defined_resources,
    in_apply_order,
)
from kubefixtures.provisioning.hooks import Hook, split_hooks, wait_hook
from kubefixtures.rendering import RenderContext, RenderedObject, Secrets, render_sources
from kubefixtures.secrets import SECRETS_NAME, masked_error, stored_secrets_manifest
from kubefixtures.timing import Phases

if TYPE_CHECKING:
    from kubefixtures.details import Environment, EnvironmentDetails, ServiceDetails
    from kubefixtures.kube import Cluster, Resource
    from kubefixtures.kube.portforward import KnownEndpoints
    from kubefixtures.leases.renewal import LeaseEnd
    from kubefixtures.readiness.wait import Listed, Tracked

__all__ = ["Adopted", "FreshProvisioning", "LeaseHold", "NamespaceStrategy", "NewNamespace"]

_FORWARD_GRACE = 5.0  # seconds a forward waits for a pod past the environment's deadline


class LeaseHold(Protocol):
    """What a provisioning does with the Lease it holds (a SessionLease, or a share of one)."""

    def start(self) -> None: ...

    def finish(self, keep_for: float | None = None, because: str | None = None) -> str | None: ...

    def end(self, keep_for: float | None = None, because: str | None = None) -> LeaseEnd: ...

    def settle(self) -> None: ...


@dataclass(frozen=True)
class Adopted:
    """A namespace an earlier session left, and what rendering it again needs."""

    namespace: str
    session_id: str  # what ${session_id} rendered to for the session that created it
    secrets: Secrets  # its generated secrets, as that session rendered them
    lease: LeaseHold | None = None  # held already: taken over when it was chosen
    # Applied by the session that created it, and ready, never used since (a pool's spare):
    # only waited for and forwarded.
    ready: bool = False


class NamespaceStrategy(Protocol):
    """Where the environment's namespace comes from, and what becomes of it at the end."""

    def labels(self) -> Mapping[str, str]:
        """Labels the strategy adds to a namespace it has the provisioning create."""

    def choose(self, connecting: Future[Cluster]) -> Adopted | None:
        """A namespace to adopt, or None for a new one (``connecting`` gives the cluster)."""

    def ready_line(self, namespace: str) -> str | None:
        """A line to add to the environment's ready line, if any."""

    def leave_up(self, namespace: str, context: str | None) -> tuple[float, str] | None:
        """At a teardown that would delete the namespace: how long to leave it up instead,
        and the summary line that says so; None to delete it."""

    @property
    def owns_namespace(self) -> bool:
        """True: the namespace is the environment's, deleted (or kept) as a whole. False:
        it is the user's; only the environment's own objects come and go."""

    def before_apply(self, cluster: Cluster, namespace: str, placed: Sequence[Placed]) -> None:
        """The last look before anything is applied (the namespace and its Lease exist)."""

    def remove(self, cluster: Cluster, namespace: str, placed: Sequence[Placed]) -> list[str]:
        """At a teardown of a namespace not owned: delete the environment's objects in it;
        returns lines about what could not be deleted."""

    def kept_lines(self, namespace: str, why: str, context: str | None) -> list[str] | None:
        """The summary's lines about a namespace not owned, kept on failure (None: owned)."""

    def settled(self) -> None:
        """The setup is over, up or failed (a pool refills only then: the copies it starts
        would slow down the forwards of the one just claimed)."""


class NewNamespace:
    """The default: a new, unique namespace, deleted at the end."""

    owns_namespace = True

    def before_apply(self, cluster: Cluster, namespace: str, placed: Sequence[Placed]) -> None:
        return None

    def remove(self, cluster: Cluster, namespace: str, placed: Sequence[Placed]) -> list[str]:
        return []

    def kept_lines(self, namespace: str, why: str, context: str | None) -> list[str] | None:
        return None

    def labels(self) -> Mapping[str, str]:
        return {}

    def choose(self, connecting: Future[Cluster]) -> Adopted | None:
        return None

    def ready_line(self, namespace: str) -> str | None:
        return None

    def leave_up(self, namespace: str, context: str | None) -> tuple[float, str] | None:
        return None

    def settled(self) -> None:
        pass


class FreshProvisioning:
    """Brings one environment up (``setup``) and down (``teardown``) in its own namespace."""

    def __init__(
        self,
        spec: EnvironmentSpec,
        session: SessionView,
        strategy: NamespaceStrategy | None = None,
    ) -> None:
        self.spec = spec
        self.session = session
        self.strategy: NamespaceStrategy = strategy or NewNamespace()
        self.settings = session.settings
        self.timeout = spec.timeout or self.settings.ready_timeout
        self.namespace: str | None = None
        self.cluster: Cluster | None = None
        self.objects: list[RenderedObject] = []
        self.placed: list[Placed] = []  # the objects with the resources serving them
        self.cluster_scoped: ClusterScoped | None = None
        self._defined: dict[tuple[str, str], Resource] = {}  # kinds of the environment's CRDs
        self._main: list[Placed] = []  # all but the Helm hooks
        self._pre_install: list[Hook] = []
        self._post_install: list[Hook] = []
        self.forwards: list[PortForward] = []
        self.environment: Environment | None = None
        self._started = 0.0
        self._deadline = 0.0
        self._created = False
        self._adopted = False
        self._applied = False  # an adopted namespace whose objects need no apply
        self._failed = False  # a setup that failed leaves nothing for a later run
        self._cancelled = threading.Event()
        self._forwards_lock = threading.Lock()
        self._forwards_stopped = False
        self.lease: LeaseHold | None = None  # proof of life for the operator and gc
        self._adopted_lease: LeaseHold | None = None
        # What ${session_id} and ${secret:...} render to: this session's, unless a reused
        # namespace brings back those of the session that created it.
        self.render_session_id = session.session_id
        self.secrets: Secrets | None = None  # None: the session's
        self._context: RenderContext | None = None
        self.phases = Phases("fresh")  # how long each step took (kubefixtures.timing)

    # --- setup ----------------------------------------------------------------------------

    def setup(self) -> Environment:
        """Bring the environment up; raise a KubefixturesError (after cleaning up) if it fails.

        Prints nothing: the caller reports (``report_ready``), so that setup can also run in
        a background thread.
        """
        self.phases.begin()
        self._started = time.monotonic()
        self._deadline = self._started + self.timeout
        try:
            return self._setup()
        except KubefixturesError as error:
            # Whatever failed, its message reaches reports (the test's error, the session
            # report, other xdist workers): what the cluster said may quote a secret.
            raise self._masked(error) from None
        finally:
            self.strategy.settled()

    def _setup(self) -> Environment:
        phases = self.phases
        # Connecting (loading credentials, two round trips) overlaps with rendering, which
        # may run helm; neither creates anything.
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kubefixtures-setup")
        try:
            connecting: Future[Cluster] = pool.submit(
                phases.timed("connect", self.session.cluster), None
            )
            namespace = self._choose_namespace(connecting)
            with phases.phase("render"):
                context = self._render(namespace)
            self._check_ready_targets()
            self.cluster = connecting.result()
            with phases.phase("resolve"):
                self._resolve(self.cluster, namespace)
                if self.cluster_scoped:
                    # Before anything exists: a foreign or conflicting object leaves nothing
                    # behind.
                    self.cluster_scoped.check()
        except BaseException:
            self._drop_unused_lease()
            raise
        finally:
            # A render error is reported at once, without waiting for a slow connection.
            pool.shutdown(wait=False)
        try:
            with phases.phase("namespace"):
                self._prepare_namespace(self.cluster, namespace)
            if not self._applied:  # a pool's spare was applied by the session that made it
                with phases.phase("apply"):
                    self._apply(self.cluster)
            services = self._wait_ready_and_forward(self.cluster)
            if self._post_install:
                with phases.phase("hooks"):
                    self._run_hooks(self.cluster, self._post_install)
            from kubefixtures.details import Environment  # pydantic: loaded while pods start

            environment = Environment(self._details(context, services), self._manifests())
            if self.spec.ready:
                with phases.phase("app-ready"):
                    self._wait_answering(environment)
                # Ready is when the applications answered (the probes are given the
                # Environment, so it exists before they run).
                environment._details = environment.details.model_copy(
                    update={"ready_seconds": round(time.monotonic() - self._started, 3)}
                )
        except BaseException as error:
            self._abort(error)
            raise
        phases.end()
        self.environment = environment
        return self.environment

    def _choose_namespace(self, connecting: Future[Cluster]) -> str:
        """The namespace to bring the environment up in: the strategy's, or a new one."""
        if type(self.strategy) is NewNamespace:  # its subclasses (reuse, pool...) choose
            adopted = None
        else:
            with self.phases.phase("reuse"):
                adopted = self.strategy.choose(connecting)
        if adopted is None:
            return naming.namespace_name(self.settings.namespace_prefix, self.spec.name)
        self._adopted = True
        self._applied = adopted.ready
        if adopted.ready:
            self.phases.mode = "pooled"
        else:
            self.phases.mode = "reused" if self.strategy.owns_namespace else "existing"
        self._adopted_lease = adopted.lease
        self.secrets = adopted.secrets
        self.render_session_id = adopted.session_id
        return adopted.namespace

    def _drop_unused_lease(self) -> None:
        """Bad input found after the strategy took a Lease in a namespace not owned (which
        it does before rendering): nothing is applied, so nothing of ours may stay there."""
        lease, self._adopted_lease = self._adopted_lease, None
        if lease is not None and not self.strategy.owns_namespace:
            lease.finish(None)

    def _prepare_namespace(self, cluster: Cluster, namespace: str) -> None:
        """Make the namespace and its Lease exist: create both, or hold an adopted one's."""
        if self._adopted:
            self._take_over_namespace(cluster, namespace)
        else:
            self._create_namespace(cluster, namespace)

    def _render(self, namespace: str) -> RenderContext:
        context = RenderContext(
            namespace=namespace,
            session_id=self.render_session_id,
            environment=self.spec.name,
            values=self.spec.values,
            values_files=self.spec.values_files,
            secrets=self.secrets or self.session.secrets(),
            image_overrides=self.settings.image_overrides,
        )
        self.objects = render_sources(self.spec.sources, context)
        self._context = context
        return context

    def _check_ready_targets(self) -> None:
        """The Services ``ready=`` probes are forwarded Services of the environment, with
        the ports named: checked once rendered, before anything is created."""
        if not self.spec.ready:
            return
        from kubefixtures.readiness.app import check_targets

        check_targets(
            self.spec.name,
            self.spec.ready,
            {
                service["metadata"]["name"]: {
                    int(port["port"]): port.get("name") for port in tcp_ports(service)
                }
                for service in self._services()
            },
        )

    def _wait_answering(self, environment: Environment) -> None:
        """The ``ready=`` probes, through the forwards, within the environment's deadline."""
        wait_answering(
            environment,
            self.spec,
            self.session,
            deadline=self._deadline,
            started=self._started,
            cancelled=self._cancelled,
        )

    def _resolve(self, cluster: Cluster, namespace: str) -> None:
        """Find the resource of every object (discovery, or the environment's own CRDs)."""
        self._defined = defined_resources(self.objects)
        resources = cluster.resolve(
            [(obj.api_version, obj.kind, obj.location) for obj in self.objects], self._defined
        )
        self.placed = [
            Placed(obj, resource) for obj, resource in zip(self.objects, resources, strict=True)
        ]
        self._main, self._pre_install, self._post_install = split_hooks(self.placed)
        self.cluster_scoped = ClusterScoped(
            cluster,
            [item for item in self.placed if not item.resource.namespaced],
            labels=self._namespace_labels(),
            session_id=self.session.session_id,
            namespace=namespace,
        )

    def _namespace_labels(self) -> dict[str, str]:
        return {
            **naming.namespace_labels(self.session.session_id, self.spec.name),
            **self.strategy.labels(),
        }

    def _create_namespace(self, cluster: Cluster, namespace: str) -> None:
        labels = self._namespace_labels()
        self.namespace = namespace
        cluster.create_namespace(namespace, labels)
        self._created = True
        # Before anything is applied: a session killed from here on leaves a namespace whose
        # lease expires, and the operator (or `kubefixtures gc`) reaps it.
        from kubefixtures.leases.renewal import SessionLease

        self.lease = SessionLease(
            cluster,
            namespace,
            holder_identity(self.session.session_id),
            self.settings.lease_duration,
            labels=labels,
            warn=self.session.reporter.write_line,
        )
        self.lease.create()
        self.lease.start()

    def _take_over_namespace(self, cluster: Cluster, namespace: str) -> None:
        """An adopted namespace: this session holds (and renews) its Lease from now on."""
        from kubefixtures.leases.renewal import SessionLease

        self.namespace = namespace
        self._created = True
        lease = self._adopted_lease
        if lease is None:
            taken = SessionLease(
                cluster,
                namespace,
                holder_identity(self.session.session_id),
                self.settings.lease_duration,
                warn=self.session.reporter.write_line,
            )
            taken.take_over()
            lease = taken
        self.lease = lease
        lease.start()

    def _apply(self, cluster: Cluster) -> None:
        """CRDs (until Established), other cluster-scoped objects, namespaced objects, and
        the custom resources of the environment's own CRDs last."""
        assert self.namespace is not None
        assert self.cluster_scoped is not None
        crds, cluster_scoped, namespaced, custom = in_apply_order(self._main, self._defined)
        self.strategy.before_apply(cluster, self.namespace, self.placed)
        self.cluster_scoped.claim(crds, self._deadline)
        self._run_hooks(cluster, self._pre_install)
        self.cluster_scoped.claim(cluster_scoped, self._deadline)
        items = [(item.resource, item.obj.manifest, item.obj.location) for item in namespaced]
        context = self._context
        # Read back by reuse only; a namespace not owned may hold several environments.
        if context is not None and context.used_secrets and self.strategy.owns_namespace:
            from kubefixtures.kube.client import SECRET

            values = {name: context.secrets.get(name) for name in sorted(context.used_secrets)}
            stored = stored_secrets_manifest(values)
            items.append((SECRET, stored, f"(kubefixtures: Secret {SECRETS_NAME})"))
        cluster.apply_all(items, self.namespace, self._deadline)
        # Custom resources of a cluster-scoped kind are owned like any cluster-scoped object.
        self.cluster_scoped.claim(
            [item for item in custom if not item.resource.namespaced], self._deadline
        )
        cluster.apply_all(
            [
                (item.resource, item.obj.manifest, item.obj.location)
                for item in custom
                if item.resource.namespaced
            ],
            self.namespace,
            self._deadline,
        )

    def _masked(self, error: KubefixturesError) -> KubefixturesError:
        """The error with this environment's secrets masked (it may quote an object, or what
        the cluster says of one)."""
        context = self._context
        generated = [context.secrets.get(name) for name in context.used_secrets] if context else []
        return masked_error(error, [obj.manifest for obj in self.objects], generated)

    def _run_hooks(self, cluster: Cluster, hooks: Sequence[Hook]) -> None:
        """Helm hooks of one phase, one after the other, each waited for."""
        assert self.namespace is not None
        assert self.cluster_scoped is not None
        for hook in hooks:
            if hook.placed.resource.namespaced:
                obj = hook.placed.obj
                cluster.apply(
                    hook.placed.resource, obj.manifest, self.namespace, self._deadline, obj.location
                )
            else:
                self.cluster_scoped.claim([hook.placed], self._deadline)
            wait_hook(cluster, hook, self.namespace, self._deadline)

    def _wait_ready(self, cluster: Cluster) -> None:
        """Wait until every namespaced object of the environment is ready, within its deadline."""
        from kubefixtures.readiness.wait import wait_ready  # lazy: kube with it

        assert self.namespace is not None
        wait_ready(
            cluster,
            self.namespace,
            self._tracked(),
            deadline=self._deadline,
            environment=self.spec.name,
            started=self._started,
            cancelled=self._cancelled,
        )

    def _tracked(self) -> list[Tracked]:
        """The objects whose readiness is waited for: the namespaced ones but Helm hooks."""
        from kubefixtures.readiness.wait import Tracked

        return [
            Tracked(item.resource, item.obj.name) for item in self._main if item.resource.namespaced
        ]

    def _ready_at_once(self, cluster: Cluster) -> Listed | None:
        """A pool's spare was ready when it became one: one list per kind confirms it (a
        watch is for objects still on their way, a list and a watch per kind), and gives the
        forwards their Services and EndpointSlices. None: not ready after all, go and wait."""
        from kubefixtures.readiness.wait import ready_now

        assert self.namespace is not None
        return ready_now(cluster, self.namespace, self._tracked()) if self._applied else None

    def _wait_ready_and_forward(self, cluster: Cluster) -> dict[str, ServiceDetails]:
        """Wait for readiness while the forwards start: each waits for ready endpoints of its
        own, so that forwarding costs nothing once the pods are ready. A pool's spare is
        looked at once, then forwarded from what that look listed."""
        assert self.namespace is not None
        services = {service["metadata"]["name"]: service for service in self._services()}
        keys = [
            (name, int(port["port"])) for name, service in services.items()
            for port in tcp_ports(service)
        ]  # fmt: skip
        pool = ThreadPoolExecutor(
            max_workers=max(1, min(len(keys), 16)), thread_name_prefix="kubefixtures-forward"
        )
        clock = self.phases.clock
        started = clock.monotonic()  # the wait and the forwards start together
        forwarded: list[float] = []  # when each forward started serving
        listed = self._ready_at_once(cluster)
        if listed is not None:
            self.phases.record("ready", started, clock.monotonic())

        def start_forward(service: str, port: int) -> PortForward:
            forward = self._start_forward(cluster, service, port, _known(listed, service))
            forwarded.append(clock.monotonic())
            return forward

        starting = {key: pool.submit(start_forward, *key) for key in keys}
        pool.submit(_import_details)  # pydantic, for the details at the end: while pods start
        try:
            if listed is None:
                try:
                    self._wait_ready(cluster)
                finally:
                    self.phases.record("ready", started, clock.monotonic())
            forwards: dict[str, dict[int, PortForward]] = {}
            for (name, port), future in starting.items():
                forwards.setdefault(name, {})[port] = future.result()
            for name, ports in forwards.items():
                for port in ports_to_serve_locally(ports, len(ports)):
                    ports[port] = self._serve_locally(cluster, name, port, ports[port])
            if forwarded:
                self.phases.record("forward", started, max(forwarded))
        except BaseException:
            self._stop_forwards()  # cancels the starts still waiting for their pods
            raise
        finally:
            pool.shutdown(wait=True)
        return {
            name: service_details(
                service,
                self.namespace,
                {port: forward.local_port for port, forward in forwards[name].items()},
                {port: forward.route for port, forward in forwards[name].items()},
                host=next(iter(forwards[name].values())).host,
            )
            for name, service in services.items()
        }

    def _services(self) -> list[Mapping[str, Any]]:
        return [
            obj.manifest
            for obj in self.objects
            if obj.kind == "Service"
            and obj.api_version == "v1"
            and (obj.manifest.get("spec") or {}).get("type") != "ExternalName"
            and tcp_ports(obj.manifest)
        ]

    def _start_forward(
        self,
        cluster: Cluster,
        service: str,
        port: int,
        known: KnownEndpoints | None = None,
        *,
        local: bool = False,
    ) -> PortForward:
        from kubefixtures.kube.portforward import ServicePortForward  # lazy, like all of kube

        assert self.namespace is not None
        # A little past the deadline: at the deadline the wait fails with the better message
        # (what is not ready, and why) and cancels this forward's start.
        remaining = max(self._deadline - time.monotonic(), 1.0) + _FORWARD_GRACE
        forward = ServicePortForward(
            cluster.config,
            self.namespace,
            service,
            port,
            ready_timeout=remaining,
            route=self.session.settings.route,
            address="local" if local else self.session.settings.direct_address,
            known=known,
            relay=self.session.settings.relay,
        )
        with self._forwards_lock:
            if self._forwards_stopped:  # the setup failed while this thread got here
                raise KubefixturesError(f"forwarding {service}:{port} was cancelled")
            self.forwards.append(forward)  # so that teardown stops (or cancels) it
        forward.start()
        return forward

    def _serve_locally(
        self, cluster: Cluster, service: str, port: int, forward: PortForward
    ) -> PortForward:
        """``forward``, served at the Service's ClusterIP, replaced by one on 127.0.0.1."""
        replacement = self._start_forward(cluster, service, port, local=True)
        with self._forwards_lock:
            if forward in self.forwards:
                self.forwards.remove(forward)
        forward.stop()
        return replacement

    def _stop_forwards(self) -> None:
        """Stop every forward, cancelling those still starting; no new one starts after."""
        with self._forwards_lock:
            forwards, self.forwards = self.forwards, []
            self._forwards_stopped = True
        for forward in forwards:
            try:
                forward.stop()
            except Exception as error:  # one stuck forward must not keep the namespace alive
                self.session.reporter.write_line(f"kubefixtures: stopping a port-forward: {error}")

    def _details(
        self, context: RenderContext, services: dict[str, ServiceDetails]
    ) -> EnvironmentDetails:
        from pydantic import SecretStr

        from kubefixtures.details import EnvironmentDetails, ObjectRef

        assert self.namespace is not None
        assert self.cluster is not None
        return EnvironmentDetails(
            name=self.spec.name,
            namespace=self.namespace,
            context=self.cluster.context,
            session_id=self.session.session_id,
            services=services,
            objects=[
                ObjectRef(
                    api_version=item.obj.api_version,
                    kind=item.obj.kind,
                    name=item.obj.name,
                    namespace=self.namespace if item.resource.namespaced else None,
                )
                for item in self.placed
            ],
            secrets={
                name: SecretStr(context.secrets.get(name)) for name in sorted(context.used_secrets)
            },
            ready_seconds=round(time.monotonic() - self._started, 3),
            phases=self.phases.seconds(),
        )

    def _manifests(self) -> list[dict[str, Any]]:
        return [
            {
                **item.obj.manifest,
                "metadata": {**item.obj.manifest["metadata"], "namespace": self.namespace},
            }
            if item.resource.namespaced
            else item.obj.manifest
            for item in self.placed
        ]

    def report_ready(self) -> None:
        """Write the environment's line to the terminal: namespace, objects, time, services."""
        assert self.environment is not None
        from kubefixtures.report.collect import describe_services

        details = self.environment.details
        services = describe_services(details.services)
        self.session.reporter.write_line(
            f"kubefixtures: environment {self.spec.name!r} ready in {details.ready_seconds:.1f} s: "
            f"namespace {details.namespace}, {len(details.objects)} objects"
            + (f", {services}" if services else "")
        )
        note = self.strategy.ready_line(details.namespace)
        if note is not None:
            self.session.reporter.write_line(note)

    # --- while tests run ------------------------------------------------------------------------

    def note_failure(self, test: str) -> None:
        """A test using the environment failed (the fixture tracks failures itself)."""

    def inspection(self) -> Inspection | None:
        """Where diagnostics look, once the environment is up (None before, or when there
        is no namespace to look at)."""
        if self.cluster is None or self.namespace is None or self.environment is None:
            return None
        return inspect(self.cluster, self.environment, self.spec.name)

    # --- teardown ---------------------------------------------------------------------------

    def cancel(self) -> None:
        """Make a setup running in another thread give up soon (and clean up after itself)."""
        self._cancelled.set()

    def _abort(self, error: BaseException) -> None:
        """Undo a setup that failed part-way: keep the namespace only if asked to (and not
        when the setup was cancelled: nobody will look at it)."""
        self._failed = True
        keep = (
            self.settings.keep_on_failure
            and isinstance(error, KubefixturesError)
            and not self._cancelled.is_set()
        )
        try:
            self.teardown(keep=keep, why="its setup failed")
        except KubefixturesError as cleanup_error:
            # The setup error matters more; say what may be left behind, and go on.
            self.session.reporter.write_line(
                f"kubefixtures: cleanup after a failed setup: {cleanup_error}"
            )

    def teardown(self, *, keep: bool = False, why: str = "") -> None:
        """Stop the forwards, then delete the namespace (or keep it and say how to look)."""
        self._stop_forwards()
        if not self._created or self.cluster is None or self.namespace is None:
            return
        if keep:
            lines = self._kept_message(why)
            self.session.reporter.kept(self.namespace, self.spec.name, why, lines)
            self._finish_lease(keep_for=self.settings.keep_for, because=why or "kept")
            return
        if not self.strategy.owns_namespace:
            self._remove_objects()
            return
        left_up = (
            None if self._failed else self.strategy.leave_up(self.namespace, self.cluster.context)
        )
        if left_up is not None:
            keep_for, line = left_up
            lease, self.lease = self.lease, None
            ended = lease.end(keep_for) if lease is not None else None
            if ended is not None and ended.problem and ended.line:  # marking it failed: why
                self.session.reporter.summary(ended.line)
            self.session.reporter.summary(line)
            return
        self._created = False
        self._release_cluster_scoped()
        lease, self.lease = self.lease, None
        trouble = lease.finish(None) if lease is not None else None
        if trouble:
            self.session.reporter.summary(trouble)
        # A cancelled session (SIGTERM...) asks for the deletion and goes: it has seconds.
        wait = self.settings.wait_for_delete and cancel.requested() is None
        self.cluster.delete_namespace(self.namespace, wait=wait)
        if lease is not None:
            lease.settle()  # the deletion is requested: nothing left to release

    def _remove_objects(self) -> None:
        """Teardown in a namespace not owned: the environment's cluster-scoped and
        namespaced objects go, the namespace stays; the Lease goes with the last
        environment of the session in it."""
        assert self.cluster is not None
        assert self.namespace is not None
        self._created = False
        self._release_cluster_scoped()
        try:
            problems = self.strategy.remove(self.cluster, self.namespace, self.placed)
        except KubefixturesError as error:
            problems = [f"kubefixtures: deleting the objects of {self.spec.name!r}: {error}"]
        for line in problems:
            self.session.reporter.summary(line)
        lease, self.lease = self.lease, None
        trouble = lease.finish(None) if lease is not None else None
        if trouble:
            self.session.reporter.summary(trouble)

    def _release_cluster_scoped(self) -> None:
        """Leave the owners of the cluster-scoped objects (webhook configurations first),
        deleting those no other live session uses, before the namespace goes. A failure
        is said and left to the reapers: the namespace is deleted all the same."""
        if not self.cluster_scoped:
            return
        try:
            self.cluster_scoped.release()
        except KubefixturesError as error:
            self.session.reporter.write_line(
                f"kubefixtures: releasing the cluster-scoped objects of {self.spec.name!r}: "
                f"{error}; the operator or `kubefixtures gc` removes them once the lease expires"
            )

    def release(self, keep_for: float) -> str | None:
        """Stop the forwards and the Lease's renewals, and leave the namespace up for
        ``keep_for`` seconds (``kubefixtures up`` on exit; reuse between runs). Returns the
        Lease's line (when it is kept until), or None when there was nothing to leave."""
        self._stop_forwards()
        lease, self.lease = self.lease, None
        return lease.finish(keep_for) if lease is not None else None

    def _finish_lease(self, keep_for: float | None, because: str | None = None) -> None:
        lease, self.lease = self.lease, None
        line = lease.finish(keep_for, because) if lease is not None else None
        if line:
            self.session.reporter.summary(line)

    def _kept_message(self, why: str) -> list[str]:
        assert self.namespace is not None
        assert self.cluster is not None
        lines = self.strategy.kept_lines(self.namespace, why, self.cluster.context)
        if lines is not None:
            return lines
        return kept_namespace_lines(
            self.namespace,
            self.spec.name,
            why,
            context=self.cluster.context,
            kubeconfig=self.settings.kubeconfig,
            pods=_pod_names(self.cluster, self.namespace),
        )


def _pod_names(cluster: Cluster, namespace: str) -> list[str]:
    """The namespace's pods (for `kubectl logs` lines); none when they cannot be listed."""
    try:
        pods = cluster.pods(namespace)
    except KubefixturesError:
        return []
    return sorted(str(pod["metadata"]["name"]) for pod in pods)


def _known(listed: Listed | None, service: str) -> KnownEndpoints | None:
    """The Service ``service`` and its EndpointSlices, from what was listed (if anything)."""
    if listed is None:
        return None
    from kubefixtures.kube.portforward import KnownEndpoints

    return KnownEndpoints.find(
        service,
        listed.items.get("Service", []),
        listed.items.get("EndpointSlice", []),
        listed.versions.get("EndpointSlice", ""),
    )


def _import_details() -> None:
    import kubefixtures.details  # noqa: F401 - imported for its side effect: loaded
