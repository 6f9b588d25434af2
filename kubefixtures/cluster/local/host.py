"""What the local cluster changes on the host, and how `down` takes every bit of it back:
the node interface, the CNI bridge, mounts, network namespaces, pod cgroups, the iptables
rules of kube-proxy and our own reject rule (the kernel settings are kernel.py's)."""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from kubefixtures.cluster.base import ClusterError
from kubefixtures.cluster.local import layout

CGROUP_ROOT = Path("/sys/fs/cgroup")
# The kubelet's pod cgroups, under every v1 controller (cgroupsPerQOS with cgroupfs).
POD_CGROUP = "kubepods"


def require_root() -> None:
    if os.geteuid() != 0:
        raise ClusterError(
            "the local cluster runs kubelet, containerd and iptables and so needs root; "
            "run `sudo kubefixtures cluster up`"
        )


def require_commands(*commands: str) -> None:
    missing = [command for command in commands if shutil.which(command) is None]
    if missing:
        raise ClusterError(
            f"missing host programs: {', '.join(missing)}; "
            "install them with `make host-packages` (Debian: see README)"
        )


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ClusterError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def interface_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def ensure_node_interface() -> None:
    """The node's address lives on a port-less bridge of our own (the kernels here have no
    dummy driver): local delivery works, and nothing outside the machine can reach it."""
    if not interface_exists(layout.NODE_INTERFACE):
        _ip("link", "add", layout.NODE_INTERFACE, "type", "bridge")
    addresses = _ip("-o", "addr", "show", "dev", layout.NODE_INTERFACE).stdout
    if f" {layout.NODE_IP}/" not in addresses:
        _ip("addr", "add", f"{layout.NODE_IP}/32", "dev", layout.NODE_INTERFACE)
    _ip("link", "set", layout.NODE_INTERFACE, "up")


def check_ports_free(ports: dict[int, str], address: str) -> None:
    """Fail before starting anything if another program holds one of our ports."""
    for port, owner in sorted(ports.items()):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                raise ClusterError(
                    f"port {address}:{port} (for {owner}) is taken by another program; "
                    f"stop it (`ss -ltnp 'sport = :{port}'` shows which) and try again"
                ) from error


def mounts_under(*roots: Path) -> list[str]:
    prefixes = [str(root.resolve()).rstrip("/") + "/" for root in roots]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].encode().decode("unicode_escape")
        if any(mount_point.startswith(prefix) for prefix in prefixes):
            found.append(mount_point)
    return found


def unmount_all(*roots: Path) -> None:
    # Deepest first, and lazily: a busy mount of a dying process must not stop `down`.
    for mount_point in sorted(set(mounts_under(*roots)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount_point], capture_output=True)


def _pod_cgroup_dirs() -> list[Path]:
    """Every pod cgroup directory, deepest first. os.walk skips what vanishes under it:
    the kernel and the kubelet remove these while we look."""
    found = []
    for controller in _v1_controllers():
        for directory, _, _ in os.walk(controller / POD_CGROUP, topdown=False):
            found.append(Path(directory))
    return found


