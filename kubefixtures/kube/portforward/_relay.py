"""The direct route's data path in a child process (``relay="process"``).

Our event-loop thread needs the interpreter's lock for every step of every connection, so
busy Python threads in the test process delay it (docs/routes.md, "Busy threads in the test
process"). With this relay the same `DirectListener` and `Splice` run in a child process
with a GIL of its own; the test process keeps only the control side.

The parent still creates each listening socket (so its port, and any bind error, are known
at once), then hands a duplicate to the child over a Unix SOCK_SEQPACKET socketpair
(SCM_RIGHTS) with small JSON messages, one per packet:

    parent -> child  listen(id, what, namespace, connect_timeout) + the descriptor
                     target(id, {pod, address, port} | null)   the forward's current pod
                     fatal(id, message)      waiting connections are dropped with it
                     close(id)               answered by closed(id)
    child -> parent  log(level, message)     logged on "kubefixtures.portforward"
                     closed(id)

One child per test process serves every forward of it; the first forward that needs it
starts it, the last one to stop ends it and waits for it. A child whose parent dies reads
EOF on the socketpair and exits. A parent whose child dies reads EOF too: each forward then
serves its listening socket (it kept its own descriptor) in this process, as
``relay="thread"`` does, and says so in a warning; connections in flight were the child's
and are gone with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from kubefixtures.kube.errors import PortForwardError
from kubefixtures.kube.portforward._direct_listener import DirectListener, Pods
from kubefixtures.kube.portforward._endpoints import Target

log = logging.getLogger("kubefixtures.portforward")

PROCESS_NAME = "kubefixtures-relay"
# Our messages are a few hundred bytes; a log line may be longer (it is cut to fit).
MAX_MESSAGE = 65536
# How long a stopping forward waits for the child to close its listener, and the last one
# for the child to exit after EOF (it is then killed).
CLOSE_TIMEOUT = 10.0
EXIT_TIMEOUT = 5.0


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _target_message(target: Target | None) -> dict[str, Any] | None:
    if target is None:
        return None
    return {"pod": target.pod, "address": target.address, "port": target.port}


# -- the parent's side ------------------------------------------------------------------------
class RelayProcess:
    """The child process and the parent's end of its socketpair; a reader thread logs what
    the child says and tells the listeners when it is gone."""

    def __init__(self) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            package_root = os.path.dirname(
                os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            )
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                path for path in (package_root, env.get("PYTHONPATH", "")) if path
            )
            level = log.getEffectiveLevel()
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(child_end.fileno()), str(level)],
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        self._channel = parent_end
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._listeners: dict[int, RelayedListener] = {}
        self._next_id = 0
        self._stopping = False
        self.lost: str | None = None  # why the child is gone, once it is
        self.users = 0  # forwards using it (the share counts them)
        self._reader = threading.Thread(
            target=self._read, name=f"{PROCESS_NAME}-reader", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def register(self, listener: RelayedListener) -> int:
        with self._lock:
            self._next_id += 1
            self._listeners[self._next_id] = listener
            lost = self.lost
        if lost is not None:  # died since it was acquired: the reader has told the others
            listener.relay_lost(lost)
        return self._next_id

    def unregister(self, listener_id: int) -> None:
        with self._lock:
            self._listeners.pop(listener_id, None)

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        """Sends one message (OSError when the child is gone)."""
        data = _encode(message)
        with self._send_lock:
            if fds:
                socket.send_fds(self._channel, [data], fds)
            else:
                self._channel.send(data)

    def _read(self) -> None:
        while True:
            try:
                data = self._channel.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:
                break
            try:
                message = json.loads(data)
                op = message["op"]
            except (ValueError, KeyError, TypeError):
                log.warning("relay process sent an unreadable message: %r", data[:200])
                continue
            if op == "log":
                log.log(int(message.get("level", logging.WARNING)), "%s", message.get("message"))
            elif op == "closed":
                with self._lock:
                    listener = self._listeners.get(int(message.get("id", 0)))
                if listener is not None:
                    listener.closed_by_relay()
        if self._stopping:
            return
        why = self._why_gone()
        with self._lock:
            self.lost = why
            listeners = list(self._listeners.values())
        for listener in listeners:
            listener.relay_lost(why)

    def _why_gone(self) -> str:
        try:
            code = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return f"the relay process (pid {self.pid}) closed its channel"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the relay process (pid {self.pid}) was killed by {name}"
        return f"the relay process (pid {self.pid}) exited with status {code}"

    def stop(self) -> None:
        """Ends the child (EOF on its channel, then a kill if it lingers) and waits for it."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._channel.shutdown(socket.SHUT_RDWR)
        try:
            self.process.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=EXIT_TIMEOUT)
        self._channel.close()


