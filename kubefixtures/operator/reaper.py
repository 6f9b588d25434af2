"""The reaper: one asyncio task that sleeps until the next namespace is due, looks at it, and
deletes it if :func:`kubefixtures.leases.policy.decide` says so.

Watch events update the schedule and wake the task only when something became due sooner.
A deletion is never made from memory: the namespace and its Lease are read afresh from the
API first (in a thread, through :mod:`kubefixtures.leases.reaping`), and deleted only if they
are still exactly what was judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kubefixtures.kube import Cluster
from kubefixtures.leases.policy import decide
from kubefixtures.leases.reaping import managed_selector, recheck_and_delete
from kubefixtures.operator.config import COMPONENT, OperatorConfig
from kubefixtures.operator.schedule import Schedule

__all__ = ["Reaper"]

logger = logging.getLogger("kubefixtures.operator")

_RETRY_AFTER_ERROR = timedelta(seconds=5)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Reaper:
    def __init__(
        self,
        cluster: Cluster,
        config: OperatorConfig,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.cluster = cluster
        self.config = config
        self.grace = timedelta(seconds=config.grace_seconds)
        self.schedule = Schedule()
        self.clock = clock
        self.deleted = 0
        self.checks = 0  # looks at a due namespace (from memory, or afresh from the API)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- fed by the kopf handlers -----------------------------------------------------------

    def namespace_event(self, kind: str | None, body: Mapping[str, Any]) -> None:
        name = str((body.get("metadata") or {}).get("name") or "")
        if kind == "DELETED":
            self.schedule.namespace_gone(name)
            return
        self.schedule.namespace_seen(body)
        self._replan(name)

    def lease_event(self, kind: str | None, body: Mapping[str, Any]) -> None:
        namespace = str((body.get("metadata") or {}).get("namespace") or "")
        if kind == "DELETED":
            self.schedule.lease_gone(namespace)
        else:
            self.schedule.lease_seen(body)
        if namespace in self.schedule:
            self._replan(namespace)

    def _replan(self, name: str) -> None:
        session = self.schedule.session(name)
        if session is None:
            return
        decision = decide(session, self.clock(), self.grace)
        when = self.clock() if decision.delete else decision.recheck_at
        if self.schedule.plan(name, when):
            self._wakeup.set()

    # --- the task ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="kubefixtures reaper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        logger.info(
            "reaping namespaces labelled %s whose lease expired more than %.0f s ago",
            managed_selector(self.config.selector),
            self.config.grace_seconds,
        )
        while True:
            for name in self.schedule.pop_due(self.clock()):
                await self.check(name)
            # Clear before computing the sleep: a handler that plans something sooner
            # between now and the wait sets the event again, so no wake-up is lost.
            self._wakeup.clear()
            due = self.schedule.next_due()
            timeout = None if due is None else max((due - self.clock()).total_seconds(), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def check(self, name: str) -> None:
        """Look at one due namespace: keep it (and plan the next look) or delete it."""
        session = self.schedule.session(name)
        if session is None:
            return
        self.checks += 1
        decision = decide(session, self.clock(), self.grace)
        if not decision.delete:
            logger.debug("keeping namespace %s: %s", name, decision.reason)
            self.schedule.plan(name, decision.recheck_at)
            return
        try:
            outcome = await asyncio.to_thread(
                recheck_and_delete,
                self.cluster,
                name,
                self.grace,
                component=COMPONENT,
                now=self.clock,
            )
        except Exception as error:  # the API may be briefly away: try again soon
            logger.warning("checking namespace %s failed: %s; retrying", name, error)
            self.schedule.plan(name, self.clock() + _RETRY_AFTER_ERROR)
            return
        if outcome.deleted:
            self.deleted += 1
            assert outcome.decision is not None
            logger.info("deleted namespace %s: %s", name, outcome.decision.reason)
            self.schedule.namespace_gone(name)
        elif outcome.session is None or outcome.decision is None:
            self.schedule.namespace_gone(name)  # gone meanwhile, or no longer ours
        else:
            # Memory was stale (a renewal the watch had not delivered yet): the API's view wins.
            logger.info("keeping namespace %s: %s", name, outcome.decision.reason)
            self.schedule.remember(outcome.session)
            retry = self.clock() + _RETRY_AFTER_ERROR if outcome.decision.delete else None
            self.schedule.plan(name, retry or outcome.decision.recheck_at)
