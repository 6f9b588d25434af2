"""Operator-maintained pools: N spare copies of an environment kept ready for every session
that claims from pools (``--kubefixtures-pool-claim`` or ``--kubefixtures-pool``).

A Pool object (``kubefixtures.io/v1alpha1``, the chart's ``crds/pools.yaml``; made by
``kubefixtures pool create``) in the operator's pool namespace holds an environment's
template (kubefixtures.provisioning.pool_template), its pool key, ``size`` and
``maxAgeSeconds``. Every few seconds, and at once when one of its copies' Leases changes (a
claim), the keeper compares each Pool with its copies on the cluster:

- it starts the missing copies, each rendered from the template with a namespace, session
  id and secrets of its own, applied and waited for exactly as a session's spare copy is
  (kubefixtures.provisioning.pooled.SpareProvisioning, the same labels and Lease): claims,
  ``status``, ``gc`` and the reapers cannot tell them apart. While a copy comes up the
  operator renews its Lease; once ready the copy is protected by keep-until, which the
  operator extends (a compare-and-swap on the Lease, so a copy claimed meanwhile is never
  protected again) for as long as it keeps the pool. A dead operator's spares are reaped a
  few minutes later (``PROTECTION_SECONDS``), like any kept namespace;
- it retires (claims, then deletes) spares older than ``maxAgeSeconds``, spares of another
  key (the Pool was created again from changed sources), and spares of a deleted Pool, and
  stops its own copies still coming up for those;
- all pools together never hold more than the cap of namespaces
  (``--pool-max-namespaces``); the Pool's status says when its copies are capped.

The keeper makes its copies in threads (the provisioning code is synchronous), at most
``_COPY_WORKERS`` at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubefixtures import naming
from kubefixtures.errors import KubefixturesError
from kubefixtures.kube.client import LEASE, POOL, Cluster
from kubefixtures.kube.errors import Conflict, NotFound
from kubefixtures.leases.policy import LEASE_NAME, held, lease_from_object
from kubefixtures.leases.pool import (
    POOL_HOME_LABEL,
    POOL_KEY_LABEL,
    POOL_NAME_LABEL,
    SPARE,
    STARTING,
    operator_pool_selector,
    pool_state,
    protection_patch,
    spare_since,
)
from kubefixtures.operator.config import OperatorConfig

if TYPE_CHECKING:
    from kubefixtures.provisioning.pool_template import PoolTemplate
    from kubefixtures.provisioning.pooled import SpareProvisioning

__all__ = ["PROTECTION_SECONDS", "PoolKeeper", "PoolPlan", "plan_pool"]

logger = logging.getLogger("kubefixtures.operator")

RECONCILE_SECONDS = 5.0
# A ready spare's keep-until lies this far ahead, extended once less than two thirds are
# left: the spares of an operator that died are reaped this long after.
PROTECTION_SECONDS = 300.0
_COPY_WORKERS = 4
_STOP_WAIT_SECONDS = 20.0


# --- the decision (pure) ---------------------------------------------------------------------


@dataclass
class PoolPlan:
    """What one reconciliation does to one Pool's copies."""

    retire: list[Mapping[str, Any]] = field(default_factory=list)  # spares' Leases
    protect: list[Mapping[str, Any]] = field(default_factory=list)  # spares' Leases to extend
    ready: int = 0
    starting: int = 0
    start: int = 0
    capped: bool = False


