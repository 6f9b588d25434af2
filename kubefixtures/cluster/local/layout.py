"""Where the local cluster keeps its files, and the addresses it uses.

Everything the cluster writes lives under one state directory (wiped on the next `up`,
so logs survive a `down` for inspection) and one runtime directory on tmpfs; what is
expensive to make (the Kubernetes build, images) lives in a cache that survives both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CONTEXT_NAME = "kubefixtures-local"
NODE_NAME = "kubefixtures-node"

# The node's address sits on a dummy interface of our own rather than on eth0: it is the
# same on every machine, survives a change of the host's address, and `down` removes it.
NODE_INTERFACE = "kf-node0"
NODE_IP = "10.250.0.1"
BRIDGE_INTERFACE = "kf-cni0"
POD_SUBNET = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
# Pods the kubelet admits: every address of POD_SUBNET but the network's, the broadcast's
# and the gateway's (the kubelet's default, 110, held a pool of 50 two-pod copies beside
# nothing else).
MAX_PODS = 253
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
CLUSTER_DOMAIN = "cluster.local"

APISERVER_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
ETCD_CLIENT_URL = f"https://127.0.0.1:{ETCD_CLIENT_PORT}"
ETCD_PEER_URL = f"https://127.0.0.1:{ETCD_PEER_PORT}"
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
PROXY_HEALTHZ_PORT = 10256
PROXY_METRICS_PORT = 10249
COREDNS_READY_PORT = 8181
DNS_PORT = 53

PAUSE_IMAGE = "kubefixtures.local/pause:3.10"


def default_cache_dir() -> Path:
    configured = os.environ.get("KUBEFIXTURES_CACHE_DIR")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kubefixtures"


@dataclass(frozen=True)
class Layout:
    state: Path
    run: Path
    cache: Path

    @classmethod
    def default(cls) -> Layout:
        return cls(
            state=Path(
                os.environ.get("KUBEFIXTURES_LOCAL_STATE_DIR", "/var/lib/kubefixtures/local")
            ),
            run=Path(os.environ.get("KUBEFIXTURES_LOCAL_RUN_DIR", "/run/kubefixtures")),
            cache=default_cache_dir(),
        )

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids(self) -> Path:
        return self.run / "pids"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def containerd_root(self) -> Path:
        return self.state / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.config / "cni"

    @property
    def cni_state(self) -> Path:
        return self.run / "cni"

    @property
    def kernel_settings_record(self) -> Path:
        # On tmpfs, as the kernel's settings are: both go with a reboot.
        return self.run / "kernel-settings.json"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def images(self) -> Path:
        return Path(os.environ.get("KUBEFIXTURES_IMAGES_DIR", str(self.cache / "images")))

    @property
    def binaries(self) -> Path:
        return self.cache / "bin"

    def kubeconfig_for(self, component: str) -> Path:
        return self.config / f"{component}.kubeconfig"
