"""Building the cluster's binaries from the Go module proxy, cached by version.

Kubernetes itself is one multi-call binary built from our own small module in _k8s/ beside
this file (its go.mod pins every staging module); CoreDNS and Helm are `go install`ed.
Only the first run on a machine pays: results are keyed by version under the cache.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from kubefixtures.cluster.base import ClusterError

COREDNS_MODULE = "github.com/coredns/coredns"
COREDNS_VERSION = "v1.14.7"
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.21.4"

KUBE_COMPONENTS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubelet",
    "kubectl",
)


def kubernetes_source_dir() -> Path:
    """The Go module that builds the Kubernetes multi-call binary."""
    source = Path(__file__).resolve().parent / "_k8s"  # in the package, checkout or wheel
    if not (source / "go.mod").is_file():
        raise ClusterError(
            f"the Kubernetes build module ({source}/go.mod) is missing; reinstall kubefixtures"
        )
    return source


def kubernetes_version(source_dir: Path | None = None) -> str:
    go_mod = (source_dir or kubernetes_source_dir()) / "go.mod"
    match = re.search(
        r"^\s*(?:require\s+)?k8s\.io/kubernetes (v\d+\.\d+\.\d+)\s*$", go_mod.read_text(), re.M
    )
    if match is None:
        raise ClusterError(f"{go_mod}: no requirement of k8s.io/kubernetes vX.Y.Z")
    return match.group(1)


@dataclass(frozen=True)
class Tools:
    kube: Path
    coredns: Path
    helm: Path
    kubernetes_version: str

    def component(self, name: str) -> Path:
        return self.kube.parent / name


def _require_go() -> str:
    # The official tarball's place, for environments (CI, sudo) whose PATH lacks it.
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        raise ClusterError("the `go` toolchain is not on PATH; install Go 1.25+ (see README)")
    return go


def _run_go(argv: list[str], cwd: Path | None, env: dict[str, str], what: str, log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        result = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        raise ClusterError(
            f"the Go build of {what} failed (exit {result.returncode}); full log: {log}\n"
            + "\n".join(f"    {line}" for line in tail)
        )


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -buildvcs=false -trimpath").strip()
    return env


def ensure_kubernetes(cache_bin: Path, log_dir: Path, progress: bool = True) -> Path:
    source = kubernetes_source_dir()
    version = kubernetes_version(source)
    target_dir = cache_bin / f"kubernetes-{version}"
    binary = target_dir / "kube"
    if not binary.is_file():
        major, minor, _ = version.lstrip("v").split(".")
        stamps = {
            "k8s.io/component-base/version": version,
            "k8s.io/client-go/pkg/version": version,
        }
        ldflags = ["-s", "-w"]
        for package, value in stamps.items():
            ldflags += [
                f"-X {package}.gitVersion={value}",
                f"-X {package}.gitMajor={major}",
                f"-X {package}.gitMinor={minor}",
                f"-X {package}.gitTreeState=clean",
            ]
        target_dir.mkdir(parents=True, exist_ok=True)
        partial = target_dir / "kube.partial"
        if progress:
            print(f"building Kubernetes {version} (first run only; ~7 min on 2 cores)", flush=True)
        started = time.monotonic()
        _run_go(
            [_require_go(), "build", "-o", str(partial), "-ldflags", " ".join(ldflags), "."],
            source,
            _go_env(),
            f"Kubernetes {version}",
            log_dir / "build-kubernetes.log",
        )
        partial.rename(binary)
        if progress:
            print(f"built Kubernetes {version} in {time.monotonic() - started:.0f} s", flush=True)
    for name in KUBE_COMPONENTS:
        link = target_dir / name
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to("kube")
    return binary


def ensure_go_tool(module: str, version: str, name: str, cache_bin: Path, log_dir: Path) -> Path:
    target_dir = cache_bin / f"{name}-{version}"
    binary = target_dir / name
    if binary.is_file():
        return binary
    target_dir.mkdir(parents=True, exist_ok=True)
    print(f"building {name} {version} (first run only)", flush=True)
    env = _go_env()
    env["GOBIN"] = str(target_dir)
    _run_go(
        [_require_go(), "install", f"{module}@{version}"],
        None,
        env,
        f"{name} {version}",
        log_dir / f"build-{name}.log",
    )
    return binary


def ensure_tools(cache_bin: Path, log_dir: Path) -> Tools:
    kube = ensure_kubernetes(cache_bin, log_dir)
    coredns = ensure_go_tool(COREDNS_MODULE, COREDNS_VERSION, "coredns", cache_bin, log_dir)
    helm = ensure_go_tool(HELM_MODULE, HELM_VERSION, "helm", cache_bin, log_dir)
    tools = Tools(kube=kube, coredns=coredns, helm=helm, kubernetes_version=kubernetes_version())
    link_client_tools(tools)
    return tools


def link_client_tools(tools: Tools) -> None:
    """Put kubectl and helm next to the Python that runs us (the project's .venv/bin), so
    the versions users and tests get match the cluster."""
    scripts = Path(sysconfig.get_path("scripts"))
    if not os.access(scripts, os.W_OK):
        return
    for name, target in (("kubectl", tools.component("kubectl")), ("helm", tools.helm)):
        link = scripts / name
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(target)
