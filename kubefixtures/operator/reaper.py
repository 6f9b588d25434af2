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
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from kubefixtures.clock import Clock
from kubefixtures.errors import KubefixturesError
from kubefixtures.kube import Cluster
from kubefixtures.leases.policy import LeaseState, SessionNamespace, decide
from kubefixtures.leases.reaping import managed_selector, recheck_and_delete
from kubefixtures.operator.config import COMPONENT, OperatorConfig
from kubefixtures.operator.schedule import Schedule, as_observed

__all__ = ["Reaper"]

logger = logging.getLogger("kubefixtures.operator")

_RETRY_AFTER_ERROR = timedelta(seconds=5)
# A namespace whose check failed for a reason other than the API (a bug, a Lease nobody
# foresaw) is looked at again this much later: not in a tight loop, and not never.
_RETRY_AFTER_BUG = timedelta(minutes=5)


class Reaper:
    def __init__(
        self,
        cluster: Cluster,
        config: OperatorConfig,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.cluster = cluster
        self.config = config
        self.grace = timedelta(seconds=config.grace_seconds)
        # Wall times (keep-until) in the API server's time; renewals on the monotonic clock.
        self.clock: Clock = clock or cluster.server_clock
        self.schedule = Schedule(self.clock)
        self.deleted = 0
        self.checks = 0  # looks at a due namespace (from memory, or afresh from the API)
        self._malformed: dict[str, str] = {}  # namespace -> the problem logged for it
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stopped_because: str | None = None  # set if the task ever ends

    # --- fed by the kopf handlers -----------------------------------------------------------

    def namespace_event(self, kind: str | None, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata")
        name = str((metadata if isinstance(metadata, Mapping) else {}).get("name") or "")
        if kind == "DELETED":
            self.schedule.namespace_gone(name)
            self._malformed.pop(name, None)
            return
        self.schedule.namespace_seen(body)
        self._replan(name)

    def lease_event(self, kind: str | None, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata")
        namespace = str((metadata if isinstance(metadata, Mapping) else {}).get("namespace") or "")
        if kind == "DELETED":
            self.schedule.lease_gone(namespace)
        else:
            self.schedule.lease_seen(body)
        if namespace in self.schedule:
            self._replan(namespace)

    def _replan(self, name: str) -> None:
        try:
            session = self.schedule.session(name)
            if session is None:
                return
            decision = decide(session, self.clock.wall(), self.grace)
            self._note_malformed(session, decision.state, decision.reason)
            when = self.clock.wall() if decision.delete else decision.recheck_at
        except Exception:  # one odd object must not break the handling of the others
            logger.exception("planning namespace %s failed; looking again later", name)
            when = self.clock.wall() + _RETRY_AFTER_BUG
        if self.schedule.plan(name, when):
            self._wakeup.set()

    def _note_malformed(self, session: SessionNamespace, state: LeaseState, reason: str) -> None:
        """One log line per malformed Lease (and per change of what is wrong with it)."""
        if state is not LeaseState.MALFORMED:
            self._malformed.pop(session.name, None)
            return
        if self._malformed.get(session.name) != reason:
            self._malformed[session.name] = reason
            logger.warning("skipping namespace %s: %s", session.name, reason)

    # --- the task ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="kubefixtures reaper")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self.stopped_because = "it was cancelled"
        else:
            error = task.exception()
            self.stopped_because = f"{type(error).__name__}: {error}" if error else "it returned"
        if self._task is task:  # not a stop() on purpose
            logger.error(
                "the reaper stopped (%s): leaked namespaces are no longer deleted; the "
                "liveness probe fails from now on, so that Kubernetes restarts the operator",
                self.stopped_because,
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        logger.info(
            "reaping namespaces labelled %s whose lease expired more than %.0f s ago",
            managed_selector(self.config.selector),
            self.config.grace_seconds,
        )
        while True:
            for name in self.schedule.pop_due(self.clock.wall()):
                await self.check(name)
            # Clear before computing the sleep: a handler that plans something sooner
            # between now and the wait sets the event again, so no wake-up is lost.
            self._wakeup.clear()
            due = self.schedule.next_due()
            timeout = None if due is None else max((due - self.clock.wall()).total_seconds(), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def check(self, name: str) -> None:
        """Look at one due namespace: keep it (and plan the next look) or delete it. Never
        raises (but for cancellation): a namespace that cannot be judged is logged and looked
        at again later, and the others go on being reaped."""
        try:
            await self._check(name)
        except asyncio.CancelledError:
            raise
        except KubefixturesError as error:  # the API may be briefly away: try again soon
            logger.warning("checking namespace %s failed: %s; retrying", name, error)
            self.schedule.plan(name, self.clock.wall() + _RETRY_AFTER_ERROR)
        except Exception:
            logger.exception("checking namespace %s failed; looking again later", name)
            self.schedule.plan(name, self.clock.wall() + _RETRY_AFTER_BUG)

    async def _check(self, name: str) -> None:
        session = self.schedule.session(name)
        if session is None:
            return
        self.checks += 1
        decision = decide(session, self.clock.wall(), self.grace)
        self._note_malformed(session, decision.state, decision.reason)
        if not decision.delete:
            logger.debug("keeping namespace %s: %s", name, decision.reason)
            self.schedule.plan(name, decision.recheck_at)
            return
        observation = self.schedule.observation(name)

        def observe(fresh: SessionNamespace) -> SessionNamespace:
            # Pure (it runs in a thread): a renewal not seen before counts as seen now.
            return as_observed(fresh, observation, self.clock)

        outcome = await asyncio.to_thread(
            recheck_and_delete,
            self.cluster,
            name,
            self.grace,
            component=COMPONENT,
            now=self.clock.wall,
            observe=observe,
        )
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
            retry = self.clock.wall() + _RETRY_AFTER_ERROR if outcome.decision.delete else None
            self.schedule.plan(name, retry or outcome.decision.recheck_at)
