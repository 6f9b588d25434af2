"""What a control acts on: ``"deployment/web"``, ``"pod/web-abc"``, ``"statefulset/db"``,
``"job/migrate"`` or a bare Service name (its pods). Parsed here and nowhere else."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubefixtures.errors import ControlError

__all__ = ["KINDS", "Target", "parse_target"]

# Kind words (kubectl's names and short names) -> the kind a target has.
KINDS: dict[str, str] = {
    "pod": "pod",
    "pods": "pod",
    "po": "pod",
    "deployment": "deployment",
    "deployments": "deployment",
    "deploy": "deployment",
    "statefulset": "statefulset",
    "statefulsets": "statefulset",
    "sts": "statefulset",
    "daemonset": "daemonset",
    "daemonsets": "daemonset",
    "ds": "daemonset",
    "replicaset": "replicaset",
    "replicasets": "replicaset",
    "rs": "replicaset",
    "job": "job",
    "jobs": "job",
    "service": "service",
    "services": "service",
    "svc": "service",
}
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_USAGE = (
    "use deployment/NAME, statefulset/NAME, daemonset/NAME, replicaset/NAME, job/NAME, "
    "pod/NAME or a Service's name"
)


@dataclass(frozen=True)
class Target:
    kind: str  # one of KINDS' values
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


def parse_target(text: object, verb: str) -> Target:
    """The target ``text`` names; a ControlError naming ``verb`` and ``text`` otherwise."""
    if isinstance(text, Target):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ControlError(f"{verb} {text!r}: a target is a string; {_USAGE}")
    word, slash, name = text.strip().partition("/")
    if not slash:
        word, name = "service", word
    kind = KINDS.get(word.lower())
    if kind is None:
        raise ControlError(f"{verb} {text!r}: unknown kind {word!r}; {_USAGE}")
    if not _NAME.fullmatch(name) or len(name) > 253:
        raise ControlError(
            f"{verb} {text!r}: {name!r} is not a Kubernetes object name "
            "(lower-case letters, digits, '-' and '.')"
        )
    return Target(kind, name)