def plan_pool(
    *,
    key: str | None,
    size: int,
    max_age: float,
    members: Sequence[Mapping[str, Any]],
    own_starting: int,
    room: int,
    now: datetime,
) -> PoolPlan:
    """The plan for a Pool whose copies' Leases are ``members`` (``key`` None: the Pool is
    gone or unusable, so nothing is kept), with ``own_starting`` copies of this operator
    coming up that the listing does not show yet, and room for ``room`` more namespaces."""
    plan = PoolPlan(starting=own_starting)
    for lease in members:
        metadata = lease.get("metadata") or {}
        labels = metadata.get("labels") or {}
        state = pool_state(labels)
        info = lease_from_object(lease)
        if state == SPARE:
            since = spare_since(lease)
            stale = (
                key is None
                or labels.get(POOL_KEY_LABEL) != key
                or since is None
                or (now - since).total_seconds() >= max_age
            )
            if stale:
                plan.retire.append(lease)
                continue
            plan.ready += 1
            until = info.keep_until
            if until is None or (until - now).total_seconds() < PROTECTION_SECONDS * 2 / 3:
                plan.protect.append(lease)
        elif state == STARTING and held(info, now) and labels.get(POOL_KEY_LABEL) == key:
            plan.starting += 1
    if key is not None:
        missing = max(size - plan.ready - plan.starting, 0)
        plan.start = min(missing, max(room, 0))
        plan.capped = plan.start < missing
    return plan


# --- the keeper ------------------------------------------------------------------------------


class _Reporter:
    """A copy's lines go to the operator's log."""

    def write_line(self, line: str) -> None:
        logger.info("%s", line.removeprefix("kubefixtures: "))

    def summary(self, line: str) -> None:
        self.write_line(line)

    def kept(self, namespace: str, environment: str, why: str, lines: Sequence[str]) -> None:
        for line in lines:
            self.write_line(line)


@dataclass
class _Copy:
    pool: str
    key: str
    provisioning: SpareProvisioning
    future: Future[bool] | None = None


@dataclass
class _Checked:
    """A Pool's template as last read, and whether its key is the one it claims."""

    version: str
    template: PoolTemplate | None
    problem: str | None


