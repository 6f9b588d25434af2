"""An environment's secrets: the ``kubefixtures-secrets`` Secret that keeps the generated
ones in their namespace (reuse renders the same values again from it, ``kubefixtures
diagnose`` masks them), and which values must never be shown.

They are in the namespace's objects anyway; what matters is that no log, report, error or
bundle of kubefixtures shows them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kubefixtures import naming
from kubefixtures.errors import KubefixturesError

if TYPE_CHECKING:
    from kubefixtures.details import Environment

__all__ = [
    "SECRETS_KEY",
    "SECRETS_NAME",
    "secret_values",
    "stored_secrets",
    "stored_secrets_manifest",
]

SECRETS_NAME = "kubefixtures-secrets"  # the namespace's Secret holding its generated secrets
SECRETS_KEY = "secrets.json"  # one key: secret names need not be valid Secret keys
_SHORTEST_MASKED = 4  # very short values would mask ordinary words all over the logs


def stored_secrets_manifest(values: Mapping[str, str]) -> dict[str, Any]:
    """The Secret that keeps an environment's generated secrets in its namespace."""
    encoded = base64.b64encode(json.dumps(dict(values)).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": SECRETS_NAME,
            "labels": {naming.MANAGED_BY_LABEL: naming.MANAGED_BY_VALUE},
        },
        "data": {SECRETS_KEY: encoded},
    }


def stored_secrets(secret: Mapping[str, Any] | None, namespace: str) -> dict[str, str]:
    """The generated secrets kept in ``secret`` (none when the namespace has no such Secret)."""
    if secret is None:
        return {}
    try:
        encoded = (secret.get("data") or {})[SECRETS_KEY]
        values = json.loads(base64.b64decode(encoded))
    except (KeyError, ValueError) as error:
        raise KubefixturesError(
            f"namespace {namespace}: Secret {SECRETS_NAME} is not what kubefixtures wrote "
            f"({type(error).__name__}); delete the namespace to start afresh"
        ) from None
    return {str(name): str(value) for name, value in dict(values).items()}


def secret_values(environment: Environment) -> set[str]:
    """Values to mask wherever the environment's logs or events are shown: its generated
    secrets, and the values of the Secrets among its objects."""
    values = set(environment.secrets.values())
    for obj in environment.objects:
        if obj.get("kind") != "Secret" or obj.get("apiVersion") != "v1":
            continue
        values.update(str(value) for value in (obj.get("stringData") or {}).values())
        for value in (obj.get("data") or {}).values():
            try:
                values.add(base64.b64decode(str(value), validate=True).decode())
            except (ValueError, UnicodeDecodeError):
                continue
    return {value for value in values if len(value) >= _SHORTEST_MASKED}
