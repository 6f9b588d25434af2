"""``HttpStub``: a small helper over Mountebank's REST API (the catalog's ``http_stub``).

An imposter is a fake HTTP server on one of the stub's imposter ports (4545-4549, declared
by its Service, so each is forwarded to the test process and reachable in the cluster as
``http://http-stub:PORT``)::

    imposter = http_stub.create([{"predicates": [{"equals": {"path": "/price"}}],
                                  "responses": [{"is": {"statusCode": 200, "body": "42"}}]}])
    urllib.request.urlopen(imposter.url + "/price").read() == b"42"
    imposter.requests()  # what the service under test sent it

Imposters a helper created are deleted by ``close()`` (the ``http_stub`` fixture does it
after each test); ones created by others (another xdist worker) are left alone.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubefixtures.catalog.connections import HttpStubDetails
from kubefixtures.errors import KubefixturesError

__all__ = ["HttpStub", "Imposter"]

_TIMEOUT = 10.0
# The admin API is on 127.0.0.1 or at the Service's ClusterIP (--kubefixtures-direct-address):
# never through an HTTP(S)_PROXY of the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Imposter:
    port: int
    """The port it listens on in the cluster (``http://http-stub:PORT`` for pods)."""
    url: str
    """Its local address, forwarded to the stub's pod (for the test process)."""
    admin_url: str
    """``/imposters/PORT`` on the Mountebank admin API."""
    cluster_url: str = field(default="")

    def requests(self) -> list[dict[str, Any]]:
        """The requests it received (recorded: ``recordRequests`` is on)."""
        status, body = _call("GET", self.admin_url)
        _check(status, body, f"reading imposter {self.port}")
        recorded: list[dict[str, Any]] = json.loads(body).get("requests", [])
        return recorded


class HttpStub:
    """Create and delete Mountebank imposters through the admin API."""

    def __init__(self, details: HttpStubDetails) -> None:
        self.details = details
        self._created: list[int] = []

    @property
    def admin_url(self) -> str:
        return self.details.admin_url

    def create(
        self,
        stubs: Sequence[Mapping[str, Any]] = (),
        *,
        port: int | None = None,
        protocol: str = "http",
        name: str | None = None,
        default_response: Mapping[str, Any] | None = None,
    ) -> Imposter:
        """An imposter with Mountebank ``stubs``, on ``port`` or the first free imposter port."""
        ports = [port] if port is not None else sorted(self.details.imposter_ports)
        if port is not None and port not in self.details.imposter_ports:
            allowed = ", ".join(map(str, sorted(self.details.imposter_ports)))
            raise KubefixturesError(
                f"http_stub.create(port={port}): imposters can only listen on {allowed} "
                "(the stub Service's ports)"
            )
        for candidate in ports:
            body: dict[str, Any] = {
                "protocol": protocol,
                "port": candidate,
                "recordRequests": True,
                "stubs": list(stubs),
            }
            if name:
                body["name"] = name
            if default_response is not None:
                body["defaultResponse"] = dict(default_response)
            status, answer = _call("POST", f"{self.admin_url}/imposters", body)
            if status == 400 and b"port" in answer.lower() and port is None:
                continue  # taken (by another worker): try the next one
            _check(status, answer, f"creating an imposter on port {candidate}")
            self._created.append(candidate)
            local = self.details.imposter_ports[candidate]
            return Imposter(
                port=candidate,
                url=f"{protocol}://{self.details.host}:{local}",
                admin_url=f"{self.admin_url}/imposters/{candidate}",
                cluster_url=f"{protocol}://http-stub.{self.details.namespace}.svc:{candidate}",
            )
        raise KubefixturesError(
            "http_stub: every imposter port is taken "
            f"({', '.join(map(str, ports))}); delete imposters you no longer need"
        )

    def delete(self, imposter: Imposter | int) -> None:
        port = imposter.port if isinstance(imposter, Imposter) else imposter
        status, body = _call("DELETE", f"{self.admin_url}/imposters/{port}")
        _check(status, body, f"deleting imposter {port}")
        if port in self._created:
            self._created.remove(port)

    def imposters(self) -> list[dict[str, Any]]:
        """Every imposter the stub server has (``GET /imposters``)."""
        status, body = _call("GET", f"{self.admin_url}/imposters")
        _check(status, body, "listing imposters")
        listed: list[dict[str, Any]] = json.loads(body).get("imposters", [])
        return listed

    def close(self) -> None:
        """Delete the imposters this helper created."""
        for port in list(self._created):
            self.delete(port)

    def __repr__(self) -> str:
        return f"HttpStub(admin_url={self.admin_url!r}, created={self._created})"


def _call(method: str, url: str, body: Mapping[str, Any] | None = None) -> tuple[int, bytes]:
    """(status, body) of one JSON request to the admin API (the standard library's HTTP:
    the stub needs no client of its own)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _DIRECT.open(request, timeout=_TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise KubefixturesError(f"http_stub: cannot reach {url}: {reason}") from None


def _check(status: int, body: bytes, doing: str) -> None:
    if 200 <= status < 300:
        return
    detail = body.decode("utf-8", "replace").strip().replace("\n", " ")[:300]
    raise KubefixturesError(f"http_stub: {doing}: Mountebank answered {status}: {detail}")
