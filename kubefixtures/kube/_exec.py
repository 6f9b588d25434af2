"""Running a command in a container: the apiserver's exec subprotocol over WebSocket.

``v5.channel.k8s.io`` is asked for first, ``v4.channel.k8s.io`` second (the server picks).
Each message starts with a channel byte: 0 stdin (to the server), 1 stdout, 2 stderr,
3 the final Status as JSON (its ``details.causes[reason=ExitCode]`` holds a non-zero exit
code; ``status: Success`` means 0). v5 adds channel 255 to close a stream: ``[255, 0]``
closes stdin, so that a command reading until EOF (``cat``, ``tar x``, ``psql``) ends.
v4 has no such signal; there, stdin reaches the command but never ends.

The framing and the opening handshake are the port forwarder's (``_wsframe``, ``_wsconn``).
What is new is the channel layer and a connection kept warm: every exec needs a fresh
WebSocket, and one TLS connection to the apiserver is opened ahead (and again after each
use), so that an exec pays for the HTTP upgrade and the kubelet, not for a TLS handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from kubefixtures.errors import ClusterError, ControlError
from kubefixtures.kube._proxy import ProxyError
from kubefixtures.kube.config import ClusterConfig
from kubefixtures.kube.errors import TunnelError
from kubefixtures.kube.portforward import _loop
from kubefixtures.kube.portforward import _wsframe as ws
from kubefixtures.kube.portforward._api import ApiEndpoint
from kubefixtures.kube.portforward._wsconn import WebSocketProtocol, connect, upgrade_request

__all__ = ["SUBPROTOCOLS", "ExecResult", "PodExec", "exit_code_of"]

SUBPROTOCOLS = "v5.channel.k8s.io, v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, STATUS = 0, 1, 2, 3
CLOSE = 255  # v5: "close this stream", followed by the stream's channel number
_STDIN_CHUNK = 256 * 1024
# A connection kept this long unused is replaced rather than trusted: the apiserver (or a
# proxy on the way) may close idle connections, and a stale one costs a retry.
_WARM_MAX_AGE = 30.0
_OPEN_TIMEOUT = 10.0
_ATTEMPTS = 3
_RETRY_PAUSE = 0.2
_KUBELET_UNREACHABLE = "error sending request"

JSON = dict[str, Any]


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a container left: its exit code and its whole output."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def exit_code_of(status: JSON) -> int | None:
    """The exit code a final Status carries; None when the command did not run at all."""
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            with contextlib.suppress(TypeError, ValueError):
                return int(cause.get("message"))
    return None


def exec_path(
    endpoint: ApiEndpoint,
    namespace: str,
    pod: str,
    argv: Sequence[str],
    *,
    container: str | None,
    stdin: bool,
) -> str:
    query: list[tuple[str, str]] = [("command", part) for part in argv]
    if container:
        query.append(("container", container))
    query += [("stdin", "true" if stdin else "false"), ("stdout", "true"), ("stderr", "true")]
    return (
        f"{endpoint.base_path}/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/exec"
        f"?{urlencode(query)}"
    )


class ExecConnection(WebSocketProtocol):
    """One command's WebSocket: gathers stdout, stderr and the final Status."""

    SUBPROTOCOL = SUBPROTOCOLS

    def __init__(self, request: bytes, key: str) -> None:
        super().__init__(request, key, self.SUBPROTOCOL)
        self._messages = ws.MessageAssembler()
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.status = bytearray()
        self.broken = ""  # why the server's bytes made no sense, if they did not

    def send_stdin(self, data: bytes) -> None:
        for start in range(0, len(data), _STDIN_CHUNK):
            self.send_binary(bytes((STDIN,)), memoryview(data)[start : start + _STDIN_CHUNK])

    def close_stdin(self) -> bool:
        """Tell the command its stdin ended (v5 only); whether that could be said."""
        if self.subprotocol != V5:
            return False
        self.send_binary(bytes((CLOSE, STDIN)))
        return True

    # Channels need whole messages, so it takes whole frames rather than on_data's bytes.
    def on_frame(self, frame: ws.Frame) -> None:
        message = self._messages.add(frame)
        if message is None or not message[1]:
            return
        payload = message[1]
        stream = {STDOUT: self.stdout, STDERR: self.stderr, STATUS: self.status}.get(payload[0])
        if stream is not None:
            stream += memoryview(payload)[1:]

    def on_protocol_error(self, error: ws.WebSocketProtocolError) -> None:
        self.broken = str(error)
        self.abort()


