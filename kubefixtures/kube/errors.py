"""The one hierarchy of errors the Kubernetes API and the port forwarder raise.

Every class is a ``kubefixtures.errors.KubefixturesError``, so callers that only report
errors catch that; callers that must tell answers apart catch a class here (``NotFound``,
``Conflict``...) and never compare HTTP status codes. ``ApiError(status, reason, message)``
builds the class of its status, so code that raises it by status still gets the right one.
"""

from __future__ import annotations

from typing import ClassVar

from kubefixtures.errors import ClusterError, KubefixturesError

__all__ = [
    "ApiError",
    "ApiServerUnreachableError",
    "BadRequest",
    "Conflict",
    "DirectRouteError",
    "Forbidden",
    "Gone",
    "Invalid",
    "NoReadyEndpointsError",
    "NotFound",
    "PortForwardError",
    "PortForwardForbiddenError",
    "PortForwardNotFound",
    "ServerError",
    "ServiceNotFoundError",
    "TunnelError",
    "Unauthorized",
]


# --- the API server's answers ---------------------------------------------------------------


class ApiError(ClusterError):
    """The API server answered with an error status."""

    statuses: ClassVar[tuple[int, ...]] = ()  # the statuses a subclass stands for

    def __new__(cls, status: int, reason: str = "", message: str = "") -> ApiError:
        chosen = _class_of(status) if cls is ApiError else cls
        return super().__new__(chosen, status, reason, message)

    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[ApiError], tuple[int, str, str]]:
        return (ApiError, (self.status, self.reason, self.message))


class BadRequest(ApiError):
    """400: the request is malformed (also: a container's log asked for too early)."""

    statuses = (400,)


class Unauthorized(ApiError):
    """401: the credentials were refused."""

    statuses = (401,)


class Forbidden(ApiError):
    """403: RBAC (or an admission plugin) forbids it."""

    statuses = (403,)


class NotFound(ApiError):
    """404: no such object (or kind)."""

    statuses = (404,)


class Conflict(ApiError):
    """409: the object exists already, or changed meanwhile."""

    statuses = (409,)


class Gone(ApiError):
    """410: a watch's resource version is too old."""

    statuses = (410,)


class Invalid(ApiError):
    """422: the object does not validate."""

    statuses = (422,)


class ServerError(ApiError):
    """5xx: the API server (or what is behind it) failed."""

    statuses = (500, 501, 502, 503, 504)


def _class_of(status: int) -> type[ApiError]:
    for known in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Gone, Invalid):
        if status in known.statuses:
            return known
    return ServerError if status >= 500 else ApiError


# --- port-forwards --------------------------------------------------------------------------


class PortForwardError(KubefixturesError):
    """A Service port could not be forwarded."""


class ServiceNotFoundError(PortForwardError):
    """The Service does not exist (or its port does not)."""


class PortForwardNotFound(PortForwardError):
    """An object a forward reads (the Service, a pod) does not exist (404)."""


class NoReadyEndpointsError(PortForwardError):
    """No ready pod is behind the Service; the message says why."""


class PortForwardForbiddenError(PortForwardError):
    """RBAC forbids what forwarding needs: reading services, endpointslices and pods,
    and the pods/portforward subresource."""


class ApiServerUnreachableError(PortForwardError, ClusterError):
    """The apiserver cannot be reached, or rejected our credentials."""


class DirectRouteError(PortForwardError):
    """A direct route was asked for, and the pod's IP cannot be reached from here."""


class TunnelError(PortForwardError):
    """The apiserver or the kubelet broke the port-forward protocol, or refused the upgrade."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def refused(self) -> bool:
        """The apiserver refused the upgrade for a reason another transport shares:
        credentials, RBAC, or no such pod."""
        return self.status in (401, 403, 404)
