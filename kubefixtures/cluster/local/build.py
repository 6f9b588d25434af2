"""Building the cluster's binaries from the Go module proxy, cached by version.

Kubernetes itself is one multi-call binary built from our own small module in _k8s/ beside
this file (its go.mod pins every staging module); CoreDNS and Helm are `go install`ed.
Only the first run on a machine pays: results are keyed by version under the cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from kubefixtures.cluster.base import ClusterError
from kubefixtures.cluster.local.progress import GoJob, run_lanes


@dataclass(frozen=True)
class GoTool:
    label: str
    name: str
    """The binary's name."""
    module: str
    package: str
    """The main package's import path, in ``module``."""
    version: str
    typical_seconds: float
    """Its cold build alone on an idle 2-core machine: the estimate until a rate exists."""
    link_seconds: float


# The figures behind the first estimate: cold builds alone on an idle 2-core machine
# (README, "first run": Kubernetes 406 s; CoreDNS and Helm about 4 min together).
KUBERNETES_TYPICAL_SECONDS = 410
KUBERNETES_LINK_SECONDS = 40
COREDNS = GoTool(
    "CoreDNS",
    "coredns",
    "github.com/coredns/coredns",
    "github.com/coredns/coredns",
    "v1.14.7",
    typical_seconds=150,
    link_seconds=15,
)
HELM = GoTool(
    "Helm",
    "helm",
    "helm.sh/helm/v3",
    "helm.sh/helm/v3/cmd/helm",
    "v3.21.4",
    typical_seconds=110,
    link_seconds=15,
)
BUILD_LANES = 2
"""Kubernetes in one lane, CoreDNS and Helm in the other: on 2 cores the second lane
fills what the first leaves idle (module downloads, links, the narrow end of the graph)."""

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


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -buildvcs=false -trimpath").strip()
    return env


def _count_packages(go: str, cwd: Path, package: str, env: dict[str, str]) -> int | None:
    """How many packages `package` has with its dependencies (standard library included)."""
    listed = subprocess.run(
        [go, "list", "-deps", package],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return len(listed.stdout.split()) if listed.returncode == 0 else None


def _module_dir(go: str, module: str, version: str, env: dict[str, str]) -> Path | None:
    """Where the module cache holds module@version (downloading it, as `go install` would)."""
    done = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        return None
    try:
        directory = json.loads(done.stdout).get("Dir")
    except ValueError:
        return None
    return Path(directory) if directory else None


def kubernetes_job(cache_bin: Path, log_dir: Path) -> tuple[GoJob | None, Path]:
    """The build of the Kubernetes multi-call binary, or None when it is cached."""
    source = kubernetes_source_dir()
    version = kubernetes_version(source)
    target_dir = cache_bin / f"kubernetes-{version}"
    binary = target_dir / "kube"
    if binary.is_file():
        return None, binary
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
    go, env = _require_go(), _go_env()
    argv = [go, "build", "-v", "-o", str(partial), "-ldflags", " ".join(ldflags), "."]
    job = GoJob(
        label=f"Kubernetes {version}",
        argv=argv,
        cwd=source,
        env=env,
        log=log_dir / "build-kubernetes.log",
        main_package=_module_path(source),
        typical_seconds=KUBERNETES_TYPICAL_SECONDS,
        link_seconds=KUBERNETES_LINK_SECONDS,
        count_packages=lambda: _count_packages(go, source, ".", env),
        finish=lambda: partial.rename(binary),
    )
    return job, binary


def _module_path(source: Path) -> str:
    match = re.search(r"^module\s+(\S+)", (source / "go.mod").read_text(), re.M)
    return match.group(1) if match else "."


def go_tool_job(tool: GoTool, cache_bin: Path, log_dir: Path) -> tuple[GoJob | None, Path]:
    """The `go install` of a tool, or None when it is cached."""
    target_dir = cache_bin / f"{tool.name}-{tool.version}"
    binary = target_dir / tool.name
    if binary.is_file():
        return None, binary
    target_dir.mkdir(parents=True, exist_ok=True)
    go, env = _require_go(), _go_env()
    env["GOBIN"] = str(target_dir)

    def count() -> int | None:
        directory = _module_dir(go, tool.module, tool.version, env)
        return None if directory is None else _count_packages(go, directory, tool.package, env)

    job = GoJob(
        label=f"{tool.label} {tool.version}",
        argv=[go, "install", "-v", f"{tool.package}@{tool.version}"],
        cwd=None,
        env=env,
        log=log_dir / f"build-{tool.name}.log",
        main_package=tool.package,
        typical_seconds=tool.typical_seconds,
        link_seconds=tool.link_seconds,
        count_packages=count,
    )
    return job, binary


def ensure_go_tool(tool: GoTool, cache_bin: Path, log_dir: Path) -> Path:
    job, binary = go_tool_job(tool, cache_bin, log_dir)
    run_lanes([[job]] if job else [])
    return binary


def ensure_tools(cache_bin: Path, log_dir: Path, lanes: int = BUILD_LANES) -> Tools:
    """Build what is not cached: Kubernetes in one lane, CoreDNS then Helm in the other
    (``lanes=1``: all three one after the other), with progress lines on stdout."""
    kube_job, kube = kubernetes_job(cache_bin, log_dir)
    coredns_job, coredns = go_tool_job(COREDNS, cache_bin, log_dir)
    helm_job, helm = go_tool_job(HELM, cache_bin, log_dir)
    jobs = [job for job in (kube_job, coredns_job, helm_job) if job is not None]
    run_lanes([jobs[:1], jobs[1:]] if lanes > 1 else [jobs])
    for name in KUBE_COMPONENTS:
        link = kube.parent / name
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to("kube")
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
