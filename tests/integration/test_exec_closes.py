"""env.exec leaves no connection to the API server open once its environment is gone:
the next test, run under filterwarnings=error, must not see a ResourceWarning.

Exec keeps a spare TLS connection warm. It was closed politely (TLS close_notify, then
waiting for the server's), and the shared event loop could stop before the server
answered: the socket stayed open until the garbage collector warned about it. Whether
the server answered first was a race, hence several rounds.
"""

from __future__ import annotations

import contextlib
import gc
import socket
from urllib.parse import urlsplit

import pytest

from kubefixtures import ControlError, Environment, environment
from kubefixtures.kube import Cluster

pytestmark = pytest.mark.cluster

web = environment("environments/token-web/", values={"ready_delay": "0"}, scope="function")
ROUNDS = 3


def open_sockets_to(server: str) -> list[socket.socket]:
    """Plain sockets (asyncio's; urllib3's pooled ones are SSLSocket) still connected to
    the API server."""
    parts = urlsplit(server)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    found = []
    for thing in gc.get_objects():
        if type(thing) is socket.socket and thing.fileno() != -1:
            with contextlib.suppress(OSError):
                if thing.getpeername()[1] == port:
                    found.append(thing)
    return found


@pytest.mark.parametrize("outcome", ["exits", "fails", "times out"] * ROUNDS)
def test_exec_in_an_environment(web: Environment, outcome: str) -> None:
    if outcome == "exits":
        assert web.exec("deployment/web", ["cat"], stdin="x").stdout == b"x"
    elif outcome == "fails":
        with pytest.raises(ControlError, match="could not run"):
            web.exec("deployment/web", ["no-such-command"])
    else:
        with pytest.raises(ControlError, match="did not finish"):
            web.exec("deployment/web", ["sleep", "5"], timeout=0.5)


def test_after_teardown_no_connection_is_left(kubefixtures_cluster: Cluster) -> None:
    assert open_sockets_to(kubefixtures_cluster.config.server) == []
    gc.collect()  # a ResourceWarning here fails the test (filterwarnings = error)
