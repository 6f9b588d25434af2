"""Helm hooks as ``helm install`` runs them: pre-install hooks after the CRDs and before the
chart's other objects, post-install hooks once those are ready; each in hook-weight order
(then kind and name, as Helm sorts them), each waited for (a Job until Complete, a Pod until
Succeeded) before the next.

``helm template`` renders hooks among the other objects, marked by the ``helm.sh/hook``
annotation. Of the hook types only pre-install and post-install mean something for an
environment that is installed once and deleted with its namespace: the others (delete,
upgrade, rollback) are left out, and test hooks are not rendered (``--skip-tests``). Of the
delete policies, ``hook-succeeded`` is honoured (the hook is deleted once it succeeded);
``before-hook-creation`` has nothing to replace in a new namespace, and a hook that failed is
kept whatever ``hook-failed`` says, so that diagnostics can show it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubefixtures.errors import KubefixturesError, NotReadyError
from kubefixtures.kube.client import POD
from kubefixtures.kube.pods import describe_pod
from kubefixtures.provisioning.cluster_scoped import Placed

if TYPE_CHECKING:
    from kubefixtures.kube import Cluster

__all__ = ["HOOK_ANNOTATION", "Hook", "hook_outcome", "split_hooks", "wait_hook"]

HOOK_ANNOTATION = "helm.sh/hook"
WEIGHT_ANNOTATION = "helm.sh/hook-weight"
DELETE_POLICY_ANNOTATION = "helm.sh/hook-delete-policy"
PRE_INSTALL = "pre-install"
POST_INSTALL = "post-install"
_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Hook:
    placed: Placed
    phase: str  # pre-install or post-install
    weight: int
    delete_when_succeeded: bool

    def __str__(self) -> str:
        return f"helm {self.phase} hook {self.placed.obj}"


def _annotations(placed: Placed) -> Mapping[str, Any]:
    return (placed.obj.manifest.get("metadata") or {}).get("annotations") or {}


def _words(text: Any) -> set[str]:
    return {word.strip() for word in str(text or "").split(",") if word.strip()}


def split_hooks(placed: Sequence[Placed]) -> tuple[list[Placed], list[Hook], list[Hook]]:
    """``(the chart's other objects, pre-install hooks, post-install hooks)``, hooks sorted
    by weight, kind and name; hooks of other types are dropped."""
    main: list[Placed] = []
    pre: list[Hook] = []
    post: list[Hook] = []
    for item in placed:
        annotations = _annotations(item)
        if HOOK_ANNOTATION not in annotations:
            main.append(item)
            continue
        types = _words(annotations[HOOK_ANNOTATION])
        try:
            weight = int(str(annotations.get(WEIGHT_ANNOTATION) or "0"))
        except ValueError:
            weight = 0
        succeeded = "hook-succeeded" in _words(annotations.get(DELETE_POLICY_ANNOTATION))
        if PRE_INSTALL in types:
            pre.append(Hook(item, PRE_INSTALL, weight, succeeded))
        elif POST_INSTALL in types:
            post.append(Hook(item, POST_INSTALL, weight, succeeded))

    def order(hook: Hook) -> tuple[int, str, str]:
        return (hook.weight, hook.placed.obj.kind, hook.placed.obj.name)

    return main, sorted(pre, key=order), sorted(post, key=order)


def hook_outcome(obj: Mapping[str, Any]) -> tuple[bool, str | None]:
    """``(done, failure)`` of a hook object as the API shows it: a Job is done when
    Complete, a Pod when Succeeded; other kinds as soon as they exist."""
    status = obj.get("status") or {}
    if obj.get("kind") == "Job":
        return _job_outcome(status)
    if obj.get("kind") == "Pod":
        phase = status.get("phase")
        if phase == "Failed":
            return True, f"pod failed: {status.get('reason') or status.get('message') or ''}"
        return phase == "Succeeded", None
    return True, None


def _job_outcome(status: Mapping[str, Any]) -> tuple[bool, str | None]:
    conditions = {condition.get("type"): condition for condition in status.get("conditions") or []}
    failed = conditions.get("Failed") or {}
    if failed.get("status") == "True":
        return True, f"{failed.get('reason') or 'Failed'}: {failed.get('message') or ''}"
    return (conditions.get("Complete") or {}).get("status") == "True", None


def wait_hook(cluster: Cluster, hook: Hook, namespace: str, deadline: float) -> None:
    """Return once the hook succeeded (and was deleted, if its policy says so); raise
    NotReadyError naming it when it failed or the deadline passed."""
    resource = hook.placed.resource
    name = hook.placed.obj.name
    where = namespace if resource.namespaced else None
    while True:
        obj = cluster.get_or_none(resource, where, name) or {}
        done, failure = hook_outcome({**obj, "kind": resource.kind})
        if failure is not None:
            headline = f"{hook} failed in namespace {namespace}: {failure.strip()}"
            raise NotReadyError("\n".join([headline, *_pod_lines(cluster, hook, namespace)]))
        if done and obj:
            break
        if time.monotonic() + _POLL_SECONDS > deadline:
            raise NotReadyError(f"{hook} did not complete by the deadline in namespace {namespace}")
        time.sleep(_POLL_SECONDS)
    if hook.delete_when_succeeded:
        cluster.delete_unchanged(resource, where, name, {})


def _pod_lines(cluster: Cluster, hook: Hook, namespace: str) -> list[str]:
    """Why a Job hook's pods failed, in words (their logs stay out: they may hold secrets)."""
    if hook.placed.resource.kind != "Job":
        return []
    try:
        pods = cluster.items(POD, namespace, f"batch.kubernetes.io/job-name={hook.placed.obj.name}")
    except KubefixturesError:
        return []
    return [f"  pod/{pod['metadata']['name']}: {describe_pod(pod)}" for pod in pods]
