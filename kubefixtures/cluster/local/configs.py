"""The configuration files of every component, written as JSON (which is YAML too)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from kubefixtures.cluster.local import layout
from kubefixtures.cluster.local.layout import Layout
from kubefixtures.private_files import write_private_file

APISERVER_URL = f"https://{layout.NODE_IP}:{layout.APISERVER_PORT}"


def _text(content: str | dict[str, Any]) -> str:
    return content if isinstance(content, str) else json.dumps(content, indent=2) + "\n"


def _write(path: Path, content: str | dict[str, Any]) -> Path:
    """A configuration file that holds no secret (they live in a 0700 directory anyway)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_text(content))
    return path


def kubeconfig(
    pki: Path, identity: str, context: str = layout.CONTEXT_NAME, embed: bool = False
) -> dict[str, Any]:
    """A kubeconfig for one certificate identity. Embedded data makes it self-contained
    (for the user's ~/.kube/config); paths keep the components' files small."""

    def reference(key: str, path: Path) -> dict[str, str]:
        if embed:
            return {f"{key}-data": base64.b64encode(path.read_bytes()).decode()}
        return {key: str(path)}

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {
                    "server": APISERVER_URL,
                    **reference("certificate-authority", pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": context,
                "user": {
                    **reference("client-certificate", pki / f"{identity}.crt"),
                    **reference("client-key", pki / f"{identity}.key"),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }


def write_kubeconfigs(paths: Layout) -> None:
    # Private: the admin's embeds a system:masters key, the others point at keys.
    for identity in ("controller-manager", "scheduler", "kube-proxy", "kubelet", "coredns"):
        write_private_file(paths.kubeconfig_for(identity), _text(kubeconfig(paths.pki, identity)))
    write_private_file(paths.admin_kubeconfig, _text(kubeconfig(paths.pki, "admin", embed=True)))


def write_containerd_config(paths: Layout) -> Path:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    toml = f"""\
version = 2
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"
# Plugins that would reach outside our own directories or are of no use to a CRI node.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{paths.containerd_socket}"

[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"

[{cri}]
  sandbox_image = "{layout.PAUSE_IMAGE}"
  # Network namespaces under our state directory, so `down` finds exactly ours.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  # Hosts that withhold CAP_SYS_RESOURCE (as some VMs and CI sandboxes do) refuse every
  # negative oom_score_adj, and the CRI asks -998 for each sandbox: clamp to our own.
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{paths.cni_conf_dir}"
"""
    return _write(paths.config / "containerd.toml", toml)


def write_cni_config(paths: Layout) -> None:
    # No ipMasq: nothing leaves this machine, and it keeps CNI from writing iptables rules
    # that `down` would have to find again.
    _write(
        paths.cni_conf_dir / "10-kubefixtures.conflist",
        {
            "cniVersion": "1.0.0",
            "name": "kubefixtures",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": layout.BRIDGE_INTERFACE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": layout.POD_SUBNET, "gateway": layout.POD_GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(paths.cni_state / "networks"),
                    },
                }
            ],
        },
    )
    _write(
        paths.cni_conf_dir / "99-loopback.conf",
        {"cniVersion": "1.0.0", "name": "lo", "type": "loopback"},
    )


def write_kubelet_config(paths: Layout) -> Path:
    pki = paths.pki
    return _write(
        paths.config / "kubelet.yaml",
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": layout.NODE_IP,
            "port": layout.KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": layout.KUBELET_HEALTHZ_PORT,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
            # containerd 1.6 cannot tell the kubelet its cgroup driver (no RuntimeConfig).
            "cgroupDriver": "cgroupfs",
            # These hosts have cgroup v1; 1.35 refuses it unless told otherwise.
            "failCgroupV1": False,
            "failSwapOn": False,
            "clusterDNS": [layout.NODE_IP],
            "clusterDomain": layout.CLUSTER_DOMAIN,
            "resolvConf": "/etc/resolv.conf",
            # Images come from tarballs, not a registry: never collect them (the pause
            # image above all).
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "serializeImagePulls": False,
            "maxPods": layout.MAX_PODS,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "staticPodPath": "",
            "shutdownGracePeriod": "0s",
            # Fast feedback for tests: pods become Ready and go away promptly.
            "syncFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
        },
    )


def write_scheduler_config(paths: Layout) -> Path:
    return _write(
        paths.config / "scheduler.yaml",
        {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(paths.kubeconfig_for("scheduler"))},
            "leaderElection": {"leaderElect": False},
        },
    )


def write_proxy_config(paths: Layout) -> Path:
    return _write(
        paths.config / "kube-proxy.yaml",
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(paths.kubeconfig_for("kube-proxy"))},
            "mode": "iptables",
            "clusterCIDR": layout.CLUSTER_CIDR,
            "hostnameOverride": layout.NODE_NAME,
            "bindAddress": layout.NODE_IP,
            "healthzBindAddress": f"127.0.0.1:{layout.PROXY_HEALTHZ_PORT}",
            "metricsBindAddress": f"127.0.0.1:{layout.PROXY_METRICS_PORT}",
            "iptables": {
                # Program each Service change at once (the default waits up to 1 s after
                # the previous sync): tests connect the moment their pods are Ready.
                "minSyncPeriod": "0s",
                # NodePorts on 127.0.0.1 need net.ipv4.conf.all.route_localnet=1, which
                # lets other hosts reach services bound to this machine's loopback. Nothing
                # here uses NodePorts; the kernel setting stays as it was.
                "localhostNodePorts": False,
            },
            # Zero leaves the host's conntrack sysctls alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        },
    )


def write_corefile(paths: Layout) -> Path:
    kubeconfig_path = paths.kubeconfig_for("coredns")
    return _write(
        paths.config / "Corefile",
        f""".:{layout.DNS_PORT} {{
    bind {layout.NODE_IP}
    errors
    ready 127.0.0.1:{layout.COREDNS_READY_PORT}
    kubernetes {layout.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig_path} {layout.CONTEXT_NAME}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
""",
    )


# What CoreDNS's client certificate may do, and nothing more.
COREDNS_RBAC: list[dict[str, Any]] = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "kubefixtures:coredns"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["services", "pods", "namespaces"],
                "verbs": ["list", "watch"],
            },
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["list", "watch"],
            },
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubefixtures:coredns"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "kubefixtures:coredns",
        },
        "subjects": [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "User",
                "name": "kubefixtures:coredns",
            }
        ],
    },
]


def write_bootstrap_manifest(paths: Layout) -> Path:
    return _write(
        paths.config / "bootstrap.json",
        {"apiVersion": "v1", "kind": "List", "items": COREDNS_RBAC},
    )
