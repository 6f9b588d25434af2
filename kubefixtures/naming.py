"""Names and labels of what kubefixtures creates in a cluster.

A namespace name must be a DNS-1123 label (at most 63 characters of ``[a-z0-9-]``, starting
and ending with an alphanumeric) and must not collide with another session running at the
same time, even on another machine: hence a short random suffix rather than a counter or pid.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import socket
import string
from collections.abc import Mapping

__all__ = [
    "CI_JOB_LABEL",
    "ENVIRONMENT_LABEL",
    "HOST_LABEL",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "SESSION_LABEL",
    "USER_LABEL",
    "ci_job_id",
    "dns_label",
    "label_value",
    "namespace_labels",
    "namespace_name",
    "new_session_id",
]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "kubefixtures"
SESSION_LABEL = "kubefixtures.io/session"
ENVIRONMENT_LABEL = "kubefixtures.io/environment"
USER_LABEL = "kubefixtures.io/user"
HOST_LABEL = "kubefixtures.io/host"
CI_JOB_LABEL = "kubefixtures.io/ci-job"

_MAX_LABEL = 63
_SUFFIX_LENGTH = 6
_ALPHABET = string.ascii_lowercase + string.digits

# Environment variables that identify a CI job, most specific first. The first one set wins.
_CI_JOB_VARIABLES = (
    "GITHUB_RUN_ID",  # GitHub Actions (a run; GITHUB_JOB is only the job's key in the workflow)
    "CI_JOB_ID",  # GitLab CI
    "BUILDKITE_JOB_ID",
    "CIRCLE_WORKFLOW_JOB_ID",
    "CIRCLE_BUILD_NUM",
    "TRAVIS_JOB_ID",
    "SYSTEM_JOBID",  # Azure Pipelines
    "BITBUCKET_BUILD_NUMBER",
    "DRONE_BUILD_NUMBER",
    "TEAMCITY_BUILD_ID",
    "BUILD_TAG",  # Jenkins: job name + build number, unique per build
    "BUILD_ID",
)


def new_session_id() -> str:
    """A short random id for one test session (also used in labels and namespace names)."""
    return _random(8)


def _random(length: int) -> str:
    # First character a letter so the id is never read as a number by YAML.
    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(_ALPHABET) for _ in range(length - 1)
    )


def dns_label(text: str, max_length: int = _MAX_LABEL) -> str:
    """``text`` squeezed into a DNS-1123 label: lowercase, ``[a-z0-9-]``, trimmed dashes."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    label = re.sub(r"-{2,}", "-", label)
    return label[:max_length].strip("-")


def namespace_name(prefix: str, environment: str) -> str:
    """``prefix-environment-xxxxxx``: unique per call, at most 63 characters, DNS-1123.

    The environment part is shortened first so that the prefix and the random suffix (which
    make the name recognisable and unique) always survive.
    """
    suffix = _random(_SUFFIX_LENGTH)
    head = dns_label(prefix, _MAX_LABEL - _SUFFIX_LENGTH - 1)
    room = _MAX_LABEL - len(suffix) - len(head) - 2
    middle = dns_label(environment, max(room, 0))
    return "-".join(part for part in (head, middle, suffix) if part)


def label_value(text: str) -> str:
    """``text`` made a valid label value: at most 63 of ``[A-Za-z0-9_.-]``, alphanumeric ends."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:_MAX_LABEL]
    return value.strip("_.-")


def ci_job_id(environ: Mapping[str, str] | None = None) -> str | None:
    """The CI job this process runs in, from the usual CI variables, or None outside CI."""
    env = os.environ if environ is None else environ
    for variable in _CI_JOB_VARIABLES:
        if env.get(variable):
            return env[variable]
    return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary uid in a container
        return f"uid-{os.getuid()}"


def namespace_labels(
    session_id: str,
    environment: str,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The labels of an environment's namespace; empty values are left out."""
    labels = {
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        SESSION_LABEL: label_value(session_id),
        ENVIRONMENT_LABEL: label_value(environment),
        USER_LABEL: label_value(_user()),
        HOST_LABEL: label_value(socket.gethostname()),
    }
    job = ci_job_id(environ)
    if job:
        labels[CI_JOB_LABEL] = label_value(job)
    return {key: value for key, value in labels.items() if value}
