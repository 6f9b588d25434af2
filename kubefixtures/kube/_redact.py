"""Credential-looking text taken out of what a credential plugin says, before it goes into
an error message: a plugin that fails may print the token it would have returned."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MASK", "plugin_output"]

MASK = "********"
_TAIL = 300  # characters of a plugin's stderr kept in an error
# Each pattern's first group, if it has one, is a prefix kept in front of the mask.
_PATTERNS = (
    # PEM blocks (keys, certificates), whole, even when cut short.
    re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|$)", re.DOTALL),
    # JWTs (service account and OIDC tokens).
    re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"),
    # "Bearer X", "Basic X", and key=value / key: value / "key": "value" for secret keys.
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)\S+"),
    re.compile(
        r"(?i)((?:token|password|passwd|secret|key|credential|authorization|cookie)"
        r"[\w-]*\"?\s*[:=]\s*\"?)[^\s\",}]+"
    ),
    # Long unbroken runs of token characters (base64, hex, opaque tokens).
    re.compile(r"[A-Za-z0-9+_=-]{24,}"),
)


def _masked(match: re.Match[str]) -> str:
    return (match.group(1) if match.re.groups else "") + MASK


def plugin_output(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with every ``known`` secret and anything that looks like credential
    material masked, on one line, cut to its last few hundred characters."""
    for secret in sorted((s for s in known if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(_masked, text)
    said = " ".join(text.split())
    return said if len(said) <= _TAIL else "…" + said[-_TAIL:]
