"""Which provisioning an environment fixture gets, and sharing one between xdist workers.

- ``KUBEFIXTURES_DETAILS`` is set: attach to the environments named in the details files
  (kubefixtures.attach); nothing is created or deleted. Under xdist one worker attaches,
  forwarding again the ports that no longer answer, and the others use its forwards.
- On a pytest-xdist worker, a session-scoped environment is shared: the first worker to
  need it brings it up (the manager), the others attach to the same namespace and use the
  manager's port-forwards (kubefixtures.coordination holds the protocol). Narrower scopes
  stay per worker: a module's tests are spread over workers anyway.
- Otherwise: a ``Lifecycle`` of this session, or a reusing one with ``--kubefixtures-reuse``.

Imported when a fixture first needs an environment, never at pytest start-up.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from kubefixtures.lifecycle import EnvironmentSpec, Inspection, Lifecycle, Provisioning
from kubefixtures.workers import coordinator

if TYPE_CHECKING:
    import pytest

    from kubefixtures.coordination import Claim, Coordinator
    from kubefixtures.details import Environment
    from kubefixtures.session import SessionState

__all__ = [
    "DETAILS_VARIABLE",
    "SharedLifecycle",
    "local_provisioning",
    "provisioning_for",
    "sharing_key",
]

DETAILS_VARIABLE = "KUBEFIXTURES_DETAILS"
# An attached worker waits for the manager's setup deadline plus this much: the manager
# reports its own timeout first, with its reasons.
ATTACH_MARGIN = 30.0


def provisioning_for(
    spec: EnvironmentSpec, session: SessionState, config: pytest.Config, scope: str
) -> Provisioning:
    """What brings up (or finds) the environment of one fixture."""
    details = os.environ.get(DETAILS_VARIABLE, "").strip()
    local: Provisioning
    if details:
        from kubefixtures.attach import AttachedLifecycle

        # Shared like one brought up here: a worker that forwarded a port again must keep
        # serving it until the other workers are done with it.
        local = AttachedLifecycle(spec, session, details)
    else:
        local = local_provisioning(spec, session)
    shared = coordinator(config)
    if shared is not None and scope == "session":
        return SharedLifecycle(local, session, shared)
    return local


def local_provisioning(spec: EnvironmentSpec, session: SessionState) -> Lifecycle:
    if session.settings.reuse:
        from kubefixtures.reuse import ReusingLifecycle

        return ReusingLifecycle(spec, session)
    return Lifecycle(spec, session)


def sharing_key(spec: EnvironmentSpec) -> str:
    """The fixture name, plus a digest of what it declares: two conftests may each declare
    an environment of the same name."""
    declared = json.dumps(
        [[str(path) for path in spec.sources], spec.values, spec.timeout],
        sort_keys=True,
        default=str,
    )
    return f"{spec.name}-{hashlib.sha256(declared.encode()).hexdigest()[:12]}"


# --- one shared environment --------------------------------------------------------------------


class SharedLifecycle:
    """A session-scoped environment shared by the xdist workers of a run."""

    def __init__(self, local: Provisioning, session: SessionState, shared: Coordinator) -> None:
        self.spec = local.spec
        self.local = local
        self.session = session
        self.coordinator = shared
        self.key = sharing_key(local.spec)
        self.claim: Claim | None = None
        self.environment: Environment | None = None

    @property
    def managing(self) -> bool:
        return self.claim is not None and self.claim.role == "manager"

    def setup(self) -> Environment:
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
        payload = self.coordinator.wait_ready(self.key, timeout)
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
        self.session.write_line(
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
        from kubefixtures.lifecycle import secret_values

        return Inspection(
            cluster=self.session.cluster(self.environment.context),
            namespace=self.environment.namespace,
            environment=self.spec.name,
            masks=frozenset(secret_values(self.environment)),
        )

    def teardown(self, *, keep: bool = False, why: str = "") -> None:
        if not self.managing:
            self.coordinator.detach(self.key)
            return
        from kubefixtures.coordination import SharingError

        # Every worker's failures are in the file (note_failure), this one's included.
        try:
            failed = self.coordinator.release(self.key)
        except SharingError as error:
            self.session.write_line(f"kubefixtures: {error}")
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