class _Idle(asyncio.Protocol):
    """A connected, TLS-established transport waiting to be upgraded."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.born = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        # Nothing was asked: whatever comes is the server giving up on us.
        self.lost = True
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def usable(self) -> bool:
        return (
            not self.lost
            and self.transport is not None
            and not self.transport.is_closing()
            and time.monotonic() - self.born < _WARM_MAX_AGE
        )


class _WarmConnection:
    """One spare connection to the apiserver, on the event loop; replaced after each use."""

    def __init__(self, endpoint: ApiEndpoint) -> None:
        self._endpoint = endpoint
        self._spare: _Idle | None = None
        self._opening: asyncio.Task[None] | None = None
        self._closed = False

    def take(self) -> asyncio.Transport | None:
        spare, self._spare = self._spare, None
        self.refill()
        if spare is not None and spare.usable():
            assert spare.transport is not None
            return spare.transport
        if spare is not None and spare.transport is not None:
            spare.transport.abort()
        return None

    def refill(self) -> None:
        if self._closed or self._spare is not None:
            return
        if self._opening is None or self._opening.done():
            self._opening = asyncio.create_task(self._open())

    async def _open(self) -> None:
        protocol = _Idle()
        try:
            async with asyncio.timeout(_OPEN_TIMEOUT):
                await connect(self._endpoint, lambda: protocol)
        except (OSError, TimeoutError, ClusterError):
            return  # the exec that needs a connection opens one and says what is wrong
        if self._closed:
            if protocol.transport is not None:
                protocol.transport.abort()
            return
        self._spare = protocol

    async def close(self) -> None:
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        spare, self._spare = self._spare, None
        if spare is not None and spare.transport is not None:
            # abort, not close: a TLS close waits for the server's close_notify, and the
            # shared loop may stop first (the last user gone), leaving the socket open
            # for the garbage collector to warn about. An unused connection loses nothing.
            spare.transport.abort()


class PodExec:
    """Runs commands in pods for synchronous callers, on the shared event-loop thread."""

    def __init__(self, config: ClusterConfig) -> None:
        self._config = config
        self._endpoint: ApiEndpoint | None = None
        self._warm: _WarmConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def run(
        self,
        namespace: str,
        pod: str,
        argv: Sequence[str],
        *,
        container: str | None,
        stdin: bytes | None,
        timeout: float,
        what: str,
    ) -> ExecResult:
        """Run ``argv`` in ``pod`` and wait for it to end. ``what`` names it in errors.

        Raises ControlError for a refused upgrade (RBAC, no such pod or container), a
        command that could not start, a broken connection or ``timeout`` elapsed.
        """
        with self._lock:
            if self._loop is None:
                self._loop = _loop.SHARED.acquire()
            loop = self._loop
        coroutine = self._run(
            namespace, pod, argv, container=container, stdin=stdin, timeout=timeout, what=what
        )
        return _loop.run(coroutine, loop, timeout=None)

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            if self._warm is not None:
                _loop.run(self._warm.close(), loop, timeout=10)
        finally:
            _loop.SHARED.release()

    async def _run(
        self,
        namespace: str,
        pod: str,
        argv: Sequence[str],
        *,
        container: str | None,
        stdin: bytes | None,
        timeout: float,
        what: str,
    ) -> ExecResult:
        if self._endpoint is None:
            self._endpoint = ApiEndpoint.from_configuration(self._config)
        if self._warm is None:
            self._warm = _WarmConnection(self._endpoint)
        endpoint = self._endpoint
        path = exec_path(
            endpoint, namespace, pod, argv, container=container, stdin=stdin is not None
        )
        command = shlex.join(argv)
        deadline = asyncio.get_running_loop().time() + timeout
        for attempt in range(_ATTEMPTS):
            try:
                async with asyncio.timeout_at(deadline):
                    connection = await self._open(path, what)
                    try:
                        if stdin is not None:
                            connection.send_stdin(stdin)
                            connection.close_stdin()
                        await connection.closed
                    finally:
                        connection.abort()
            except TimeoutError:
                raise ControlError(
                    f"exec in {what}: {command} did not finish within {timeout:g} s"
                ) from None
            if connection.broken:
                raise ControlError(
                    f"exec in {what}: the apiserver broke the protocol: {connection.broken}"
                )
            if not connection.status:
                raise ControlError(
                    f"exec in {what}: the connection ended before {command} reported its "
                    "exit status"
                )
            try:
                status = json.loads(bytes(connection.status))
            except ValueError:
                status = {"message": bytes(connection.status).decode("utf-8", "replace")}
            code = exit_code_of(status)
            if code is not None:
                return ExecResult(code, bytes(connection.stdout), bytes(connection.stderr))
            message = " ".join(str(status.get("message") or status).split())
            never_started = not connection.stdout and not connection.stderr
            if never_started and _KUBELET_UNREACHABLE in message and attempt + 1 < _ATTEMPTS:
                # The apiserver could not reach the kubelet (it resets connections while
                # busy or restarting): the command never started, so it is safe to retry.
                await asyncio.sleep(_RETRY_PAUSE * (attempt + 1))
                continue
            raise ControlError(f"exec in {what}: {command} could not run: {message}")
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _open(self, path: str, what: str) -> ExecConnection:
        assert self._endpoint is not None
        assert self._warm is not None
        endpoint = self._endpoint
        for attempt in range(2):
            key = ws.new_key()
            request = await upgrade_request(endpoint, path, SUBPROTOCOLS, key, "kubefixtures")
            connection = ExecConnection(request, key)
            warm = self._warm.take() if attempt == 0 else None
            try:
                if warm is not None:
                    warm.set_protocol(connection)
                    connection.connection_made(warm)
                else:
                    await connect(endpoint, lambda: connection)  # noqa: B023 (awaited here)
                await connection.opened
                return connection
            except TunnelError as error:
                connection.abort()
                if warm is not None and error.status == 0:
                    continue  # the spare had gone stale: once more on a new connection
                raise _upgrade_error(error, what) from None
            except (OSError, ProxyError) as error:
                connection.abort()
                reason = error.strerror if isinstance(error, OSError) else None
                raise ClusterError(
                    f"exec in {what}: cannot reach the Kubernetes API server at "
                    f"{endpoint.url}: {reason or error}"
                ) from None
            except BaseException:
                connection.abort()
                raise
        raise AssertionError("unreachable: the second attempt returns or raises")


def _upgrade_error(error: TunnelError, what: str) -> ControlError:
    message = " ".join(str(error).split())
    if error.status == 403:
        return ControlError(f"exec in {what}: forbidden (RBAC denies pods/exec): {message}")
    if error.status == 404:
        return ControlError(f"exec in {what}: not found: {message}")
    if error.status == 401:
        return ControlError(f"exec in {what}: the API server rejected our credentials: {message}")
    if error.status:
        return ControlError(f"exec in {what} failed (HTTP {error.status}): {message}")
    return ControlError(f"exec in {what} failed: {message}")
