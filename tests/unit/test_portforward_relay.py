"""The direct route with ``relay="process"``: the same listener in a child process.

Against the fake apiserver, with real TCP servers in this process as the "pods" (as in
test_portforward_direct): the child dials them at 127.0.0.1 as it would a pod's IP.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from kubefixtures.kube.portforward import PortForwardError, ServicePortForward, _relay
from tests.unit.test_portforward_direct import (
    api,
    connection,
    forward,
    no_pod_ready,
    pod,
    receive,
    wait_until,
)
from tests.unit.test_portforward_fakeapi import FakeApiServer, echo

__all__ = ["api"]  # the fixture, every test twice: splice(2) and copies


def relayed(api: FakeApiServer, **options: object) -> ServicePortForward:
    return forward(api, "direct", relay="process", **options)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (reaped or not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(autouse=True)
def no_relay_left_behind() -> Iterator[None]:
    assert _relay.SHARED.current is None
    yield
    assert _relay.SHARED.current is None, "a relay process outlived its forwards"


def open_files(pid: int) -> set[str]:
    """What the process's descriptors point at (those that stay open while we look)."""
    files = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            files.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return files


def current_relay() -> _relay.RelayProcess:
    relay = _relay.SHARED.current
    assert relay is not None
    return relay


def test_the_child_relays_to_the_pod_and_ends_with_the_last_forward(api: FakeApiServer) -> None:
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with relayed(api) as pf:
            assert pf.route == "direct"
            relay = current_relay()
            assert relay.pid != os.getpid()
            assert alive(relay.pid)
            with open(f"/proc/{relay.pid}/cmdline", "rb") as cmdline:
                assert b"# kubefixtures-relay: " in cmdline.read()  # ps names it
            payload = bytes(range(256)) * 8000
            assert echo(pf.local_port, payload) == b"a:" + payload
        assert relay.process.returncode == 0  # waited for: EOF ended it
        assert not alive(relay.pid)


def test_descriptor_passing_the_child_accepts_on_the_parents_socket() -> None:
    """No forward: the parent's listening socket goes over SCM_RIGHTS, and the child
    accepts on it and splices to the target the parent names."""
    import asyncio

    from kubefixtures.kube.portforward._direct_listener import listen
    from kubefixtures.kube.portforward._endpoints import Target

    class Pods:
        def __init__(self, target: Target) -> None:
            self.target: Target | None = target

        async def ready_target(self) -> Target:
            assert self.target is not None
            return self.target

    async def scenario(port: int) -> bytes:
        sock = listen("127.0.0.1", 0)
        listener = _relay.RelayedListener(
            sock,
            Pods(Target("web-a", port, "127.0.0.1")),
            namespace="ns",
            what="x",
            connect_timeout=5,
        )
        try:
            relay = current_relay()
            # The child holds the very socket this process bound: the same inode.
            inode = os.fstat(sock.fileno()).st_ino
            await asyncio.to_thread(
                wait_until, lambda: f"socket:[{inode}]" in open_files(relay.pid)
            )
            return await asyncio.to_thread(echo, listener.port, b"passed")
        finally:
            await listener.close()

    with pod("a") as web_a:
        assert asyncio.run(scenario(web_a.port)) == b"a:passed"


def test_forwards_share_one_child_and_the_last_one_stops_it(api: FakeApiServer) -> None:
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with relayed(api) as first:
            relay = current_relay()
            with relayed(api) as second:
                assert current_relay() is relay
                assert echo(second.local_port, b"2") == b"a:2"
            assert alive(relay.pid)
            assert echo(first.local_port, b"1") == b"a:1"
        assert not alive(relay.pid)


def test_new_connections_follow_the_endpoints_to_the_next_pod(api: FakeApiServer) -> None:
    with pod("a") as web_a, pod("b") as web_b:
        api.pod_port = web_a.port
        with relayed(api) as pf:
            assert echo(pf.local_port, b"one") == b"a:one"
            api.pod_port = web_b.port
            api.set_ready_pods(["web-b"])
            wait_until(lambda: pf.pod == "web-b")
            # The child hears of the change a moment after this process.
            wait_until(lambda: echo(pf.local_port, b"two") == b"b:two")


def dropped(pf: ServicePortForward) -> bool:
    with connection(pf) as sock:
        sock.sendall(b"hello")
        try:
            return sock.recv(10) == b""
        except ConnectionResetError:
            return True


