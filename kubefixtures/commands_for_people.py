"""kubectl command lines for a human to paste: inspecting a kept namespace, removing it.

Each line must work as printed, so it names the context (and the kubeconfig when it is not
the one kubectl would pick anyway) and real pod names rather than placeholders.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["MAX_POD_LINES", "kept_namespace_lines", "kept_objects_lines", "kubectl_prefix"]

MAX_POD_LINES = 8  # a namespace with more pods gets one `logs` line per pod up to this many


def _default_kubeconfigs(environ: Mapping[str, str]) -> set[str]:
    """The kubeconfig files kubectl reads when given none."""
    if environ.get("KUBECONFIG"):
        return {environ["KUBECONFIG"]}
    homes = {str(Path.home())}
    # The login home too: pytest's own tests (pytester) move HOME while a session runs,
    # but the person pasting the line has the real one.
    with contextlib.suppress(KeyError):
        homes.add(pwd.getpwuid(os.getuid()).pw_dir)
    return {str(Path(home) / ".kube" / "config") for home in homes}


def _cluster_flags(
    context: str | None, kubeconfig: str | None, environ: Mapping[str, str] | None
) -> list[str]:
    flags = []
    defaults = _default_kubeconfigs(os.environ if environ is None else environ)
    if kubeconfig and str(Path(kubeconfig).expanduser()) not in defaults:
        flags += ["--kubeconfig", str(Path(kubeconfig).expanduser())]
    if context:
        flags += ["--context", context]
    return flags


def kubectl_prefix(
    context: str | None,
    kubeconfig: str | None = None,
    namespace: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """``kubectl [--kubeconfig K] [--context C] [-n NS]``."""
    words = ["kubectl", *_cluster_flags(context, kubeconfig, environ)]
    if namespace:
        words += ["-n", namespace]
    return shlex.join(words)


def kept_namespace_lines(
    namespace: str,
    environment: str,
    why: str,
    *,
    context: str | None,
    kubeconfig: str | None = None,
    pods: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """What the terminal summary says about a kept namespace: one summary line, then one
    command per line (inspect, logs of each pod, events, diagnose, remove)."""
    kubectl = kubectl_prefix(context, kubeconfig, namespace, environ)
    cluster_wide = kubectl_prefix(context, kubeconfig, None, environ)
    diagnose = [
        "kubefixtures",
        "diagnose",
        namespace,
        *_cluster_flags(context, kubeconfig, environ),
        "--out",
        f"kubefixtures-{namespace}",
    ]
    lines = [
        f"kept namespace {namespace} of environment {environment!r} ({why}); inspect: "
        f"{kubectl} get all,events; commands to paste:",
        f"  {kubectl} get all",
        f"  {kubectl} describe pods",
    ]
    lines += [
        f"  {kubectl} logs --all-containers --prefix --tail=200 pod/{pod}"
        for pod in pods[:MAX_POD_LINES]
    ]
    if len(pods) > MAX_POD_LINES:
        lines.append(f"  {kubectl} get pods  # {len(pods) - MAX_POD_LINES} more pods")
    lines += [
        f"  {kubectl} get events --sort-by=.lastTimestamp",
        f"  {shlex.join(diagnose)}  # a bundle of objects, logs and events",
        f"  {cluster_wide} delete namespace {namespace}  # remove it",
    ]
    return lines


def kept_objects_lines(
    namespace: str,
    environment: str,
    why: str,
    *,
    selector: str,
    kinds: Sequence[str],
    context: str | None,
    kubeconfig: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """What the summary says about an environment's objects kept in a namespace that is not
    kubefixtures' (``--kubefixtures-namespace``): they are found by ``selector`` among
    ``kinds`` (plural resource names); removing them leaves the namespace alone."""
    kubectl = kubectl_prefix(context, kubeconfig, namespace, environ)
    listed = ",".join(kinds) or "all"
    quoted = shlex.quote(selector)
    return [
        f"kept the objects of environment {environment!r} in namespace {namespace} ({why}); "
        "the namespace is yours and stays; commands to paste:",
        f"  {kubectl} get {listed} -l {quoted}",
        f"  {kubectl} describe pods -l {quoted}",
        f"  {kubectl} logs --all-containers --prefix --tail=200 -l {quoted}",
        f"  {kubectl} get events --sort-by=.lastTimestamp",
        f"  {kubectl} delete {listed} -l {quoted}  # remove them (the namespace stays)",
        f"  {kubectl} delete lease kubefixtures-session  # then let the next session in",
    ]
