"""The kubectl lines printed for a kept namespace: real names, pasteable as printed."""

from __future__ import annotations

import shlex
from pathlib import Path

from kubefixtures.commands_for_people import MAX_POD_LINES, kept_namespace_lines, kubectl_prefix

HOME_CONFIG = str(Path.home() / ".kube" / "config")


def test_the_prefix_names_context_and_namespace() -> None:
    assert (
        kubectl_prefix("kind-ci", namespace="kf-shop-x1")
        == "kubectl --context kind-ci -n kf-shop-x1"
    )
    assert kubectl_prefix(None) == "kubectl"


def test_the_kubeconfig_is_named_only_when_kubectl_would_not_pick_it() -> None:
    assert kubectl_prefix("c", HOME_CONFIG, environ={}) == "kubectl --context c"
    assert kubectl_prefix("c", "/etc/k.yaml", environ={"KUBECONFIG": "/etc/k.yaml"}) == (
        "kubectl --context c"
    )
    assert kubectl_prefix("c", "/tmp/other config", environ={}) == (
        "kubectl --kubeconfig '/tmp/other config' --context c"
    )


def test_kept_namespace_lines_are_commands_with_real_pod_names() -> None:
    lines = kept_namespace_lines(
        "kf-shop-x1",
        "shop",
        "1 failed test(s), first t.py::test_it",
        context="kind-ci",
        pods=["redis-1", "web-2"],
        environ={},
    )
    kubectl = "kubectl --context kind-ci -n kf-shop-x1"
    assert lines[0] == (
        "kept namespace kf-shop-x1 of environment 'shop' (1 failed test(s), first "
        f"t.py::test_it); inspect: {kubectl} get all,events; commands to paste:"
    )
    commands = [line.strip() for line in lines[1:]]
    assert f"{kubectl} get all" in commands
    assert f"{kubectl} describe pods" in commands
    assert f"{kubectl} logs --all-containers --prefix --tail=200 pod/redis-1" in commands
    assert f"{kubectl} logs --all-containers --prefix --tail=200 pod/web-2" in commands
    assert f"{kubectl} get events --sort-by=.lastTimestamp" in commands
    assert "kubectl --context kind-ci delete namespace kf-shop-x1  # remove it" in commands
    diagnose = next(line for line in commands if line.startswith("kubefixtures diagnose"))
    assert shlex.split(diagnose, comments=True) == [
        "kubefixtures", "diagnose", "kf-shop-x1", "--context", "kind-ci",
        "--out", "kubefixtures-kf-shop-x1",
    ]  # fmt: skip
    for line in lines[1:]:
        assert line.startswith("  ")  # one command per line, under the summary line
        shlex.split(line, comments=True)  # and each one parses as a shell line


def test_many_pods_are_cut_short() -> None:
    pods = [f"pod-{index}" for index in range(MAX_POD_LINES + 3)]
    lines = kept_namespace_lines("ns", "e", "why", context=None, pods=pods, environ={})
    assert sum(" logs --all-containers" in line for line in lines) == MAX_POD_LINES
    assert "kubectl -n ns get pods  # 3 more pods" in [line.strip() for line in lines]
