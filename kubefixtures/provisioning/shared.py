"""A session-scoped environment shared by the pytest-xdist workers of a run.

The first worker to need it brings it up (the manager, with the provisioning it would have
used alone), the others attach to the same namespace and use the manager's port-forwards
(kubefixtures.xdist.state holds the protocol). A worker attached through a details file is
shared the same way: a worker that forwarded a port again must keep serving it until the
other workers are done with it.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from kubefixtures.provisioning.base import (
    EnvironmentSpec,
    Inspection,
    Provisioning,
    SessionView,
    inspect,
)
from kubefixtures.timing import Phases

if TYPE_CHECKING:
    from kubefixtures.details import Environment
    from kubefixtures.xdist.state import Claim, Coordinator

__all__ = ["ATTACH_MARGIN", "SharedProvisioning", "sharing_key"]

# An attached worker waits for the manager's setup deadline plus this much: the manager
# reports its own timeout first, with its reasons.
ATTACH_MARGIN = 30.0


def sharing_key(spec: EnvironmentSpec) -> str:
    """The fixture name, plus a digest of what it declares: two conftests may each declare
    an environment of the same name."""
    declared = json.dumps(
        [[str(path) for path in spec.sources], spec.values, spec.timeout],
        sort_keys=True,
        default=str,
    )
    return f"{spec.name}-{hashlib.sha256(declared.encode()).hexdigest()[:12]}"


class SharedProvisioning:
    """A session-scoped environment shared by the xdist workers of a run."""

    def __init__(self, local: Provisioning, session: SessionView, shared: Coordinator) -> None:
        self.spec = local.spec
        self.local = local
        self.session = session
        self.coordinator = shared
        self.key = sharing_key(local.spec)
        self.claim: Claim | None = None
        self.environment: Environment | None = None
        self._waiting = Phases("shared")  # a worker that attaches: how long it waited

    @property
    def managing(self) -> bool:
        return self.claim is not None and self.claim.role == "manager"

    @property
    def phases(self) -> Phases:
        """The manager's phases where this worker brings it up, else its wait."""
        return self.local.phases if self.managing else self._waiting

    @property
    def manager(self) -> str | None:
        """The xdist worker that brought the environment up (None before the claim)."""
        return self.claim.manager if self.claim is not None else None

    def claim_in_advance(self) -> bool:
        """Claim the environment now, before this worker runs any test, to bring it up in
        the background (kubefixtures.factories.prestart): whether this worker manages it.
        Claimed before the worker reports its collection, so before any worker gets a
        test: the one that claims first brings it up, without a race."""
        self.claim = self.coordinator.claim(self.key, self.spec.name)
        return self.managing

    def setup(self) -> Environment:
        if self.claim is None:  # else claimed in advance
            self.claim = self.coordinator.claim(self.key, self.spec.name)
        if self.managing:
            try:
                self.environment = self.local.setup()
            except BaseException as error:
                where = f"on xdist worker {self.coordinator.worker}, which brought it up"
                self.coordinator.fail(self.key, f"{error} ({where})")
                raise
            self.coordinator.publish(self.key, _payload(self.environment))
            return self.environment
        timeout = (self.spec.timeout or self.session.settings.ready_timeout) + ATTACH_MARGIN
        self._waiting.begin()
        with self._waiting.phase("wait"):
            payload = self.coordinator.wait_ready(self.key, timeout)
        self._waiting.end()
        from kubefixtures.details import Environment, EnvironmentDetails

        self.environment = Environment(
            EnvironmentDetails.model_validate(payload["details"]), payload["objects"]
        )
        return self.environment

    def report_ready(self) -> None:
        if self.managing:
            self.local.report_ready()
            return
        assert self.environment is not None
        assert self.claim is not None
        self.session.reporter.write_line(
            f"kubefixtures: environment {self.spec.name!r}: using namespace "
            f"{self.environment.namespace} of xdist worker {self.claim.manager}"
        )

    def cancel(self) -> None:
        self.local.cancel()

    def note_failure(self, test: str) -> None:
        self.coordinator.record_failure(self.key, test)

    def inspection(self) -> Inspection | None:
        if self.managing:
            return self.local.inspection()
        if self.environment is None:
            return None
        cluster = self.session.cluster(self.environment.context)
        return inspect(cluster, self.environment, self.spec.name)

    def teardown(self, *, keep: bool = False, why: str = "") -> None:
        if not self.managing:
            self.coordinator.detach(self.key)
            return
        from kubefixtures import cancel
        from kubefixtures.xdist.state import SharingError

        # Every worker's failures are in the file (note_failure), this one's included. A
        # cancelled run (SIGTERM...) waits for the other workers only for seconds: they
        # are being cancelled too, and the namespace must go before SIGKILL comes.
        timeout = cancel.remaining() if cancel.requested() is not None else None
        try:
            failed = self.coordinator.release(self.key, timeout)
        except SharingError as error:
            self.session.reporter.write_line(f"kubefixtures: {error}")
            failed = []
        if self.session.settings.keep_on_failure and failed:
            keep, why = True, f"{len(failed)} failed test(s), first {failed[0]}"
        self.local.teardown(keep=keep, why=why)


def _payload(environment: Environment) -> dict[str, Any]:
    """What attached workers need: the details (secrets revealed: the state file is 0600 in
    a private directory) and the rendered objects."""
    return {
        "details": json.loads(environment.details.to_json(reveal_secrets=True, indent=None)),
        "objects": [dict(obj) for obj in environment.objects],
    }
