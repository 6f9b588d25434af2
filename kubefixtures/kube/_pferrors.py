"""The errors a port-forward raises; each message is one line that says what happened."""

from __future__ import annotations

from kubefixtures.errors import ClusterError, KubefixturesError


class PortForwardError(KubefixturesError):
    """A Service port could not be forwarded."""


class ServiceNotFoundError(PortForwardError):
    """The Service does not exist (or its port does not)."""


class NoReadyEndpointsError(PortForwardError):
    """No ready pod is behind the Service; the message says why."""


class PortForwardForbiddenError(PortForwardError):
    """RBAC forbids what forwarding needs: reading services, endpointslices and pods,
    and the pods/portforward subresource."""


class ApiServerUnreachableError(PortForwardError, ClusterError):
    """The apiserver cannot be reached, or rejected our credentials."""


class TunnelError(PortForwardError):
    """The apiserver or the kubelet broke the port-forward protocol, or refused the upgrade."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
