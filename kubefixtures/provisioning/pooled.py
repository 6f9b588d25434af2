"""``--kubefixtures-pool=N``: spare copies of an environment kept ready, claimed at once.

An environment's cost is mostly the cluster's (pods scheduled, images, readiness), which no
tool shortens; the pool pays it before the environment is asked for. For each environment a
session uses, it keeps N spare copies ready, each in a namespace of its own, rendered with
secrets of its own, applied and waited for, but never forwarded nor used. They are keyed by
the digest ``--kubefixtures-reuse`` computes (kubefixtures.provisioning.reused.reuse_key):
other sources, values or image overrides, another key, and a stale spare is never claimed.

- Claiming (``ClaimSpare``, the namespace strategy): list this user's ready spares of the
  key (one list of Leases), take the oldest usable one over by a compare-and-swap of its
  Lease (kubefixtures.leases.pool), and bring it up as an adopted namespace that needs no
  apply: only the wait (the pods are ready already) and the forwards. Another session or
  xdist worker that raced for the same copy gets a 409 and tries the next. No spare, or an
  error listing them: a new namespace, as without a pool. A copy this session is still
  bringing up is waited for rather than started again.
- Refilling (``SparePool``): after each claim (once the claimant's environment is up: copies
  coming up meanwhile would slow its forwards down), in the background, count the key's members
  (ready spares and copies coming up) and start the missing ones; retire those older than
  ``--kubefixtures-pool-max-age`` (or whose protection is about to end). A run whose
  narrower-scoped environments will claim more than N copies (counted at collection,
  ``prepare``) has that many started, up to ``_MOST_AT_ONCE`` more than N. Copies come up
  ``_MOST_AT_ONCE`` at a time, one at a time while the ready spares cover every claim the
  run's tests have still to make (the copies are then for later runs: the tests keep the
  CPU).
- A ready spare's Lease is no longer renewed: keep-until (``--kubefixtures-keep-for`` from
  the moment it was ready) protects it, and reapers delete it at once after. A claimed copy
  is an ordinary session namespace. At the end of the session, copies under way are waited
  for (a cancelled session stops them).

Environments with cluster-scoped objects or Helm hooks are not pooled: their owners and
hooks belong to one session (they come up as without a pool, and the session says so once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from kubefixtures import cancel, naming
from kubefixtures.errors import KubefixturesError
from kubefixtures.provisioning.fresh import Adopted, FreshProvisioning, NewNamespace
from kubefixtures.rendering import Secrets

if TYPE_CHECKING:
    from kubefixtures.details import ServiceDetails
    from kubefixtures.kube import Cluster
    from kubefixtures.provisioning.base import EnvironmentSpec, SessionView

__all__ = ["ClaimSpare", "NotPoolable", "SparePool", "SpareProvisioning", "retire_spare"]

# A spare whose protection ends sooner than this is left to the reapers rather than claimed:
# one of them may be deleting it right now.
_PROTECTION_MARGIN = timedelta(seconds=60)

# Copies one session brings up at the same time. On the local cluster (2 cores) ready copies
# come at 0.65 per second one at a time and about 1 per second eight at a time
# (benchmarks/copy_rate.py): more would only load the node (and its pods count against the
# kubelet's maxPods). Also how far ahead of its claims a suite's copies start.
_MOST_AT_ONCE = 8


class NotPoolable(KubefixturesError):
    """The environment has what one session owns: cluster-scoped objects, Helm hooks."""


class ClaimSpare(NewNamespace):
    """The namespace strategy of a session with a pool: a spare copy if one is ready, else a
    new namespace; either way, the pool is refilled in the background."""

    def __init__(self, spec: EnvironmentSpec, pool: SparePool) -> None:
        self.spec = spec
        self.pool = pool
        self.claimed: str | None = None
        self._key: str | None = None
        self._cluster: Cluster | None = None

    def labels(self) -> Mapping[str, str]:
        return {}

    def choose(self, connecting: Future[Cluster]) -> Adopted | None:
        from kubefixtures.provisioning.reused import reuse_key

        self._key = reuse_key(self.spec, self.pool.settings)  # while the cluster answers
        self._cluster = connecting.result()
        adopted = self.pool.claim(self._key, self._cluster, self.spec.name)
        self.claimed = adopted.namespace if adopted is not None else None
        return adopted

    def settled(self) -> None:
        if self._key is not None and self._cluster is not None:
            self.pool.refill(self.spec, self._key, self._cluster)

    def ready_line(self, namespace: str) -> str | None:
        if self.claimed != namespace:
            return None
        flag = "--kubefixtures-pool" if self.pool.size else "--kubefixtures-pool-claim"
        return (
            f"kubefixtures: environment {self.spec.name!r} claimed namespace {namespace}, a "
            f"spare copy from the pool ({flag})"
        )

    def leave_up(self, namespace: str, context: str | None) -> tuple[float, str] | None:
        return None  # a claimed copy is used: it goes like any session namespace


class _NewSpare(NewNamespace):
    """The namespace strategy of a spare: new, labelled as a pool member coming up."""

    def __init__(self, key: str, labels: Mapping[str, str] | None = None) -> None:
        self.key = key
        self.extra = dict(labels or {})

    def labels(self) -> Mapping[str, str]:
        from kubefixtures.leases.pool import POOL_KEY_LABEL, POOL_LABEL, STARTING

        return {**self.extra, POOL_KEY_LABEL: self.key, POOL_LABEL: STARTING}


class SpareProvisioning(FreshProvisioning):
    """One spare copy: rendered with secrets of its own, applied and waited for, never
    forwarded; ``mark_spare`` then hands it to the pool. ``labels`` are added to its
    namespace's and Lease's (the operator's: which Pool it is for, whose user it serves)."""

    def __init__(
        self,
        spec: EnvironmentSpec,
        session: SessionView,
        key: str,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(spec, session, _NewSpare(key, labels))
        self.secrets = Secrets()  # per copy: no two copies share a password

    def _resolve(self, cluster: Cluster, namespace: str) -> None:
        super()._resolve(cluster, namespace)
        # Before the namespace exists: nothing to clean up.
        owned = [item for item in self.placed if not item.resource.namespaced]
        if owned or self._pre_install or self._post_install:
            what = "cluster-scoped objects" if owned else "Helm hooks"
            raise NotPoolable(f"it has {what}, which belong to one session")

    def _wait_ready_and_forward(self, cluster: Cluster) -> dict[str, ServiceDetails]:
        self._wait_ready(cluster)
        return {}  # whoever claims the copy forwards it

    def mark_spare(self) -> None:
        """Ready: label the namespace a spare, then its Lease (what claimants look for),
        which this session stops renewing: keep-until protects it from now on."""
        from kubefixtures.kube.client import NAMESPACE
        from kubefixtures.leases.pool import POOL_LABEL, SPARE, spare_metadata

        assert self.cluster is not None
        assert self.namespace is not None
        assert self.lease is not None
        # The namespace first: a claimant removes this label right after the Lease's.
        patch = {"metadata": {"labels": {POOL_LABEL: SPARE}}}
        self.cluster.merge_patch(NAMESPACE, None, self.namespace, patch)
        now = self.cluster.server_clock.wall()
        lease, self.lease = self.lease, None
        from kubefixtures.leases.renewal import SessionLease

        assert isinstance(lease, SessionLease)  # a copy of its own: never a share of one
        lease.hand_over(spare_metadata(now + timedelta(seconds=self.settings.keep_for), now))


class SparePool:
    """The spare copies one session claims and maintains, per environment key."""

    def __init__(self, session: SessionView) -> None:
        self.session = session
        self.settings = session.settings
        self.size = session.settings.pool
        labels = naming.namespace_labels(session.session_id, "pool")
        self.user = labels.get(naming.USER_LABEL)
        self._lock = threading.Lock()
        # One refill at a time: two would both count the same missing copies.
        self._refilling = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kubefixtures-pool")
        # Copies wait in _paced for their turn to come up: how many at once, see _most_at_once.
        self._making = ThreadPoolExecutor(
            max_workers=_MOST_AT_ONCE, thread_name_prefix="kubefixtures-spare"
        )
        self._turns = threading.Condition(self._lock)
        self._coming_up = 0
        # Per key: the claims this session's collected tests will make (narrower-scoped
        # environments: one per test, module...), those made so far, and the ready spares
        # as last counted (listed by a refill, plus those made, minus those claimed since).
        self._uses: dict[str, int] = {}
        self._claimed: dict[str, int] = {}
        self._ready: dict[str, int] = {}
        # Per key: the spare claimed ahead for this session's next claim (while a test runs,
        # when its tests have claims still to make), with the connection that claimed it.
        self._ahead: dict[str, tuple[Future[Adopted | None], Cluster]] = {}
        self._starting: dict[str, list[tuple[SpareProvisioning, Future[bool]]]] = {}
        self._unpoolable: set[str] = set()
        self._said: set[str] = set()
        self._made = 0
        self._failures: dict[str, list[str]] = {}  # environment name -> why its copies failed
        # environment name -> its claims, and those that found no spare
        self._claims: dict[str, int] = {}
        self._misses: dict[str, int] = {}
        self._waits: dict[str, tuple[int, float]] = {}  # claims that waited for a copy
        # The session ends: no refill is asked for any more, but those asked for already
        # run and start their copies (skipping them left the pool a copy short: it ran dry).
        self._closed = False
        self._stopped = False  # cancelled (a signal): no copy starts any more

    def prepare(self, spec: EnvironmentSpec, uses: int = 0) -> None:
        """Start the spare copies of ``spec`` now, in the background (before any claim):
        with ``uses``, the number of claims this session's tests will make, enough for
        them too (up to ``_MOST_AT_ONCE`` ahead of the claims), not only the pool's size."""

        def refill() -> None:
            from kubefixtures.provisioning.reused import reuse_key

            try:
                key = reuse_key(spec, self.settings)
                cluster = self.session.cluster(None)
            except KubefixturesError:
                return  # the environment's own setup says what is wrong
            with self._lock:
                self._uses[key] = self._uses.get(key, 0) + uses
            self._refill(spec, key, cluster)

        with self._lock:
            if not self._closed:
                self._refilling.submit(refill)

    # --- claiming --------------------------------------------------------------------------

    def claim(self, key: str, cluster: Cluster, name: str) -> Adopted | None:
        """A ready spare of ``key`` (environment ``name``), now this session's (None: there
        is none). The caller then asks for a ``refill``, once its environment is up."""
        with self._turns:
            self._claimed[key] = self._claimed.get(key, 0) + 1
            ahead, _ = self._ahead.pop(key, (None, None))
        adopted = _outcome(ahead) if ahead is not None else None
        if adopted is None:
            adopted = self._claim_ready(key, cluster)
            if adopted is not None:
                with self._turns:  # (one claimed ahead was counted then)
                    self._ready[key] = max(self._ready.get(key, 0) - 1, 0)
                    self._turns.notify_all()
        waited = 0.0
        if adopted is None:
            with self._turns:
                self._ready[key] = 0  # none left: the copies coming up hurry (_most_at_once)
                self._turns.notify_all()
            started = time.monotonic()
            if self._refilled() and self._wait_for_own(key):
                adopted = self._claim_ready(key, cluster)
            waited = time.monotonic() - started
        self.counted(name, adopted is not None, waited)
        return adopted

    def refill(self, spec: EnvironmentSpec, key: str, cluster: Cluster) -> None:
        """Start, in the background, the copies of ``key`` the pool lacks (none with
        ``--kubefixtures-pool-claim`` alone: others keep the pool)."""
        with self._lock:
            if self._closed:
                return
            if self._remaining(key) and key not in self._ahead:
                # Before the refill: the next test's claim matters more than later runs'.
                ahead = self._refilling.submit(self._claim_ahead, key, cluster)
                self._ahead[key] = (ahead, cluster)
            if self.size > 0:
                self._refilling.submit(self._refill, spec, key, cluster)

    def _claim_ahead(self, key: str, cluster: Cluster) -> Adopted | None:
        """Claim a ready spare of ``key`` now, for this session's next claim of it (a test
        still to run): the claim's round trips (list, compare-and-swap, relabel, Secret)
        then happen while the current test runs. Its Lease is renewed from now on; if no
        test comes to claim it, the end of the session deletes it."""
        adopted = self._claim_ready(key, cluster)
        if adopted is not None:
            if adopted.lease is not None:
                adopted.lease.start()
            with self._turns:
                self._ready[key] = max(self._ready.get(key, 0) - 1, 0)
                self._turns.notify_all()
        return adopted

    def _release_ahead(self) -> None:
        """The session ends: a spare claimed ahead for a test that never claimed it (a test
        skipped or deselected at run time, a run stopped by ``-x``) is deleted, as a claimed
        copy is."""
        with self._lock:
            ahead, self._ahead = list(self._ahead.values()), {}
        for future, cluster in ahead:
            adopted = _outcome(future)
            if adopted is None:
                continue
            if adopted.lease is not None:
                adopted.lease.finish(None)
            self._delete_quietly(cluster, adopted.namespace)
            if adopted.lease is not None:
                adopted.lease.settle()

    def counted(self, name: str, claimed: bool, waited: float = 0.0) -> None:
        """One claim's outcome, for the summary: a claim that found no ready spare (the pool
        ran dry, or was never filled), and then waited for a copy coming up or had none, is
        said at the end of the run, never silently."""
        with self._lock:
            self._claims[name] = self._claims.get(name, 0) + 1
            if not claimed:
                self._misses[name] = self._misses.get(name, 0) + 1
            elif waited:
                count, seconds = self._waits.get(name, (0, 0.0))
                self._waits[name] = (count + 1, seconds + waited)

    def _claim_ready(self, key: str, cluster: Cluster) -> Adopted | None:
        from kubefixtures.kube.client import LEASE
        from kubefixtures.leases.pool import spare_selector, spare_since

        try:
            spares = cluster.items(LEASE, None, spare_selector(key, self.user))
        except KubefixturesError as error:
            self._say(f"list:{key}", f"kubefixtures: not claiming from the pool: {error}")
            return None
        now = cluster.server_clock.wall()
        usable = [lease for lease in spares if self._usable(lease, now)]
        usable.sort(key=lambda lease: spare_since(lease) or now)  # the oldest first
        for lease in usable:
            adopted = self._take(cluster, lease)
            if adopted is not None:
                return adopted
        return None

    def _usable(self, lease: Mapping[str, Any], now: datetime) -> bool:
        """A ready spare young enough, and protected long enough to be claimed safely."""
        from kubefixtures.leases.policy import lease_from_object
        from kubefixtures.leases.pool import spare_since

        since = spare_since(lease)
        until = lease_from_object(lease).keep_until
        return (
            since is not None
            and (now - since).total_seconds() <= self.settings.pool_max_age
            and until is not None
            and until - now > _PROTECTION_MARGIN
        )

    def _take(self, cluster: Cluster, lease: Mapping[str, Any]) -> Adopted | None:
        """Claim the spare whose Lease is ``lease`` (as listed): None when another session
        was quicker, or the copy cannot be used (then it is deleted)."""
        from kubefixtures.kube.client import NAMESPACE, SECRET, run_concurrently
        from kubefixtures.kube.errors import Conflict
        from kubefixtures.leases.policy import holder_identity
        from kubefixtures.leases.pool import claim_metadata, namespace_claim_patch
        from kubefixtures.leases.renewal import LeaseTaken, SessionLease
        from kubefixtures.provisioning.reused import KnownSecrets
        from kubefixtures.secrets import SECRETS_NAME, stored_secrets

        metadata = lease.get("metadata") or {}
        namespace = str(metadata.get("namespace") or "")
        claimed = SessionLease(
            cluster,
            namespace,
            holder_identity(self.session.session_id),
            self.settings.lease_duration,
            warn=self.session.reporter.write_line,
        )
        try:
            claimed.take_over(
                expected_version=str(metadata.get("resourceVersion") or ""),
                metadata=claim_metadata(),
            )
        except (LeaseTaken, Conflict):
            return None  # another session claimed it first
        except KubefixturesError as error:
            self.session.reporter.write_line(f"kubefixtures: claiming {namespace}: {error}")
            return None
        try:
            relabelled, secret = run_concurrently(
                [
                    partial(
                        cluster.merge_patch,
                        NAMESPACE,
                        None,
                        namespace,
                        namespace_claim_patch(naming.label_value(self.session.session_id)),
                    ),
                    partial(cluster.get_or_none, SECRET, namespace, SECRETS_NAME),
                ]
            )
            if (relabelled.get("metadata") or {}).get("deletionTimestamp"):
                raise KubefixturesError("it is being deleted")
            secrets = stored_secrets(secret, namespace)
        except KubefixturesError as error:
            # Ours now, and unusable: it goes (a reaper would, once the claim's Lease expired).
            self.session.reporter.write_line(
                f"kubefixtures: not using spare namespace {namespace}: {error}"
            )
            claimed.settle()
            self._delete_quietly(cluster, namespace)
            return None
        labels = metadata.get("labels") or {}
        return Adopted(
            namespace=namespace,
            session_id=str(labels.get(naming.SESSION_LABEL) or self.session.session_id),
            secrets=KnownSecrets(secrets),
            lease=claimed,
            ready=True,
        )

    def _refilled(self) -> bool:
        """Wait for the refills asked for so far (``prepare`` at collection, the last
        claim's): they start the copies ``_wait_for_own`` may then wait for."""
        with self._lock:
            if self._closed:
                return False
            barrier = self._refilling.submit(lambda: None)
        try:
            barrier.result(timeout=self.settings.ready_timeout)
        except TimeoutError:
            return False
        return True

    def _wait_for_own(self, key: str) -> bool:
        """Wait for the first copy of ``key`` this session is bringing up (the next claim
        is then quicker than starting another); False when none is under way."""
        with self._lock:
            futures = [future for _, future in self._starting.get(key, []) if not future.done()]
        if not futures:
            return False
        done, _ = wait(futures, timeout=self.settings.ready_timeout, return_when=FIRST_COMPLETED)
        # A copy that failed to come up (False, or an error) is nothing to claim.
        return any(
            not future.cancelled() and future.exception() is None and future.result()
            for future in done
        )

    # --- refilling -------------------------------------------------------------------------

    def _refill(self, spec: EnvironmentSpec, key: str, cluster: Cluster) -> None:
        """Start the copies that ``key`` lacks, and retire the spares too old to claim."""
        from kubefixtures.kube.client import LEASE
        from kubefixtures.leases.policy import held, lease_from_object
        from kubefixtures.leases.pool import SPARE, pool_state, spare_selector

        with self._lock:
            if self._stopped or key in self._unpoolable:
                return
            own = [copy for copy, future in self._starting.get(key, []) if not future.done()]
        try:
            members = cluster.items(LEASE, None, spare_selector(key, self.user, state=None))
        except KubefixturesError as error:
            self._say(f"list:{key}", f"kubefixtures: not refilling the pool: {error}")
            return
        now = cluster.server_clock.wall()
        listed: set[str] = set()
        counted = 0
        for lease in members:
            metadata = lease.get("metadata") or {}
            listed.add(str(metadata.get("namespace")))
            state = pool_state(metadata.get("labels") or {})
            if state == SPARE and self._usable(lease, now):
                counted += 1
            elif state == SPARE:
                self._retire(cluster, lease)
            elif held(lease_from_object(lease), now):  # coming up, its maintainer alive
                counted += 1
        counted += sum(1 for copy in own if copy.namespace not in listed)
        with self._turns:
            self._ready[key] = sum(
                1
                for lease in members
                if pool_state((lease.get("metadata") or {}).get("labels") or {}) == SPARE
                and self._usable(lease, now)
            )
            wanted = self._wanted(key)
            self._turns.notify_all()
        for _ in range(wanted - counted):
            self._start(spec, key)

    def _remaining(self, key: str) -> int:
        """The claims of ``key`` this session's tests have still to make (0: unknown)."""
        return max(self._uses.get(key, 0) - self._claimed.get(key, 0), 0)

    def _wanted(self, key: str) -> int:
        """How many members (ready spares, copies coming up) ``key`` should have: the pool's
        size, or what this session's tests will still claim, at most ``_MOST_AT_ONCE`` more
        than the size. Called with the lock held."""
        return max(self.size, min(self._remaining(key), self.size + _MOST_AT_ONCE))

    def _most_at_once(self) -> int:
        """How many copies may come up at the same time now. While the ready spares cover
        every claim this session's tests have still to make, the copies are for later runs:
        one at a time, so that they leave the CPU to the tests (eight at once made each claim
        of a 20-test suite 0.3-1.4 s instead of 0.04 s). Otherwise, or once the session ends,
        as many as help (``_MOST_AT_ONCE``). Called with the lock held."""
        waiting = [key for key in self._uses if self._remaining(key)]
        if self._closed or not waiting:
            return _MOST_AT_ONCE
        # A spare claimed ahead is ready for the next of those claims.
        if all(
            self._ready.get(key, 0) + (key in self._ahead) >= self._remaining(key)
            for key in waiting
        ):
            return 1
        return _MOST_AT_ONCE

    def _start(self, spec: EnvironmentSpec, key: str) -> None:
        copy = SpareProvisioning(spec, self.session, key)
        with self._lock:
            if self._stopped:
                return
            future = self._making.submit(self._make, copy, key)
            self._starting.setdefault(key, []).append((copy, future))

    def _make(self, copy: SpareProvisioning, key: str) -> bool:
        with self._turns:
            while self._coming_up >= self._most_at_once() and not self._stopped:
                self._turns.wait(0.5)  # also woken by claims, refills and the session's end
            self._coming_up += 1
        try:
            return self._bring_up(copy, key)
        finally:
            with self._turns:
                self._coming_up -= 1
                self._turns.notify_all()

    def _bring_up(self, copy: SpareProvisioning, key: str) -> bool:
        if self._stopped:
            return False
        try:
            copy.setup()
        except NotPoolable as error:
            with self._lock:
                self._unpoolable.add(key)
            self._say(
                f"unpoolable:{key}",
                f"kubefixtures: environment {copy.spec.name!r} is not pooled: {error}",
            )
            return False
        except Exception as error:  # its setup cleaned up after itself
            if not copy._cancelled.is_set():
                self._failed(copy, f"failed to come up: {_first_line(error)}")
            return False
        try:
            copy.mark_spare()
        except KubefixturesError as error:
            self._failed(copy, f"in {copy.namespace} could not be marked a spare: {error}")
            copy.teardown()
            return False
        with self._turns:
            self._made += 1
            self._ready[key] = self._ready.get(key, 0) + 1
            self._turns.notify_all()
        return True

    def _failed(self, copy: SpareProvisioning, why: str) -> None:
        """A copy that will never be a spare: said now (once per environment), and counted
        in the summary at the end of the run (a pool short of copies is never silent)."""
        with self._lock:
            self._failures.setdefault(copy.spec.name, []).append(why)
        self._say(
            f"failed:{copy.spec.name}", f"kubefixtures: a spare copy of {copy.spec.name!r} {why}"
        )

    def _retire(self, cluster: Cluster, lease: Mapping[str, Any]) -> None:
        retire_spare(cluster, lease, self.session.session_id, self.session.reporter.write_line)

    def _delete_quietly(self, cluster: Cluster, namespace: str) -> None:
        delete_quietly(cluster, namespace, self.session.reporter.write_line)

    def _say(self, topic: str, line: str) -> None:
        """``line``, once per session and topic."""
        with self._lock:
            if topic in self._said:
                return
            self._said.add(topic)
        self.session.reporter.write_line(line)

    # --- the end of the session ------------------------------------------------------------

    def cancel(self) -> None:
        """From the signal handler: copies still coming up give up (and delete themselves)."""
        self._stopped = True  # no lock: the handler may interrupt its holder
        for copies in list(self._starting.values()):
            for copy, _ in list(copies):
                copy.cancel()

    def finish(self) -> None:
        """The session ends: let the copies under way become spares (a cancelled session
        stops them instead), and say how many spares it leaves for the next runs."""
        with self._turns:
            if self._closed:
                return
            self._closed = True
            self._turns.notify_all()  # the copies still waiting for their turn: all at once
        cancelled = cancel.requested() is not None
        if cancelled:
            self.cancel()
        # The refills asked for (the last claim's among them) still start their copies.
        self._refilling.shutdown(wait=True)
        self._release_ahead()
        if cancelled:
            self.cancel()  # and those started meanwhile
        with self._lock:
            futures = [future for copies in self._starting.values() for _, future in copies]
        wait(futures, timeout=None if not cancelled else cancel.remaining())
        self._making.shutdown(wait=not cancelled, cancel_futures=True)
        if cancelled:
            return
        for line in self.summary_lines():
            self.session.reporter.summary(line)

    def summary_lines(self) -> list[str]:
        """What the pool did this session, for the end of the run: the copies it made, those
        that failed, and the claims that found no spare."""
        lines = []
        with self._lock:
            made, claims = self._made, dict(self._claims)
            misses, waits = dict(self._misses), dict(self._waits)
            failures = {name: list(lines) for name, lines in self._failures.items()}
        if made:
            lines.append(
                f"kubefixtures: this session made {made} spare cop{'y' if made == 1 else 'ies'} "
                f"for the next runs (--kubefixtures-pool={self.size}); unclaimed, each stays "
                f"ready for {self.settings.keep_for:g} s after it became ready (`kubefixtures "
                "status` lists them)"
            )
        for name, failed in failures.items():
            lines.append(
                f"kubefixtures: a copy of {name!r} for the pool never became a spare: it "
                f"{failed[0]}"
                if len(failed) == 1
                else f"kubefixtures: {len(failed)} copies of {name!r} for the pool never became "
                f"spares; the first {failed[0]}"
            )
        for name, (count, seconds) in waits.items():
            lines.append(
                f"kubefixtures: {count} of {claims[name]} claim(s) of {name!r} found no ready "
                f"spare and waited {seconds:.1f} s in all for a copy this session was bringing "
                f"up (--kubefixtures-pool={self.size}: the pool ran dry)"
            )
        for name, missed in misses.items():
            lines.append(
                f"kubefixtures: the pool had no ready spare of {name!r} for {missed} of "
                f"{claims[name]} claim(s): those environments came up as without a pool "
                f"(--kubefixtures-pool={self.size})"
            )
        return lines


def _outcome(future: Future[Adopted | None]) -> Adopted | None:
    """What a claim made ahead gave (None: no spare, or it failed: the claim tries again)."""
    try:
        return future.result()
    except Exception:
        return None


def _first_line(error: BaseException) -> str:
    """The first line of an error (a readiness error goes on with pods and events)."""
    return (str(error).splitlines() or [type(error).__name__])[0]


def retire_spare(
    cluster: Cluster,
    lease: Mapping[str, Any],
    session_id: str,
    warn: Callable[[str], None],
) -> bool:
    """Delete a spare (too old, or its pool is gone): claimed first, by a compare-and-swap
    of its Lease like any claim, so that no session gets it meanwhile. False when someone
    claimed or retired it first."""
    from kubefixtures.leases.policy import holder_identity
    from kubefixtures.leases.pool import claim_metadata
    from kubefixtures.leases.renewal import SessionLease

    metadata = lease.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    retiring = SessionLease(cluster, namespace, holder_identity(session_id))
    try:
        retiring.take_over(
            expected_version=str(metadata.get("resourceVersion") or ""),
            metadata=claim_metadata(),
        )
    except KubefixturesError:
        return False  # claimed or retired by someone else meanwhile
    retiring.settle()
    delete_quietly(cluster, namespace, warn)
    return True


def delete_quietly(cluster: Cluster, namespace: str, warn: Callable[[str], None]) -> None:
    """Delete a pool member's namespace; a failure is a line (a reaper deletes it later)."""
    try:
        cluster.delete_namespace(namespace)
    except KubefixturesError as error:
        warn(
            f"kubefixtures: deleting namespace {namespace}: {error}; the operator or "
            "`kubefixtures gc` deletes it once its lease expires"
        )