def test_the_childs_warnings_are_logged_here(
    api: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with relayed(api, connect_timeout=0.3) as pf:
            no_pod_ready(api, pf)
            # The child hears of it a moment after this process: until then it splices.
            wait_until(lambda: dropped(pf))
            wait_until(lambda: "dropped: no ready pod behind" in caplog.text)
            api.set_ready_pods(["web-a"])
            wait_until(lambda: echo(pf.local_port, b"back") == b"a:back")
    assert f"connection to 127.0.0.1:{pf.local_port} dropped: no ready pod behind" in caplog.text
    assert any(
        record.name == "kubefixtures.portforward" and record.levelname == "WARNING"
        for record in caplog.records
    )


def test_a_killed_child_new_connections_are_relayed_here(
    api: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    with pod("a") as web_a, pod("b") as web_b:
        api.pod_port = web_a.port
        with relayed(api) as pf:
            in_flight = connection(pf)
            in_flight.sendall(b"x")
            assert receive(in_flight, 3) == b"a:x"
            relay = current_relay()
            os.kill(relay.pid, signal.SIGKILL)
            wait_until(lambda: _relay.SHARED.current is None or relay.lost is not None)
            wait_until(lambda: "relayed in this process from now on" in caplog.text)
            assert f"was killed by SIGKILL; connections to 127.0.0.1:{pf.local_port}" in caplog.text
            # The connection in flight was the child's: it is gone with it.
            with in_flight, contextlib.suppress(ConnectionResetError):
                assert in_flight.recv(10) == b""
            assert echo(pf.local_port, b"after") == b"a:after"
            # The listener in this process follows the pods as the child's did.
            api.pod_port = web_b.port
            api.set_ready_pods(["web-b"])
            wait_until(lambda: pf.pod == "web-b")
            assert echo(pf.local_port, b"next") == b"b:next"
            # A new forward starts a new child.
            with relayed(api) as second:
                assert current_relay() is not relay
                assert echo(second.local_port, b"fresh") == b"b:fresh"
        assert not alive(relay.pid)


def test_a_bind_error_is_the_parents_and_starts_no_child(api: FakeApiServer) -> None:
    with pod("a") as web_a, socket.socket() as taken:
        api.pod_port = web_a.port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortForwardError, match=f"cannot listen on 127.0.0.1:{port}"):
            relayed(api, local_port=port).start()


def test_a_child_whose_parent_is_killed_exits_by_itself() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from kubefixtures.kube.portforward._relay import SHARED\n"
            "print(SHARED.acquire().pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
    finally:
        parent.kill()
        parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()
    # Orphaned, the child is reparented (and reaped) by init or a subreaper: it must go.
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


# -- started early (`prestart`), and children that do not start -----------------------------
def test_a_prestarted_child_serves_the_first_forward_and_ends_with_the_last_user(
    api: FakeApiServer,
) -> None:
    early = _relay.PrestartedRelay()
    relay = current_relay()
    assert early.pid == relay.pid
    assert alive(relay.pid)
    wait_until(lambda: relay.ready)  # started up before any forward asked for it
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with relayed(api) as pf:
            assert current_relay() is relay
            assert echo(pf.local_port, b"early") == b"a:early"
        assert alive(relay.pid)  # the early reference still holds it
        early.release()
    assert relay.process.returncode == 0
    assert not alive(relay.pid)
    early.release()  # once is enough


def test_a_prestarted_child_killed_before_the_first_forward_is_replaced(
    api: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    early = _relay.PrestartedRelay()
    killed = current_relay()
    wait_until(lambda: killed.ready)
    os.kill(killed.pid, signal.SIGKILL)
    wait_until(lambda: killed.lost is not None)
    assert "was killed by SIGKILL; the next forward starts a new one" in caplog.text
    try:
        with pod("a") as web_a:
            api.pod_port = web_a.port
            with relayed(api) as pf:
                assert current_relay() is not killed
                assert alive(current_relay().pid)
                assert echo(pf.local_port, b"again") == b"a:again"
    finally:
        early.release()
    assert not alive(killed.pid)


@pytest.fixture
def no_relay_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the test breaks about starting the child is forgotten after it."""
    monkeypatch.setattr(_relay.SHARED, "unavailable", None)


def relay_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelname == "WARNING" and "relay" in record.getMessage()
    ]


@pytest.mark.parametrize(
    ("interpreter", "why"),
    [
        # Starts, and exits at once without a word: as a child whose imports fail does.
        ("/bin/false", "the relay process (pid *) exited with status 1"),
        ("/nonexistent/python3", "cannot start it: No such file or directory"),
    ],
)
@pytest.mark.usefixtures("no_relay_process")
def test_a_child_that_cannot_start_forwards_serve_here_with_one_warning(
    api: FakeApiServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    interpreter: str,
    why: str,
) -> None:
    import fnmatch

    monkeypatch.setattr(_relay.sys, "executable", interpreter)
    early = _relay.PrestartedRelay()
    started = _relay.SHARED.current
    wait_until(lambda: _relay.SHARED.unavailable is not None)
    try:
        with pod("a") as web_a:
            api.pod_port = web_a.port
            with relayed(api) as first, relayed(api) as second:
                assert echo(first.local_port, b"1") == b"a:1"
                assert echo(second.local_port, b"2") == b"a:2"
                assert _relay.SHARED.current is started  # no second try
    finally:
        early.release()
    warnings = relay_warnings(caplog)
    assert len(warnings) == 1, warnings
    expected = f"no relay process ({why}): the direct route's 127.0.0.1 ports are relayed *"
    assert fnmatch.fnmatch(warnings[0], expected), warnings


@pytest.mark.usefixtures("no_relay_process")
def test_a_forward_that_finds_the_child_dying_at_start_up_serves_here(
    api: FakeApiServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forward acquires the child before it has died: it hears of it (EOF) and serves
    here, without a warning of its own."""
    monkeypatch.setattr(_relay.sys, "executable", "/bin/false")
    with pod("a") as web_a:
        api.pod_port = web_a.port
        with relayed(api) as pf:
            wait_until(lambda: _relay.SHARED.unavailable is not None)
            wait_until(lambda: echo(pf.local_port, b"here") == b"a:here")
    assert len(relay_warnings(caplog)) == 1, relay_warnings(caplog)


def test_the_child_starts_without_the_packages_init_modules() -> None:
    """Its start-up is an interpreter and the few modules it runs (checked: not the API
    client, not the forwarder), isolated from the environment."""
    program = _relay._CHILD_PROGRAM.replace(
        "from kubefixtures.kube.portforward._relay import main\nmain()\n",
        "import kubefixtures.kube.portforward._relay\n"
        "print(sorted(name for name in sys.modules if name.startswith('kubefixtures')))\n",
    )
    assert program != _relay._CHILD_PROGRAM
    loaded = subprocess.run(
        [sys.executable, "-I", "-S", "-c", program],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout
    assert "kubefixtures.kube.portforward._relay" in loaded
    for heavy in ("kubefixtures.kube.client", "_forwarder", "kubefixtures.factories", "'ssl'"):
        assert heavy not in loaded, loaded
