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
    child -> parent  ready                   once it serves (its start-up went well)
                     log(level, message)     logged on "kubefixtures.portforward"
                     closed(id)

One child per test process serves every forward of it; the first user starts it (a forward,
or a `PrestartedRelay`, which the pytest session takes while pytest collects so that the start-up is
off the first connections' path), the last one to let go ends it and waits for it. A child
whose parent dies reads EOF on the socketpair and exits. A parent whose child dies reads EOF
too: each forward then serves its listening socket (it kept its own descriptor) in this
process, as ``relay="thread"`` does, and says so in a warning; connections in flight were
the child's and are gone with it. A child that cannot start (no process, or one that dies
before it says ``ready``) is not tried again: one warning, and every forward of this
process serves its connections here.
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
from collections.abc import Callable
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

# The child needs the standard library and five modules of this package, whose __init__s
# import the API client and the forwarder (half of a 0.2 s start-up). It registers the three
# packages bare (their directory, no __init__ run), then runs `main`; isolated (-I: no
# environment variables, no current directory in the path) and without site-packages (-S).
_HERE = os.path.dirname(os.path.realpath(__file__))
_PACKAGES = (
    ("kubefixtures", os.path.dirname(os.path.dirname(_HERE))),
    ("kubefixtures.kube", os.path.dirname(_HERE)),
    ("kubefixtures.kube.portforward", _HERE),
)
_CHILD_PROGRAM = f"""\
# {PROCESS_NAME}: the direct route's relay of a test process (what ps shows first)
import sys, types
for name, directory in {_PACKAGES!r}:
    package = types.ModuleType(name)
    package.__path__ = [directory]
    sys.modules[name] = package
from {__name__} import main
main()
"""


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

    def __init__(self, on_start_failure: Callable[[str], None] | None = None) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            level = log.getEffectiveLevel()
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-I", "-S", "-c", _CHILD_PROGRAM),
                    *(str(child_end.fileno()), str(level)),
                ],
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
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
        self.ready = False  # it said so: it started up
        # Called with why, from the reader thread, if the child dies before it is ready.
        self.on_start_failure = on_start_failure
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
            self._received(op, message)
        if not self._stopping:
            self._gone()

    def _received(self, op: str, message: dict[str, Any]) -> None:
        if op == "ready":
            self.ready = True
        elif op == "log":
            log.log(int(message.get("level", logging.WARNING)), "%s", message.get("message"))
        elif op == "closed":
            with self._lock:
                listener = self._listeners.get(int(message.get("id", 0)))
            if listener is not None:
                listener.closed_by_relay()

    def _gone(self) -> None:
        """The child closed its channel without being asked: tell whoever is concerned."""
        why = self._why_gone()
        with self._lock:
            self.lost = why
            listeners = list(self._listeners.values())
        if not self.ready:
            if self.on_start_failure is not None:
                self.on_start_failure(why)  # one warning for them all
        elif not listeners:
            log.warning("%s; the next forward starts a new one", why)
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
        # Why no relay process can start here, once one failed to: not tried again.
        self.unavailable: str | None = None

    def acquire(self) -> RelayProcess | None:
        """The relay, started if needed (or if the last one died), or None when no relay
        process can start here (said once, in a warning): pair a relay with `release()`."""
        with self._lock:
            if self.unavailable is not None:
                return None
            if self.current is None or self.current.lost is not None:
                try:
                    self.current = RelayProcess(on_start_failure=self._start_failed)
                except OSError as error:
                    self._start_failed(f"cannot start it: {error.strerror or error}")
                    return None
            self.current.users += 1
            return self.current

    def _start_failed(self, why: str) -> None:
        # Under our lock, or from the reader thread of a relay that died before `ready`.
        self.unavailable = why
        log.warning(
            "no relay process (%s): the direct route's 127.0.0.1 ports are relayed in the "
            "test process",
            why,
        )

    def release(self, relay: RelayProcess) -> None:
        with self._lock:
            relay.users -= 1
            if relay.users > 0:
                return
            if self.current is relay:
                self.current = None
        relay.stop()


SHARED = _Share()


class PrestartedRelay:
    """One reference to the shared relay process, taken before any forward needs it, so
    that the first direct forwards find it running; `release()` lets it go (the last user
    stops the process and waits). Never fails: a relay that cannot start is said once, in a
    warning, and the forwards serve their connections in this process."""

    def __init__(self) -> None:
        self._relay = SHARED.acquire()

    @property
    def pid(self) -> int | None:
        return self._relay.pid if self._relay is not None else None

    def release(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            SHARED.release(relay)


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
        relay = SHARED.acquire()
        if relay is None:  # no relay process here: SHARED said why, once
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
        elif not relay.ready:  # it never started: SHARED said so, once
            self._serve_here()
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
    with contextlib.suppress(OSError):  # the parent gone: EOF ends us
        channel.send(_encode({"op": "ready"}))
    try:
        await child.done
    finally:
        await child.shut()


def main(argv: list[str] | None = None) -> None:
    """``python -m kubefixtures.kube.portforward._relay FD LEVEL`` (or `_CHILD_PROGRAM`):
    serve until EOF on FD."""
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
