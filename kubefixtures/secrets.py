"""Secrets: the ``kubefixtures-secrets`` Secret that keeps an environment's generated ones
in its namespace (reuse renders the same values again from it), the one collector of the
values that must never be shown, and the one masker that hides them.

They are in the namespace's objects anyway; what matters is that no log, report, error or
bundle of kubefixtures shows them: every such text goes through a ``Masker``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from kubefixtures import naming
from kubefixtures.errors import KubefixturesError

if TYPE_CHECKING:
    from kubefixtures.kube import Cluster

__all__ = [
    "MASK",
    "SECRETS_KEY",
    "SECRETS_NAME",
    "Masker",
    "masked_error",
    "namespace_secret_values",
    "secret_object_values",
    "secret_values",
    "stored_secrets",
    "stored_secrets_manifest",
]

MASK = "********"  # what every secret value is replaced with, wherever it would be shown

SECRETS_NAME = "kubefixtures-secrets"  # the namespace's Secret holding its generated secrets
SECRETS_KEY = "secrets.json"  # one key: secret names need not be valid Secret keys
SHORTEST_MASKED = 4  # shorter values would mask ordinary words all over the logs

AnyError = TypeVar("AnyError", bound=KubefixturesError)


class Masker:
    """Replaces every known secret value in a text (longest first, so that a secret that
    contains another one is masked whole). Values shorter than ``shortest`` are left: in
    logs they would hide ordinary words; a caller that knows its values are secrets whole
    (a local service's passwords) asks for every one."""

    def __init__(self, secrets: Iterable[str], shortest: int = SHORTEST_MASKED) -> None:
        values = sorted({value for value in secrets if len(value) >= max(shortest, 1)}, key=len)
        self._pattern = (
            re.compile("|".join(re.escape(value) for value in reversed(values))) if values else None
        )

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def tree(self, value: Any) -> Any:
        """``value`` (parsed JSON or YAML) with every string in it masked, keys included.
        Mask a tree before serialising it: YAML folds, wraps and escapes a long or
        multi-line string, after which the text no longer contains the secret as such."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {self.tree(key): self.tree(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.tree(item) for item in value]
        return value


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


def secret_object_values(secret: Mapping[str, Any]) -> set[str]:
    """The values of one Secret object: its stringData, its data decoded, and the values
    of a JSON object among them (kubefixtures' own Secret holds the generated secrets so)."""
    values = {str(value) for value in (secret.get("stringData") or {}).values()}
    for encoded in (secret.get("data") or {}).values():
        try:
            decoded = base64.b64decode(str(encoded), validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            continue
        values.add(decoded)
        values.update(_json_strings(decoded))
    return values


def _json_strings(text: str) -> list[str]:
    if not text.startswith("{"):
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    return [str(value) for value in data.values()] if isinstance(data, dict) else []


def secret_values(*sources: object) -> set[str]:
    """Every secret value ``sources`` hold: ``SecretStr`` fields of details models at any
    depth (an environment's generated secrets, a catalog service's password), and the
    values of the Secrets among an environment's objects. Plain strings are not secrets."""
    # kubefixtures.details first: pydantic is imported through it, whichever thread does
    # (kubefixtures.factories.import_models).
    from kubefixtures.details import Environment  # isort: skip

    from pydantic import BaseModel, SecretStr

    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, SecretStr):
            found.add(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, Environment):
            walk(value.details)
            for obj in value.objects:
                if obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1":
                    found.update(secret_object_values(obj))
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    for source in sources:
        walk(source)
    return {value for value in found if value}


def namespace_secret_values(
    cluster: Cluster, namespace: str, timeout: float | tuple[float, float] | None = None
) -> set[str]:
    """The values of every Secret in the namespace."""
    values: set[str] = set()
    for secret in cluster.secrets(namespace, timeout=timeout):
        values.update(secret_object_values(secret))
    return values


def masked_error(
    error: AnyError, manifests: Iterable[Mapping[str, Any]], generated: Iterable[str]
) -> AnyError:
    """``error`` (of the same class) with the environment's secrets masked: what the cluster
    says may quote them (a rejected object's values, a container's command in its events).
    The secrets are the ``generated`` ones and the values of the Secrets among
    ``manifests``."""
    values = set(generated)
    for manifest in manifests:
        if manifest.get("kind") == "Secret" and manifest.get("apiVersion") == "v1":
            values.update(secret_object_values(manifest))
    masker = Masker(values)
    text = str(error)
    if masker(text) == text:
        return error
    # Made without its __new__ and __init__, whose arguments differ from class to class
    # (RenderError's, ApiError's): the same class, its message and text attributes masked.
    copy = BaseException.__new__(type(error))
    copy.args = (masker(text),)
    for name, value in vars(error).items():
        setattr(copy, name, masker(value) if isinstance(value, str) else value)
    return copy
