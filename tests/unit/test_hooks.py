"""Helm hooks: which run, in what order, and when one is done."""

from __future__ import annotations

from typing import Any

import pytest

from kubefixtures.kube.client import Resource
from kubefixtures.provisioning.cluster_scoped import Placed
from kubefixtures.provisioning.hooks import hook_outcome, split_hooks
from kubefixtures.rendering import RenderedObject

JOBS = Resource("batch/v1", "Job", "jobs", namespaced=True)


def job(name: str, **annotations: str) -> Placed:
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "annotations": annotations},
    }
    return Placed(RenderedObject(manifest=manifest, location=f"{name}.yaml:1"), JOBS)


def hook(name: str, types: str, weight: str | None = None, policy: str | None = None) -> Placed:
    annotations = {"helm.sh/hook": types}
    if weight is not None:
        annotations["helm.sh/hook-weight"] = weight
    if policy is not None:
        annotations["helm.sh/hook-delete-policy"] = policy
    return job(name, **annotations)


def test_install_hooks_are_split_out_in_weight_then_name_order() -> None:
    main, pre, post = split_hooks(
        [
            job("app"),
            hook("b", "pre-install", "5"),
            hook("a", "pre-install,pre-upgrade", "5", "hook-succeeded,before-hook-creation"),
            hook("c", "pre-install", "-1"),
            hook("smoke", "post-install"),
            hook("cleanup", "pre-delete"),  # never runs for an environment
            hook("upgrade", "post-upgrade"),
        ]
    )
    assert [item.obj.name for item in main] == ["app"]
    assert [(h.placed.obj.name, h.weight) for h in pre] == [("c", -1), ("a", 5), ("b", 5)]
    assert [h.delete_when_succeeded for h in pre] == [False, True, False]
    assert [h.placed.obj.name for h in post] == ["smoke"]
    assert str(post[0]) == "helm post-install hook job/smoke"


def test_an_unreadable_weight_counts_as_zero() -> None:
    _, pre, _ = split_hooks([hook("x", "pre-install", "heavy")])
    assert pre[0].weight == 0


def conditions(**states: str) -> dict[str, Any]:
    return {"conditions": [{"type": kind, "status": state} for kind, state in states.items()]}


@pytest.mark.parametrize(
    ("obj", "outcome"),
    [
        ({"kind": "Job", "status": conditions(Complete="True")}, (True, None)),
        ({"kind": "Job", "status": {"active": 1}}, (False, None)),
        (
            {"kind": "Job", "status": {"conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}]}},
            (True, "BackoffLimitExceeded: Job has reached the specified backoff limit"),
        ),
        ({"kind": "Pod", "status": {"phase": "Running"}}, (False, None)),
        ({"kind": "Pod", "status": {"phase": "Succeeded"}}, (True, None)),
        ({"kind": "Pod", "status": {"phase": "Failed", "reason": "Error"}},
         (True, "pod failed: Error")),
        ({"kind": "ConfigMap"}, (True, None)),
    ],
)  # fmt: skip
def test_a_job_is_done_when_complete_a_pod_when_succeeded(
    obj: dict[str, Any], outcome: tuple[bool, str | None]
) -> None:
    assert hook_outcome(obj) == outcome