class PoolKeeper:
    def __init__(self, cluster: Cluster, config: OperatorConfig) -> None:
        from kubefixtures.settings import Settings

        assert config.pool_namespace
        self.cluster = cluster
        self.config = config
        self.home = config.pool_namespace
        self.session_id = naming.new_session_id()  # the holder of the copies coming up
        self.settings = Settings(keep_for=PROTECTION_SECONDS)
        self.made = 0
        self._lock = threading.Lock()
        self._copies: list[_Copy] = []
        self._checked: dict[str, _Checked] = {}
        self._members: set[str] = set()  # namespaces of the copies, to notice claims
        self._said: dict[str, str] = {}
        self._making = ThreadPoolExecutor(_COPY_WORKERS, thread_name_prefix="kubefixtures-copy")
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the task -----------------------------------------------------------------------------

    def start(self) -> None:
        logger.info(
            "keeping the pools of namespace %s (at most %d namespaces)",
            self.home,
            self.config.pool_max_namespaces,
        )
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self.run(), name="kubefixtures pools")

    def poke(self, namespace: str) -> None:
        """A namespace or Lease changed: look at once if it is one of the copies (a claim)."""
        if namespace in self._members:
            self._wakeup.set()

    async def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        await asyncio.to_thread(self._stop_copies)

    async def run(self) -> None:
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                await asyncio.to_thread(self.reconcile)
            except Exception as error:  # the API may be briefly away: the next round retries
                self._say("round", f"keeping the pools failed: {error}; retrying")
            else:
                self._said.pop("round", None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), RECONCILE_SECONDS)

    # --- one round (in a thread) --------------------------------------------------------------

    def reconcile(self) -> None:
        try:
            pools = self.cluster.items(POOL, self.home)
        except NotFound:
            self._say("crd", "no Pool resource in the cluster (the chart's crds/): no pools kept")
            return
        members = self.cluster.items(LEASE, None, operator_pool_selector(self.home))
        now = self.cluster.server_clock.wall()
        by_pool: dict[str, list[Mapping[str, Any]]] = {}
        for lease in members:
            labels = (lease.get("metadata") or {}).get("labels") or {}
            by_pool.setdefault(str(labels.get(POOL_NAME_LABEL)), []).append(lease)
        listed = {str((lease.get("metadata") or {}).get("namespace")) for lease in members}
        self._members = listed
        with self._lock:
            self._copies = [copy for copy in self._copies if not _done(copy)]
            unlisted = [copy for copy in self._copies if copy.provisioning.namespace not in listed]
        used = len(members) + len(unlisted)
        names = set()
        for pool in pools:
            metadata = pool.get("metadata") or {}
            name = str(metadata.get("name") or "")
            names.add(name)
            template, problem = self._template(pool)
            spec = pool.get("spec") or {}
            key = template.key if template is not None else None
            self._stop_own(name, keep_key=key)
            plan = plan_pool(
                key=key,
                size=int(spec.get("size") or 0),
                max_age=float(spec.get("maxAgeSeconds") or 3600),
                members=by_pool.get(name, []),
                own_starting=sum(1 for copy in unlisted if copy.pool == name and copy.key == key),
                room=self.config.pool_max_namespaces - used,
                now=now,
            )
            used += plan.start - len(plan.retire)
            self._carry_out(name, plan, now)
            if template is not None:
                for _ in range(plan.start):
                    self._start(name, template, spec)
            if plan.capped:
                problem = (
                    f"capped: the operator's pools hold {self.config.pool_max_namespaces} "
                    "namespaces at most (--pool-max-namespaces, the chart's "
                    "pool.maxNamespaces)"
                )
            self._write_status(pool, plan, key, problem)
        for name, leases in by_pool.items():
            if name not in names:  # its Pool was deleted
                self._stop_own(name, keep_key=None)
                self._carry_out(
                    name,
                    plan_pool(
                        key=None, size=0, max_age=0, members=leases, own_starting=0, room=0, now=now
                    ),
                    now,
                )
        for name in [name for name in self._checked if name not in names]:
            del self._checked[name]

    def _template(self, pool: Mapping[str, Any]) -> tuple[PoolTemplate | None, str | None]:
        """The Pool's template, once its key is checked (a Pool is checked again only when
        it changes); None and why when it cannot be used."""
        from kubefixtures.provisioning.pool_template import PoolTemplate, template_key

        metadata = pool.get("metadata") or {}
        name = str(metadata.get("name") or "")
        version = str(metadata.get("resourceVersion") or "")
        checked = self._checked.get(name)
        if checked is not None and checked.version == version:
            return checked.template, checked.problem
        spec = pool.get("spec") or {}
        template: PoolTemplate | None = PoolTemplate(
            environment=str(spec.get("environment") or ""),
            template=str(spec.get("template") or ""),
            key=str(spec.get("key") or ""),
        )
        problem = None
        try:
            assert template is not None
            if template_key(template) != template.key:
                problem = "its template does not render to its key: create it again"
        except KubefixturesError as error:
            problem = f"its template cannot be rendered: {error}"
        if problem is not None:
            logger.warning("pool %s/%s: %s", self.home, name, problem)
            template = None
        # Only the spec counts: the status this keeper writes changes the version too.
        self._checked[name] = _Checked(version, template, problem)
        return template, problem

    def _carry_out(self, name: str, plan: PoolPlan, now: datetime) -> None:
        from kubefixtures.provisioning.pooled import retire_spare

        for lease in plan.retire:
            namespace = (lease.get("metadata") or {}).get("namespace")
            if retire_spare(self.cluster, lease, self.session_id, _Reporter().write_line):
                logger.info("pool %s/%s: retired spare namespace %s", self.home, name, namespace)
        until = now + timedelta(seconds=PROTECTION_SECONDS)
        for lease in plan.protect:
            metadata = lease.get("metadata") or {}
            namespace = str(metadata.get("namespace") or "")
            patch = protection_patch(until, str(metadata.get("resourceVersion") or ""))
            try:
                self.cluster.merge_patch(LEASE, namespace, LEASE_NAME, patch)
            except (Conflict, NotFound):
                pass  # claimed meanwhile: the claimant's now
            except KubefixturesError as error:
                logger.warning("protecting spare namespace %s: %s", namespace, error)

    def _start(self, name: str, template: PoolTemplate, spec: Mapping[str, Any]) -> None:
        from kubefixtures.provisioning.base import SessionView
        from kubefixtures.provisioning.pool_template import copy_spec
        from kubefixtures.provisioning.pooled import SpareProvisioning
        from kubefixtures.rendering import Secrets

        labels = {POOL_NAME_LABEL: name, POOL_HOME_LABEL: self.home}
        user = naming.label_value(str(spec.get("user") or ""))
        if user:
            labels[naming.USER_LABEL] = user  # whose sessions claim it
        scratch = Path(tempfile.mkdtemp(prefix="kubefixtures-pool-"))
        session = SessionView(
            settings=self.settings,
            session_id=self.session_id,
            cluster=lambda _context: self.cluster,
            secrets=Secrets,
            reporter=_Reporter(),
        )
        provisioning = SpareProvisioning(
            copy_spec(template, scratch), session, template.key, labels=labels
        )
        copy = _Copy(pool=name, key=template.key, provisioning=provisioning)
        with self._lock:
            self._copies.append(copy)
            copy.future = self._making.submit(self._make, copy, scratch)

    def _make(self, copy: _Copy, scratch: Path) -> bool:
        provisioning = copy.provisioning
        try:
            provisioning.setup()
        except Exception as error:  # its setup cleaned up after itself
            if not provisioning._cancelled.is_set():
                logger.warning(
                    "pool %s/%s: a copy failed to come up: %s", self.home, copy.pool, error
                )
            return False
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        try:
            provisioning.mark_spare()
        except KubefixturesError as error:
            logger.warning(
                "pool %s/%s: %s: %s", self.home, copy.pool, provisioning.namespace, error
            )
            provisioning.teardown()
            return False
        self.made += 1
        logger.info(
            "pool %s/%s: spare namespace %s is ready", self.home, copy.pool, provisioning.namespace
        )
        self._wakeup_soon()
        return True

    def _wakeup_soon(self) -> None:
        """From a copy's thread: a round now (the status counts a new spare)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def _stop_own(self, name: str, keep_key: str | None) -> None:
        """Stop this operator's copies of ``name`` coming up for another key (or any)."""
        with self._lock:
            stale = [copy for copy in self._copies if copy.pool == name and copy.key != keep_key]
        for copy in stale:
            if not copy.provisioning._cancelled.is_set():
                logger.info("pool %s/%s: stopping a copy of an old template", self.home, name)
                copy.provisioning.cancel()

    def _write_status(
        self, pool: Mapping[str, Any], plan: PoolPlan, key: str | None, problem: str | None
    ) -> None:
        status = {
            "ready": plan.ready,
            "starting": plan.starting + plan.start,
            "key": key,
            "message": problem or "",
        }
        if (pool.get("status") or {}) == status:
            return
        name = str((pool.get("metadata") or {}).get("name") or "")
        try:
            self.cluster.merge_patch(POOL, self.home, name, {"status": status})
        except NotFound:
            pass  # deleted meanwhile
        except KubefixturesError as error:
            self._say(f"status:{name}", f"writing the status of pool {name}: {error}")

    def _say(self, topic: str, line: str) -> None:
        if self._said.get(topic) != line:
            self._said[topic] = line
            logger.warning("%s", line)

    def _stop_copies(self) -> None:
        with self._lock:
            copies = list(self._copies)
        for copy in copies:
            copy.provisioning.cancel()
        futures = [copy.future for copy in copies if copy.future is not None]
        from concurrent.futures import wait

        wait(futures, timeout=_STOP_WAIT_SECONDS)
        self._making.shutdown(wait=False, cancel_futures=True)


def _done(copy: _Copy) -> bool:
    return copy.future is not None and copy.future.done()
