"""The errors kubefixtures raises.

Every message is meant to be read on one line in a pytest report: it names the file, field,
option or object at fault, and what to do about it when that is not obvious.
"""

from __future__ import annotations

__all__ = [
    "ApplyError",
    "ClusterError",
    "ControlError",
    "KubefixturesError",
    "NotReadyError",
    "RenderError",
    "SettingsError",
]


class KubefixturesError(Exception):
    """Base class of every error kubefixtures raises on purpose."""


class SettingsError(KubefixturesError):
    """An option or ini key has a value kubefixtures cannot use."""


class RenderError(KubefixturesError):
    """A source could not be turned into Kubernetes objects (raised before anything is created).

    ``location`` is ``file:line`` (or just the file) so that tools can point at it.
    """

    def __init__(self, location: str, problem: str) -> None:
        super().__init__(f"{location}: {problem}")
        self.location = location
        self.problem = problem


class ClusterError(KubefixturesError):
    """The cluster is unreachable, refuses us, or does not know a kind we need."""


class ApplyError(KubefixturesError):
    """The API server rejected an object of the environment."""


class NotReadyError(KubefixturesError):
    """The environment did not become ready before its deadline, or a part of it failed.

    The first line of the message is a summary; the following lines say, per object, why it
    is not ready (pod phase, container waiting reasons, last events).
    """


class ControlError(KubefixturesError):
    """An action on a running environment (``env.exec``, ``env.restart``, ...) failed: a bad
    target, an RBAC denial, a command that could not run. The message names the target and
    the verb, on one line."""