class _Share:
    """One relay process per test process, reference-counted like `_loop.SharedLoop`: the
    first user starts it, the last one stops it and waits for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: RelayProcess | None = None

    def acquire(self) -> RelayProcess:
        """The relay, started if needed (or if the last one died); pair with `release()`."""
        with self._lock:
            if self.current is None or self.current.lost is not None:
                self.current = RelayProcess()
            self.current.users += 1
            return self.current

    def release(self, relay: RelayProcess) -> None:
        with self._lock:
            relay.users -= 1
            if relay.users > 0:
                return
            if self.current is relay:
                self.current = None
        relay.stop()


SHARED = _Share()


class RelayedListener:
    """The parent's face of one forward's listener in the relay: what `DirectListener` is
    for ``relay="thread"`` (``port``, ``close()``), plus `follow` and `fail`, which the
    forward calls as its current pod changes. Created on the forward's event loop."""

    def __init__(
        self,
        sock: socket.socket,
        pods: Pods,
        *,
        namespace: str,
        what: str,
        connect_timeout: float,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._pods = pods
        self._namespace = namespace
        self._what = what
        self._connect_timeout = connect_timeout
        self.port: int = sock.getsockname()[1]
        self._closed = False
        self._closed_reply: asyncio.Future[None] | None = None
        self._in_process: DirectListener | None = None  # after the relay was lost
        self._relay: RelayProcess | None = None
        self._id = 0
        try:
            relay = SHARED.acquire()
        except OSError as error:
            log.warning(
                "%s: cannot start the relay process (%s); served in this process",
                what,
                error.strerror or error,
            )
            self._serve_here()
            return
        self._relay = relay
        self._id = relay.register(self)
        try:
            relay.send(
                {
                    "op": "listen",
                    "id": self._id,
                    "what": what,
                    "namespace": namespace,
                    "connect_timeout": connect_timeout,
                },
                [sock.fileno()],
            )
            self.follow(pods.target)
        except OSError:
            pass  # the reader thread sees the child gone and tells relay_lost

    @property
    def relay_pid(self) -> int | None:
        """The relay process's id while this listener is served there."""
        return self._relay.pid if self._relay is not None else None

    def follow(self, target: Target | None) -> None:
        """New connections go to ``target`` (None: they wait for one)."""
        self._tell({"op": "target", "id": self._id, "target": _target_message(target)})

    def fail(self, message: str) -> None:
        """Connections waiting for a pod are dropped with ``message`` (RBAC forbids...)."""
        self._tell({"op": "fatal", "id": self._id, "message": message})

    def _tell(self, message: dict[str, Any]) -> None:
        if self._relay is None or self._closed:
            return
        with contextlib.suppress(OSError):  # gone: relay_lost follows from the reader
            self._relay.send(message)

    # Called from the relay's reader thread.
    def closed_by_relay(self) -> None:
        self._loop.call_soon_threadsafe(self._reply_closed)

    def relay_lost(self, why: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to serve
            self._loop.call_soon_threadsafe(self._lost, why)

    def _reply_closed(self) -> None:
        if self._closed_reply is not None and not self._closed_reply.done():
            self._closed_reply.set_result(None)

    def _lost(self, why: str) -> None:
        relay, self._relay = self._relay, None
        if relay is None:
            return
        relay.unregister(self._id)
        if self._closed:
            self._reply_closed()
        else:
            log.warning(
                "%s: %s; connections to 127.0.0.1:%s are relayed in this process from now on",
                self._what,
                why,
                self.port,
            )
            self._serve_here()
        SHARED.release(relay)  # it is dead: this does not wait

    def _serve_here(self) -> None:
        self._in_process = DirectListener(
            self._sock,
            self._pods,
            namespace=self._namespace,
            what=self._what,
            connect_timeout=self._connect_timeout,
        )

    async def close(self) -> None:
        """Stops accepting and resets every connection (in the relay: once it says so)."""
        if self._closed:
            return
        self._closed = True
        if self._in_process is not None:
            await self._in_process.close()
            return
        relay = self._relay
        try:
            if relay is not None:
                self._closed_reply = self._loop.create_future()
                with contextlib.suppress(OSError, TimeoutError):
                    relay.send({"op": "close", "id": self._id})
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await asyncio.shield(self._closed_reply)
        finally:
            self._sock.close()
            still, self._relay = self._relay, None  # None: lost meanwhile (_lost released it)
            if still is not None:
                still.unregister(self._id)
                await asyncio.to_thread(SHARED.release, still)


# -- the child's side -------------------------------------------------------------------------
class _FedPods:
    """The `Pods` a listener in the child follows: the parent tells it the current pod."""

    def __init__(self) -> None:
        self.target: Target | None = None
        self._fatal: str | None = None
        self._changed = asyncio.Event()

    def set_target(self, target: Target | None) -> None:
        self.target = target
        self._signal()

    def fail(self, message: str) -> None:
        self._fatal = message
        self._signal()

    def _signal(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def ready_target(self) -> Target:
        while True:
            if self._fatal is not None:
                raise PortForwardError(self._fatal)
            if self.target is not None:
                return self.target
            await self._changed.wait()


class _ToParent(logging.Handler):
    """Sends the child's log records to the parent, which logs them."""

    def __init__(self, channel: socket.socket) -> None:
        super().__init__()
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.name != log.name:
                text = f"{PROCESS_NAME} ({record.name}): {text}"
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            data = _encode({"op": "log", "level": record.levelno, "message": text[:60000]})
            self._channel.send(data)
        except Exception:  # a parent gone (EOF ends us soon), or an unprintable record
            return


class _Child:
    def __init__(self, channel: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._channel = channel
        self._listeners: dict[int, tuple[DirectListener, _FedPods]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.done: asyncio.Future[None] = self._loop.create_future()
        self._loop.add_reader(channel.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self._channel, MAX_MESSAGE, 4)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds = b"", []
        if not data:  # the parent is gone, or done with us
            for fd in fds:
                os.close(fd)
            self._loop.remove_reader(self._channel.fileno())
            if not self.done.done():
                self.done.set_result(None)
            return
        message = json.loads(data)
        op = message["op"]
        listener_id = int(message["id"])
        if op == "listen":
            sock = socket.socket(fileno=fds[0])
            for fd in fds[1:]:
                os.close(fd)
            pods = _FedPods()
            listener = DirectListener(
                sock,
                pods,
                namespace=message["namespace"],
                what=message["what"],
                connect_timeout=float(message["connect_timeout"]),
            )
            self._listeners[listener_id] = (listener, pods)
            return
        for fd in fds:
            os.close(fd)
        entry = self._listeners.get(listener_id)
        if entry is None:
            return
        listener, pods = entry
        if op == "target":
            target = message["target"]
            pods.set_target(
                None
                if target is None
                else Target(pod=target["pod"], port=int(target["port"]), address=target["address"])
            )
        elif op == "fatal":
            pods.fail(str(message["message"]))
        elif op == "close":
            del self._listeners[listener_id]
            task = self._loop.create_task(self._close(listener_id, listener))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close(self, listener_id: int, listener: DirectListener) -> None:
        await listener.close()
        with contextlib.suppress(OSError):
            self._channel.send(_encode({"op": "closed", "id": listener_id}))

    async def shut(self) -> None:
        await asyncio.gather(*self._closing, return_exceptions=True)
        for listener, _ in self._listeners.values():
            await listener.close()
        self._listeners.clear()


async def _serve(channel: socket.socket) -> None:
    child = _Child(channel)
    try:
        await child.done
    finally:
        await child.shut()


def main(argv: list[str] | None = None) -> None:
    """``python -m kubefixtures.kube.portforward._relay FD LEVEL``: serve until EOF on FD."""
    arguments = sys.argv[1:] if argv is None else argv
    fd, level = int(arguments[0]), int(arguments[1])
    # Ctrl-C in the test run reaches the whole process group: the parent decides when we
    # end (EOF), so that its forwards' connections are not cut under it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = socket.socket(fileno=fd)
    channel.setblocking(True)  # sends are small; reads come from the loop's readiness
    handler = _ToParent(channel)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    try:
        asyncio.run(_serve(channel))
    finally:
        root.removeHandler(handler)
        channel.close()


if __name__ == "__main__":
    main()
