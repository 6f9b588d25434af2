"""State shared by every environment of one pytest session.

One session id, one set of generated secrets, one connection per cluster, and the list of
environments alive right now (so that a failing test can mark the ones it used, for
keep-on-failure). It lives in ``config.stash``; the plugin creates it in pytest_configure.
Importing this module must stay cheap: heavy modules are imported on first use.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import pytest

from kubefixtures.errors import KubefixturesError
from kubefixtures.naming import new_session_id
from kubefixtures.report.collect import Collector
from kubefixtures.settings import Settings

if TYPE_CHECKING:
    from kubefixtures.details import Environment
    from kubefixtures.kube import Cluster
    from kubefixtures.kube.portforward import PrestartedRelay
    from kubefixtures.provisioning.base import Provisioning, SessionView
    from kubefixtures.provisioning.pooled import SparePool
    from kubefixtures.rendering import Secrets

T = TypeVar("T")

__all__ = ["SESSION_KEY", "AliveEnvironment", "SessionState", "session_state"]


class AliveEnvironment:
    """An environment alive in this session, as far as failure tracking is concerned."""

    def __init__(self, fixture_name: str, provisioning: Provisioning | None = None) -> None:
        self.fixture_name = fixture_name
        self.provisioning = provisioning  # where diagnostics look; told of each failure
        self.failed_tests: list[str] = []


class SessionState:
    def __init__(self, settings: Settings, write_line: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.session_id = new_session_id()
        self._write_line = write_line
        self._lock = threading.Lock()
        self._cluster_lock = threading.Lock()
        self._pending: list[str] = []  # lines written from other threads, not shown yet
        self._background: ThreadPoolExecutor | None = None
        self._prestarted: dict[object, tuple[Provisioning, Future[Environment]]] = {}
        self._secrets: Secrets | None = None
        self._pool: SparePool | None = None  # --kubefixtures-pool: made on first use
        self._clusters: dict[tuple[str | None, str | None], Cluster] = {}
        self._closed = False
        self._alive: list[AliveEnvironment] = []
        self._cancel_armed = False
        self._relay: PrestartedRelay | None = None  # the relay process, started early
        self._relay_over = False  # the session let go of it (close): start none
        self.worker_pids: list[int] = []  # pytest-xdist's controller: its workers
        self.summary_lines: list[str] = []  # printed at the end of the run (kept namespaces)
        self.report = Collector()  # environments, phases, outcome: the summary and the report
        self.worker: str | None = None  # this process's xdist worker id, if it is one

    @property
    def secrets(self) -> Secrets:
        with self._lock:
            if self._secrets is None:
                from kubefixtures.rendering import Secrets  # lazy: yaml import

                self._secrets = Secrets()
            return self._secrets

    def cluster(self, context: str | None = None) -> Cluster:
        """The session's connection to the configured cluster (connected and checked once),
        or to ``context`` of the same kubeconfig (an environment from a details file)."""
        key = (self.settings.kubeconfig, self.settings.context)
        # A lock of its own: connecting takes a while, and must not hold up rendering.
        with self._cluster_lock:
            if self._closed:
                # A connection still under way when a setup failed early (a render error
                # does not wait for it) must not outlive the session.
                raise KubefixturesError("the pytest session is over")
            if context is not None and context != self.settings.context:
                known = self._clusters.get(key)
                if known is None or known.context != context:
                    key = (self.settings.kubeconfig, context)
            if key not in self._clusters:
                from kubefixtures.kube import Cluster  # lazy: only sessions with environments

                self._clusters[key] = Cluster.connect(*key, namespace=self.settings.namespace)
            return self._clusters[key]

    def arm_cancel(self) -> None:
        """Release on cancel (kubefixtures.cancel): from now on SIGTERM, SIGINT and SIGHUP
        tear this session's environments down within seconds. Main thread only (else a no-op)."""
        if self._cancel_armed:
            return
        from kubefixtures import cancel

        self._cancel_armed = cancel.install(self.cancelled)

    def cancelled(self, signum: int) -> None:
        """Called from the signal handler: only starts things. Environments coming up in the
        background give up (and delete what they created); xdist workers get the signal too
        (a runner may signal the controller alone), and tear their own environments down."""
        # No lock: the handler runs in the main thread, which may hold it right now. Copies
        # of a dict's values and of a list are atomic under the GIL.
        starting = [lifecycle for lifecycle, _ in list(self._prestarted.values())]
        workers = list(self.worker_pids)
        for lifecycle in starting:
            lifecycle.cancel()
        pool = self._pool
        if pool is not None:
            pool.cancel()
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signum)

    def view(self) -> SessionView:
        """What a provisioning may use of this session."""
        from kubefixtures.provisioning.base import SessionView

        self.arm_cancel()  # the first environment: from here on there is something to release

        return SessionView(
            settings=self.settings,
            session_id=self.session_id,
            cluster=self.cluster,
            secrets=lambda: self.secrets,
            reporter=self,
            pool=self.spare_pool if self.settings.claims_spares else None,
        )

    def spare_pool(self) -> SparePool:
        """The session's pool of spare copies (``--kubefixtures-pool``), made on first use."""
        with self._lock:
            pool = self._pool
        if pool is None:
            from kubefixtures.provisioning.pooled import SparePool

            made = SparePool(self.view())
            with self._lock:
                if self._pool is None:
                    self._pool = made
                pool = self._pool
        return pool

    def finish_pool(self) -> None:
        """The session ends: the pool's copies under way become spares for the next runs."""
        with self._lock:
            pool = self._pool
        if pool is not None:
            pool.finish()

    def summary(self, line: str) -> None:
        """A line for the end of the run (a kept namespace, how to look at it)."""
        with self._lock:
            self.summary_lines.append(line)

    def kept(self, namespace: str, environment: str, why: str, lines: Sequence[str]) -> None:
        """A namespace kept for a person to look at: in the summary, and in the report."""
        for line in lines:
            self.summary(line)
        self.report.kept_namespace(namespace, environment, why, lines, self.worker)

    def record(
        self,
        provisioning: Provisioning,
        scope: str,
        environment: Environment | None,
        error: str | None = None,
    ) -> None:
        """A fixture got its environment (or its setup failed): for the summary and report."""
        self.report.environment(provisioning, scope, environment, error=error, worker=self.worker)

    def write_line(self, line: str) -> None:
        """Show ``line`` on the terminal: now from the main thread; from another thread
        (a background setup, a lease renewer) at the next ``flush()`` by the main thread,
        because suspending pytest's output capture is only safe there."""
        with self._lock:
            self._pending.append(line)
        if threading.current_thread() is threading.main_thread():
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
        for line in lines:
            if self._write_line is not None:
                self._write_line(line)
            else:
                print(line, file=sys.stderr)

    # --- failure tracking for keep-on-failure ------------------------------------------------

    def track(
        self, fixture_name: str, provisioning: Provisioning | None = None
    ) -> AliveEnvironment:
        tracked = AliveEnvironment(fixture_name, provisioning)
        with self._lock:
            self._alive.append(tracked)
        return tracked

    def alive(self, fixture_names: Iterable[str]) -> list[AliveEnvironment]:
        """The alive environments among ``fixture_names`` (a test's fixtures)."""
        used = set(fixture_names)
        with self._lock:
            return [tracked for tracked in self._alive if tracked.fixture_name in used]

    def untrack(self, tracked: AliveEnvironment) -> None:
        with self._lock:
            if tracked in self._alive:
                self._alive.remove(tracked)

    def record_failure(self, nodeid: str, fixture_names: Iterable[str]) -> None:
        """A test failed: every alive environment it used keeps a note of it."""
        used = set(fixture_names)
        with self._lock:
            hit = [tracked for tracked in self._alive if tracked.fixture_name in used]
            for tracked in hit:
                tracked.failed_tests.append(nodeid)
        for tracked in hit:  # outside the lock: a shared environment writes a file
            if tracked.provisioning is not None:
                try:
                    tracked.provisioning.note_failure(nodeid)
                except Exception as error:  # keep-on-failure is best effort, the report not
                    self.write_line(f"kubefixtures: recording the failure of {nodeid}: {error}")

    # --- background work: connect early, bring environments up before they are needed ---------

    def _submit(self, work: Callable[[], T]) -> Future[T]:
        with self._lock:
            if self._background is None:
                self._background = ThreadPoolExecutor(thread_name_prefix="kubefixtures-prestart")
            return self._background.submit(work)

    def warm_up(self) -> None:
        """Start connecting now, in the background (errors surface when a fixture connects)."""
        self._submit(self._connect_quietly)

    def _connect_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.cluster()

    def start_relay(self) -> None:
        """With ``--kubefixtures-relay=process`` and a route that may be direct, start the
        relay process now (pytest is still collecting) rather than on the first direct
        forward, where its start-up would delay the first connections; it lives until
        ``close``. Never fails (a relay that cannot start is a warning; the forwards then
        relay in this process)."""
        if self.settings.relay != "process" or self.settings.route == "forward":
            return
        from kubefixtures.kube.portforward import prestart_relay

        relay: PrestartedRelay | None = prestart_relay()
        with self._lock:
            if not self._relay_over:
                self._relay, relay = relay, None
        if relay is not None:  # the session closed meanwhile
            relay.release()

    def prestart(self, key: object, lifecycle: Provisioning) -> None:
        """Start ``lifecycle.setup()`` in the background; ``claim(key)`` collects it later."""
        with self._lock:
            if key in self._prestarted:
                return
        future = self._submit(lifecycle.setup)
        with self._lock:
            self._prestarted[key] = (lifecycle, future)

    def claim(self, key: object) -> tuple[Provisioning, Future[Environment]] | None:
        with self._lock:
            return self._prestarted.pop(key, None)

    def abandon(self, lifecycle: Provisioning, future: Future[Environment]) -> None:
        """A claimed environment whose fixture was interrupted while it came up: tear it
        down with the unclaimed ones (``release_unclaimed``)."""
        lifecycle.cancel()
        with self._lock:
            self._prestarted[object()] = (lifecycle, future)

    def release_unclaimed(self) -> None:
        """Tear down environments brought up in advance that no test claimed (-x, Ctrl-C;
        under xdist, those this worker brought up for the others).
        A cancelled session (SIGTERM...) waits for them only until its time to release is
        up: the Leases of those still coming up are released instead."""
        from kubefixtures import cancel

        with self._lock:
            unclaimed, self._prestarted = list(self._prestarted.values()), {}
        for lifecycle, _ in unclaimed:
            lifecycle.cancel()  # do not wait for readiness nobody needs
        for lifecycle, future in unclaimed:
            try:
                environment = future.result(
                    timeout=cancel.remaining() if cancel.requested() else None
                )
            except TimeoutError:
                continue  # still applying: its Lease is released (kubefixtures.cancel)
            except Exception:  # its setup cleaned up after itself
                continue
            # It came up all the same: in the report, beside the ones the tests used (an
            # xdist worker brings up environments that only other workers use).
            self.record(lifecycle, "session", environment)
            try:
                lifecycle.teardown()
            except Exception as error:
                self.write_line(f"kubefixtures: tearing down {lifecycle.spec.name!r}: {error}")

    def close(self) -> None:
        self.release_unclaimed()
        self.finish_pool()
        with self._lock:
            background, self._background = self._background, None
        if background is not None:
            from kubefixtures import cancel

            # A cancelled session does not wait for setups still under way (see above).
            background.shutdown(wait=cancel.requested() is None, cancel_futures=True)
        # Under the connecting lock: a connection under way finishes first, then is closed.
        with self._cluster_lock:
            self._closed = True
            clusters, self._clusters = list(self._clusters.values()), {}
        for cluster in clusters:
            cluster.close()
        with self._lock:  # after the environments: their forwards are stopped by now
            self._relay_over = True
            relay, self._relay = self._relay, None
        if relay is not None:
            relay.release()


SESSION_KEY = pytest.StashKey[SessionState]()


def session_state(config: pytest.Config) -> SessionState:
    """The session's state; created on demand for configs the plugin did not configure."""
    state = config.stash.get(SESSION_KEY, None)
    if state is None:
        state = SessionState(Settings.from_config(config))
        config.stash[SESSION_KEY] = state
    return state
