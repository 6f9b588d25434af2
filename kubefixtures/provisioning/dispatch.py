"""Which provisioning an environment fixture gets: the one place that decides.

- ``KUBEFIXTURES_DETAILS`` is set: attach to the environments named in the details files
  (provisioning.attached); nothing is created or deleted.
- Otherwise a namespace of its own (provisioning.fresh): a new one, with
  ``--kubefixtures-reuse`` one an earlier run left (provisioning.reused), or with
  ``--kubefixtures-pool`` a spare copy claimed from the pool (provisioning.pooled); or, with
  ``--kubefixtures-namespace``, the user's existing namespace (provisioning.existing).
- On a pytest-xdist worker, either is shared for a session-scoped environment
  (provisioning.shared). Narrower scopes stay per worker: a module's tests are spread over
  workers anyway.

Imported when a fixture first needs an environment, never at pytest start-up.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kubefixtures.provisioning.base import (
    DETAILS_VARIABLE,
    EnvironmentSpec,
    Provisioning,
    SessionView,
)
from kubefixtures.provisioning.fresh import FreshProvisioning

if TYPE_CHECKING:
    from kubefixtures.xdist.state import Coordinator

__all__ = ["local_provisioning", "provisioning_for"]


def provisioning_for(
    spec: EnvironmentSpec, session: SessionView, shared: Coordinator | None, scope: str
) -> Provisioning:
    """What brings up (or finds) the environment of one fixture; ``shared`` is this xdist
    worker's handle on the run's state file (None when it does not share)."""
    details = os.environ.get(DETAILS_VARIABLE, "").strip()
    local: Provisioning
    if details:
        from kubefixtures.provisioning.attached import AttachedProvisioning

        local = AttachedProvisioning(spec, session, details)
    else:
        local = local_provisioning(spec, session)
    if shared is not None and scope == "session":
        from kubefixtures.provisioning.shared import SharedProvisioning

        return SharedProvisioning(local, session, shared)
    return local


def local_provisioning(spec: EnvironmentSpec, session: SessionView) -> FreshProvisioning:
    """A namespace of this session's own (reused from an earlier run with reuse on, claimed
    from the pool with a pool), or the existing one ``--kubefixtures-namespace`` names."""
    if session.settings.namespace:
        from kubefixtures.provisioning.existing import ExistingNamespace

        existing = ExistingNamespace(
            spec, session.settings, session.session_id, session.reporter, session.secrets
        )
        return FreshProvisioning(spec, session, existing)
    if session.settings.reuse:
        from kubefixtures.provisioning.reused import ReuseNamespace

        strategy = ReuseNamespace(spec, session.settings, session.session_id, session.reporter)
        return FreshProvisioning(spec, session, strategy)
    if session.settings.claims_spares and session.pool is not None:
        from kubefixtures.provisioning.pooled import ClaimSpare

        return FreshProvisioning(spec, session, ClaimSpare(spec, session.pool()))
    return FreshProvisioning(spec, session)