def kill_pod_processes() -> None:
    """SIGKILL everything in the kubelet's pod cgroups."""
    for directory in _pod_cgroup_dirs():
        with contextlib.suppress(OSError):
            for pid in (directory / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def remove_pod_cgroups() -> None:
    for directory in _pod_cgroup_dirs():
        with contextlib.suppress(OSError):
            directory.rmdir()


def leftover_pod_cgroups() -> list[str]:
    return [str(c / POD_CGROUP) for c in _v1_controllers() if (c / POD_CGROUP).is_dir()]


def _v1_controllers() -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    return [path for path in CGROUP_ROOT.iterdir() if path.is_dir() and not path.is_symlink()]


def remove_interfaces() -> None:
    for name in (layout.BRIDGE_INTERFACE, layout.NODE_INTERFACE):
        if interface_exists(name):
            _ip("link", "del", name, check=False)


def our_interfaces() -> list[str]:
    """Our bridges, and any veth still enslaved to the pod bridge."""
    names = [n for n in (layout.BRIDGE_INTERFACE, layout.NODE_INTERFACE) if interface_exists(n)]
    with contextlib.suppress(FileNotFoundError):  # the bridge may go while we look
        names += [
            port.name for port in Path(f"/sys/class/net/{layout.BRIDGE_INTERFACE}/brif").iterdir()
        ]
    return names


# Chains of ours and of the cluster's in the host's iptables: `down` removes them all.
CHAIN_PREFIXES = ("KUBE-", "CNI-", "KUBEFIXTURES-")
# The chain that refuses what is sent to the Service range but no Service of it serves.
UNSERVED_CHAIN = "KUBEFIXTURES-UNSERVED"


def reject_unserved_service_addresses() -> None:
    """Refuse connections to the Service range that kube-proxy has not rewritten.

    In iptables mode kube-proxy rewrites (DNAT) a connection to a ClusterIP and port only
    once it has synced that Service; anything else sent to the range, a new Service's
    address included, would leave by the default route, where a transparent proxy or a
    sandbox's catch-all may accept it in the Service's place. The filter table sees a
    connection after kube-proxy's rewrite, so this rule refuses only what no Service
    serves, as kube-proxy's nftables mode does by itself: a client is refused, not
    answered by a stranger, until the Service is programmed."""

    def iptables(*arguments: str, check: bool = True) -> bool:
        result = subprocess.run(["iptables", *arguments], capture_output=True, text=True)
        if check and result.returncode != 0:
            raise ClusterError(
                f"iptables {' '.join(arguments)} failed: {result.stderr.strip() or 'no output'}"
            )
        return result.returncode == 0

    # Idempotent: `up` on a running cluster (started by an older kubefixtures) adds it too.
    if not iptables("-N", UNSERVED_CHAIN, check=False):
        iptables("-F", UNSERVED_CHAIN)
    iptables("-A", UNSERVED_CHAIN, "-d", layout.SERVICE_CIDR, "-p", "tcp",
             "-j", "REJECT", "--reject-with", "tcp-reset")  # fmt: skip
    iptables("-A", UNSERVED_CHAIN, "-d", layout.SERVICE_CIDR, "-j", "REJECT")
    for chain in ("OUTPUT", "FORWARD"):
        if not iptables("-C", chain, "-j", UNSERVED_CHAIN, check=False):
            iptables("-I", chain, "-j", UNSERVED_CHAIN)


def kube_iptables_chains() -> list[str]:
    """kube-proxy's chains left in any table (empty when the host is clean)."""
    chains = []
    for command in ("iptables-save", "ip6tables-save"):
        if shutil.which(command) is None:
            continue
        result = subprocess.run([command], capture_output=True, text=True)
        chains += [
            line.split()[0][1:]
            for line in result.stdout.splitlines()
            if line.startswith(tuple(f":{prefix}" for prefix in CHAIN_PREFIXES))
        ]
    return sorted(set(chains))


def remove_kube_iptables() -> None:
    """Delete what kube-proxy's own --cleanup leaves (the kubelet's canary and hint chains)
    and our reject rule: first the rules that jump to those chains, then the chains."""
    for command in ("iptables", "ip6tables"):
        if shutil.which(command) is None:
            continue
        for table in ("filter", "nat", "mangle", "raw"):
            listing = subprocess.run([command, "-t", table, "-S"], capture_output=True, text=True)
            if listing.returncode != 0:
                continue
            ours = [
                line.split()[1]
                for line in listing.stdout.splitlines()
                if line.startswith("-N ") and line.split()[1].startswith(CHAIN_PREFIXES)
            ]
            if not ours:
                continue
            for line in listing.stdout.splitlines():
                words = shlex.split(line)
                if words[:1] == ["-A"] and words[1] not in ours and _jumps_to(words, ours):
                    subprocess.run([command, "-t", table, "-D", *words[1:]], capture_output=True)
            for chain in ours:
                subprocess.run([command, "-t", table, "-F", chain], capture_output=True)
            for chain in ours:
                subprocess.run([command, "-t", table, "-X", chain], capture_output=True)


def _jumps_to(words: list[str], chains: list[str]) -> bool:
    targets = {words[i + 1] for i, word in enumerate(words[:-1]) if word in ("-j", "-g")}
    return bool(targets & set(chains))
