"""A catch-all beside the cluster, as on hosts whose default route answers for any address.

Behind many hosts' default route a transparent proxy, a VPN's or a sandbox's catch-all
accepts a connection to any address (this CI's answers ``HTTP/1.1 400 Bad Request`` to
redis-py). A connection to a ClusterIP that kube-proxy has not rewritten yet (a new
Service, in iptables mode) goes there, so a connect probe to the ClusterIP cannot tell
kube-proxy's answer from the stranger's. ``catch_all_beside_the_cluster`` builds such a
host on purpose, the same on any machine: what kube-proxy does not rewrite in the Service
range is redirected to a local listener that answers as that proxy does. kube-proxy's
rewrite comes first, so programmed Services keep working, as they do behind a real one.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from kubefixtures.cluster.local import layout

PROXY_ANSWER = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
# An address of the Service range that no Service is given (the allocator hands out the
# range's low end first on a cluster this small).
UNALLOCATED = "10.96.255.254"


def _answer_everyone(listener: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(1)
            with contextlib.suppress(OSError):
                connection.recv(4096)
                connection.sendall(PROXY_ANSWER)


@contextlib.contextmanager
def catch_all_beside_the_cluster() -> Iterator[None]:
    """Connections to the Service range that kube-proxy does not rewrite are accepted here
    and answered as an HTTP proxy answers what it cannot parse."""
    iptables = shutil.which("iptables")
    if iptables is None:
        pytest.fail("iptables is needed to build a catch-all (apt install iptables)")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    thread = threading.Thread(target=_answer_everyone, args=(listener, stop), daemon=True)
    thread.start()
    # Appended: kube-proxy's jump to its Service rules comes first in the chain.
    rule = [
        "-t", "nat", "OUTPUT", "-d", layout.SERVICE_CIDR, "-p", "tcp",
        "-m", "comment", "--comment", "kubefixtures-test-catch-all",
        "-j", "REDIRECT", "--to-ports", str(listener.getsockname()[1]),
    ]  # fmt: skip
    adding = [iptables, rule[0], rule[1], "-A", *rule[2:]]
    subprocess.run(adding, check=True, capture_output=True, timeout=30)
    try:
        with socket.create_connection((UNALLOCATED, 6379), timeout=5) as stranger:
            stranger.sendall(b"PING\r\n")
            assert stranger.recv(100).startswith(b"HTTP/1.1 400"), "the catch-all is in place"
        yield
    finally:
        removing = [iptables, rule[0], rule[1], "-D", *rule[2:]]
        subprocess.run(removing, check=True, capture_output=True, timeout=30)
        stop.set()
        listener.close()
        thread.join(timeout=5)
