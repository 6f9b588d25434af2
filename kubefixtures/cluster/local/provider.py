"""A real single-node Kubernetes from upstream components, run as host processes.

Start order follows upstream's hack/local-up-cluster.sh: etcd and containerd, then the
apiserver, then everything that talks to it at once (they retry until it answers).
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubefixtures.cluster import kubeconfig
from kubefixtures.cluster.base import ClusterError, ClusterStatus
from kubefixtures.cluster.local import build, configs, host, layout, pki
from kubefixtures.cluster.local.kernel import KernelSettings
from kubefixtures.cluster.local.layout import Layout
from kubefixtures.cluster.local.processes import (
    Component,
    Supervisor,
    client_tls,
    http_ok,
    insecure_tls,
    log_tail,
    pids_matching,
    terminate,
)

# Stopped in this order: the kubelet first so that it restarts nothing, etcd last.
COMPONENTS = (
    "kubelet",
    "kube-proxy",
    "coredns",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "containerd",
    "etcd",
)
HOST_PROGRAMS = ("etcd", "containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip",
                 "iptables", "openssl", "umount")  # fmt: skip
NODE_READY_TIMEOUT = 90.0
STOP_GRACE_SECONDS = 2.0


class LocalProvider:
    name = "local"

    def __init__(self, paths: Layout | None = None) -> None:
        self.paths = paths or Layout.default()
        self.supervisor = Supervisor(self.paths)
        self.kernel = KernelSettings(self.paths.kernel_settings_record)

    # -- what the CLI calls ------------------------------------------------------------

    def available(self) -> bool:
        return all(shutil.which(program) for program in HOST_PROGRAMS)

    def up(self) -> ClusterStatus:
        host.require_root()
        host.require_commands(*HOST_PROGRAMS)
        # Cheap when cached, and it (re)links kubectl and helm into this Python's bin
        # directory even when the cluster already runs (a fresh virtualenv, say).
        tools = build.ensure_tools(self.paths.binaries, self.paths.cache / "logs")
        current = self.status()
        if current.running and current.nodes_ready:
            host.reject_unserved_service_addresses()
            return current
        # Half a cluster (a component crashed) or the remains of one whose processes were
        # killed (a stopped CI job, a restarted machine): clear it away and start over.
        self._clear_host()
        self._fresh_directories()
        host.check_ports_free(
            {
                layout.ETCD_CLIENT_PORT: "etcd",
                layout.ETCD_PEER_PORT: "etcd",
                layout.CONTROLLER_MANAGER_PORT: "kube-controller-manager",
                layout.SCHEDULER_PORT: "kube-scheduler",
                layout.KUBELET_HEALTHZ_PORT: "kubelet",
                layout.PROXY_HEALTHZ_PORT: "kube-proxy",
                layout.PROXY_METRICS_PORT: "kube-proxy",
                layout.COREDNS_READY_PORT: "coredns",
            },
            "127.0.0.1",
        )
        self.kernel.prepare()
        host.ensure_node_interface()
        host.check_ports_free(
            {
                layout.APISERVER_PORT: "kube-apiserver",
                layout.KUBELET_PORT: "kubelet",
                layout.DNS_PORT: "coredns",
            },
            layout.NODE_IP,
        )
        pki.ensure_pki(self.paths.pki)
        self._write_configs()
        try:
            host.reject_unserved_service_addresses()
            self._start(tools)
            self.kernel.note_ours()
        except BaseException:
            self._clear_host()
            raise
        kubeconfig.merge_context(configs.kubeconfig(self.paths.pki, "admin", embed=True))
        return self.status()

    def down(self) -> None:
        host.require_root()
        self._clear_host()
        kubeconfig.remove_context(layout.CONTEXT_NAME)
        leftovers = self.leftovers()
        if leftovers:
            raise ClusterError("`down` could not remove: " + "; ".join(leftovers))

    def _clear_host(self) -> None:
        """Stop every process of ours and undo every change to the host, whatever state
        a previous run left it in."""
        self.supervisor.stop("kubelet")
        host.kill_pod_processes()
        for shim in pids_matching(str(self.paths.containerd_socket)):
            terminate(shim, timeout=5)
        for name in COMPONENTS:
            # The cluster's data is thrown away: no component needs long to finish (the
            # apiserver would otherwise drain its watches for the best part of a minute).
            self.supervisor.stop(name, timeout=STOP_GRACE_SECONDS)
        self._cleanup_proxy_rules()
        host.unmount_all(self.paths.state, self.paths.run)
        host.remove_pod_cgroups()
        host.remove_kube_iptables()
        host.remove_interfaces()
        self.kernel.restore()
        shutil.rmtree(self.paths.run, ignore_errors=True)

    def status(self) -> ClusterStatus:
        running = self.supervisor.running(COMPONENTS)
        if not running:
            return ClusterStatus(provider=self.name, running=False)
        missing = [name for name in COMPONENTS if name not in running]
        detail = [f"not running: {', '.join(missing)}"] if missing else []
        ready, version = self._nodes_ready_and_version()
        return ClusterStatus(
            provider=self.name,
            running=not missing,
            context=layout.CONTEXT_NAME,
            kubeconfig=kubeconfig.user_kubeconfig_path(),
            version=version,
            nodes_ready=ready,
            detail=[*detail, f"state: {self.paths.state}", f"logs:  {self.paths.logs}"],
        )

    def load_image(self, archive: Path) -> None:
        if not archive.is_file():
            raise ClusterError(f"{archive}: no such image archive")
        if self.supervisor.pid("containerd") is None:
            raise ClusterError("the local cluster is not running; `kubefixtures cluster up` first")
        self._import_images([archive])

    def remove_image(self, ref: str) -> None:
        if self.supervisor.pid("containerd") is None:
            raise ClusterError("the local cluster is not running; `kubefixtures cluster up` first")
        result = subprocess.run(
            ["ctr", "--address", str(self.paths.containerd_socket), "--namespace", "k8s.io",
             "images", "rm", ref],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if result.returncode != 0 and "not found" not in result.stderr:
            last = result.stderr.strip().splitlines()[-1:] or ["no output"]
            raise ClusterError(f"could not remove image {ref}: {last[0]}")

    def leftovers(self) -> list[str]:
        """Anything of ours still on the host; empty after a clean `down`."""
        found = [f"process {name}" for name in self.supervisor.running(COMPONENTS)]
        found += [f"shim pid {pid}" for pid in pids_matching(str(self.paths.containerd_socket))]
        found += [f"mount {m}" for m in host.mounts_under(self.paths.state, self.paths.run)]
        found += [f"interface {name}" for name in host.our_interfaces()]
        found += [f"iptables chain {chain}" for chain in host.kube_iptables_chains()]
        found += [f"cgroup {path}" for path in host.leftover_pod_cgroups()]
        if self.kernel.record.exists():
            found.append(f"kernel settings not restored (recorded in {self.kernel.record})")
        return found

    # -- the steps of `up` -----------------------------------------------------------

    def _fresh_directories(self) -> None:
        host.unmount_all(self.paths.state, self.paths.run)
        for directory in (self.paths.state, self.paths.run):
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True, mode=0o700)
        self.paths.logs.mkdir()

    def _write_configs(self) -> None:
        configs.write_kubeconfigs(self.paths)
        configs.write_containerd_config(self.paths)
        configs.write_cni_config(self.paths)
        configs.write_kubelet_config(self.paths)
        configs.write_scheduler_config(self.paths)
        configs.write_proxy_config(self.paths)
        configs.write_corefile(self.paths)
        configs.write_bootstrap_manifest(self.paths)

    def _start(self, tools: build.Tools) -> None:
        paths, pki_dir = self.paths, self.paths.pki
        admin_tls = client_tls(pki_dir / "ca.crt", pki_dir / "admin.crt", pki_dir / "admin.key")
        etcd_client = {
            "ca": pki_dir / f"{pki.ETCD_CA_NAME}.crt",
            "cert": pki_dir / "apiserver-etcd-client.crt",
            "key": pki_dir / "apiserver-etcd-client.key",
        }
        etcd_tls = client_tls(etcd_client["ca"], etcd_client["cert"], etcd_client["key"])
        # Loopback is open to every local user: etcd (all of the cluster's data, Secrets
        # included) answers only TLS clients with a certificate of its own CA, as kubeadm
        # sets it up; its single-member peer listener the same.
        etcd = Component(
            "etcd",
            [
                "etcd",
                "--name=kubefixtures",
                f"--data-dir={paths.etcd_data}",
                f"--listen-client-urls={layout.ETCD_CLIENT_URL}",
                f"--advertise-client-urls={layout.ETCD_CLIENT_URL}",
                f"--listen-peer-urls={layout.ETCD_PEER_URL}",
                f"--initial-advertise-peer-urls={layout.ETCD_PEER_URL}",
                f"--initial-cluster=kubefixtures={layout.ETCD_PEER_URL}",
                f"--cert-file={pki_dir / 'etcd-server.crt'}",
                f"--key-file={pki_dir / 'etcd-server.key'}",
                "--client-cert-auth=true",
                f"--trusted-ca-file={etcd_client['ca']}",
                f"--peer-cert-file={pki_dir / 'etcd-peer.crt'}",
                f"--peer-key-file={pki_dir / 'etcd-peer.key'}",
                "--peer-client-cert-auth=true",
                f"--peer-trusted-ca-file={etcd_client['ca']}",
                # A throwaway cluster: fewer fsyncs, much faster on slow disks.
                "--unsafe-no-fsync",
                "--quota-backend-bytes=4294967296",
            ],
            lambda: http_ok(f"{layout.ETCD_CLIENT_URL}/health", etcd_tls),
            env={"ETCD_UNSUPPORTED_ARCH": ""},
        )
        containerd = Component(
            "containerd",
            ["containerd", f"--config={paths.config / 'containerd.toml'}"],
            self._containerd_answers,
        )
        self.supervisor.start_all([etcd, containerd])

        apiserver = Component(
            "kube-apiserver",
            [
                str(tools.component("kube-apiserver")),
                f"--advertise-address={layout.NODE_IP}",
                f"--bind-address={layout.NODE_IP}",
                f"--secure-port={layout.APISERVER_PORT}",
                f"--etcd-servers={layout.ETCD_CLIENT_URL}",
                f"--etcd-cafile={etcd_client['ca']}",
                f"--etcd-certfile={etcd_client['cert']}",
                f"--etcd-keyfile={etcd_client['key']}",
                # Nothing asks the apiserver anything without credentials (our readiness
                # checks present the admin certificate, the components their own), so no
                # request is anonymous: even /healthz, /livez and /readyz answer 401.
                "--anonymous-auth=false",
                f"--service-cluster-ip-range={layout.SERVICE_CIDR}",
                f"--client-ca-file={pki_dir / 'ca.crt'}",
                f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
                f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
                f"--kubelet-client-certificate={pki_dir / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki_dir / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki_dir / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--service-account-issuer=https://kubernetes.default.svc.{layout.CLUSTER_DOMAIN}",
                f"--service-account-key-file={pki_dir / 'service-account.pub'}",
                f"--service-account-signing-key-file={pki_dir / 'service-account.key'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
            lambda: http_ok(f"{configs.APISERVER_URL}/readyz", admin_tls),
        )
        apiserver_pid = self.supervisor.start(apiserver)
        pause, others = self._required_images()
        # Only the sandbox image must be unpacked up front; the CRI unpacks any other image
        # the first time a container uses it, so importing them is a copy that can overlap
        # the rest of the start.
        self._import_images([pause], unpack=True)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="image-import") as imports:
            pending = [imports.submit(self._import_images, [archive]) for archive in others]
            self._start_node_and_controllers(tools, apiserver, apiserver_pid, admin_tls)
            for future in pending:
                future.result()

    def _start_node_and_controllers(
        self,
        tools: build.Tools,
        apiserver: Component,
        apiserver_pid: int,
        admin_tls: ssl.SSLContext,
    ) -> None:
        paths, pki_dir = self.paths, self.paths.pki
        self.supervisor.wait_healthy(apiserver, apiserver_pid)
        self._kubectl(tools, "apply", "-f", str(paths.config / "bootstrap.json"))

        loopback_tls = insecure_tls()
        self.supervisor.start_all(
            [
                Component(
                    "kube-controller-manager",
                    [
                        str(tools.component("kube-controller-manager")),
                        f"--kubeconfig={paths.kubeconfig_for('controller-manager')}",
                        f"--authentication-kubeconfig={paths.kubeconfig_for('controller-manager')}",
                        f"--authorization-kubeconfig={paths.kubeconfig_for('controller-manager')}",
                        "--bind-address=127.0.0.1",
                        "--leader-elect=false",
                        "--use-service-account-credentials=true",
                        f"--service-account-private-key-file={pki_dir / 'service-account.key'}",
                        f"--root-ca-file={pki_dir / 'ca.crt'}",
                        f"--cluster-signing-cert-file={pki_dir / 'ca.crt'}",
                        f"--cluster-signing-key-file={pki_dir / 'ca.key'}",
                        f"--service-cluster-ip-range={layout.SERVICE_CIDR}",
                        "--profiling=false",
                    ],
                    lambda: http_ok(
                        f"https://127.0.0.1:{layout.CONTROLLER_MANAGER_PORT}/healthz", loopback_tls
                    ),
                ),
                Component(
                    "kube-scheduler",
                    [
                        str(tools.component("kube-scheduler")),
                        f"--config={paths.config / 'scheduler.yaml'}",
                        f"--authentication-kubeconfig={paths.kubeconfig_for('scheduler')}",
                        f"--authorization-kubeconfig={paths.kubeconfig_for('scheduler')}",
                        "--bind-address=127.0.0.1",
                    ],
                    lambda: http_ok(
                        f"https://127.0.0.1:{layout.SCHEDULER_PORT}/healthz", loopback_tls
                    ),
                ),
                Component(
                    "kubelet",
                    [
                        str(tools.component("kubelet")),
                        f"--config={paths.config / 'kubelet.yaml'}",
                        f"--kubeconfig={paths.kubeconfig_for('kubelet')}",
                        f"--root-dir={paths.kubelet_root}",
                        f"--hostname-override={layout.NODE_NAME}",
                        f"--node-ip={layout.NODE_IP}",
                        "--v=1",
                    ],
                    lambda: http_ok(f"http://127.0.0.1:{layout.KUBELET_HEALTHZ_PORT}/healthz"),
                ),
                Component(
                    "kube-proxy",
                    [
                        str(tools.component("kube-proxy")),
                        f"--config={paths.config / 'kube-proxy.yaml'}",
                    ],
                    lambda: http_ok(f"http://127.0.0.1:{layout.PROXY_HEALTHZ_PORT}/livez"),
                ),
                Component(
                    "coredns",
                    [str(tools.coredns), "-conf", str(paths.config / "Corefile")],
                    lambda: http_ok(f"http://127.0.0.1:{layout.COREDNS_READY_PORT}/ready"),
                ),
            ]
        )
        self._wait_node_ready(tools)

    def _containerd_answers(self) -> bool:
        if not self.paths.containerd_socket.exists():
            return False
        result = subprocess.run(
            ["ctr", "--address", str(self.paths.containerd_socket), "version"],
            capture_output=True,
        )
        return result.returncode == 0

    def _required_images(self) -> tuple[Path, list[Path]]:
        """The pause image, and every other image tarball in the images directory."""
        archives = sorted(self.paths.images.glob("*.tar"))
        pause = [archive for archive in archives if archive.name.startswith("pause")]
        if not pause:
            raise ClusterError(
                f"no pause image in {self.paths.images}; build the local images first "
                "with `make images` (hack/images/build.py)"
            )
        return pause[0], [archive for archive in archives if archive != pause[0]]

    def _import_images(self, archives: Sequence[Path], unpack: bool = False) -> None:
        for archive in archives:
            result = subprocess.run(
                ["ctr", "--address", str(self.paths.containerd_socket), "--namespace", "k8s.io",
                 "images", "import", f"--no-unpack={'false' if unpack else 'true'}", str(archive)],
                capture_output=True,
                text=True,
            )  # fmt: skip
            if result.returncode != 0:
                last = result.stderr.strip().splitlines()[-1:] or ["no output"]
                raise ClusterError(f"could not load image {archive}: {last[0]}")

    def _kubectl(self, tools: build.Tools, *args: str) -> str:
        result = subprocess.run(
            [str(tools.component("kubectl")), f"--kubeconfig={self.paths.admin_kubeconfig}", *args],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ClusterError(f"kubectl {args[0]} failed: {result.stderr.strip()}")
        return result.stdout

    def _wait_node_ready(self, tools: build.Tools) -> None:
        deadline = time.monotonic() + NODE_READY_TIMEOUT
        while time.monotonic() < deadline:
            ready, _ = self._nodes_ready_and_version(tools)
            if ready:
                return
            time.sleep(0.5)
        raise ClusterError(
            f"node {layout.NODE_NAME} did not become Ready within {NODE_READY_TIMEOUT:.0f} s; "
            f"kubelet log: {self.supervisor.log_file('kubelet')}\n"
            + log_tail(self.supervisor.log_file("kubelet"))
        )

    def _nodes_ready_and_version(self, tools: build.Tools | None = None) -> tuple[int, str | None]:
        kubectl = self._kubectl_path(tools)
        if kubectl is None or not self.paths.admin_kubeconfig.is_file():
            return 0, None
        result = subprocess.run(
            [str(kubectl), f"--kubeconfig={self.paths.admin_kubeconfig}", "get", "nodes",
             "-o", "json", "--request-timeout=5s"],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if result.returncode != 0:
            return 0, None
        nodes = json.loads(result.stdout).get("items", [])
        ready = sum(
            1
            for node in nodes
            for condition in node.get("status", {}).get("conditions", [])
            if condition.get("type") == "Ready" and condition.get("status") == "True"
        )
        versions = {node["status"]["nodeInfo"]["kubeletVersion"] for node in nodes}
        return ready, ", ".join(sorted(versions)) or None

    def _kubectl_path(self, tools: build.Tools | None) -> Path | None:
        if tools is not None:
            return tools.component("kubectl")
        try:
            version = build.kubernetes_version()
        except ClusterError:
            return None
        candidate = self.paths.binaries / f"kubernetes-{version}" / "kubectl"
        return candidate if candidate.exists() else None

    def _cleanup_proxy_rules(self) -> None:
        kube_proxy = self._kubectl_path(None)
        config = self.paths.config / "kube-proxy.yaml"
        if kube_proxy is None or not config.is_file():
            return
        subprocess.run(
            [str(kube_proxy.with_name("kube-proxy")), "--cleanup", f"--config={config}"],
            capture_output=True,
            timeout=60,
        )
