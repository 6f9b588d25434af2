"""The errors kubefixtures raises.

Every message is meant to be read on one line in a pytest report: it names the file, field,
option or object at fault, and what to do about it when that is not obvious.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

__all__ = [
    "ApplyError",
    "ClusterError",
    "ControlError",
    "KubefixturesError",
    "NotReadyError",
    "RenderError",
    "SettingsError",
]

# How the surface being run spells a setting ("kubeconfig"), for messages that tell the user
# which one to change: pytest's option by default (kubefixtures.settings.Option.flag), the
# CLI's flags while a `kubefixtures` command runs (settings_named). A process global rather
# than a context variable: messages are also raised in worker threads.
_SURFACE_NAMES: dict[str, str] = {}


def setting_name(name: str, *, environment: str | None = None) -> str:
    """``name`` (a setting: ``kubeconfig``, ``context``) as the user sets it where they are,
    with ``environment`` (a variable that also sets it) added: ``--kubeconfig or KUBECONFIG``
    under the CLI, ``--kubefixtures-kubeconfig or KUBECONFIG`` under pytest."""
    spelled = _SURFACE_NAMES.get(name, f"--kubefixtures-{name}")
    if environment and environment != spelled:
        return f"{spelled} or {environment}"
    return spelled


@contextlib.contextmanager
def settings_named(names: Mapping[str, str]) -> Iterator[None]:
    """While it lasts, messages name the settings in ``names`` as given (the CLI's flags)."""
    previous = dict(_SURFACE_NAMES)
    _SURFACE_NAMES.update(names)
    try:
        yield
    finally:
        _SURFACE_NAMES.clear()
        _SURFACE_NAMES.update(previous)


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
