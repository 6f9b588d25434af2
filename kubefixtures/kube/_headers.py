"""The one check every transport runs on the header values it sends: a value with a CR,
LF or other control character would end the header early and inject lines of its own, and
one with characters beyond Latin-1 cannot be sent as HTTP/1.1 header bytes at all."""

from __future__ import annotations

import re
from collections.abc import Iterable

from kubefixtures.errors import ClusterError

__all__ = ["checked_headers"]

# RFC 9110 field-value: visible ASCII, obs-text, spaces and tabs; nothing else below 0x20.
_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BEYOND_LATIN1 = re.compile(r"[^\x00-\xff]")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def checked_headers(pairs: Iterable[tuple[str, str]], source: str) -> list[tuple[str, str]]:
    """``pairs`` as a list (values without surrounding blanks), or a ClusterError naming
    the header (never its value) when a name is not a token or a value holds control
    characters."""
    checked = []
    for name, value in pairs:
        if not _TOKEN.fullmatch(name):
            raise ClusterError(f"{source}: refused to send a header with an invalid name")
        if _UNSAFE.search(value):
            raise ClusterError(
                f"{source}: refused to send the {name} header: its value has control characters"
            )
        if _BEYOND_LATIN1.search(value):  # HTTP/1.1 headers are bytes: http.client would fail
            raise ClusterError(
                f"{source}: refused to send the {name} header: its value has characters "
                "beyond Latin-1"
            )
        checked.append((name, value.strip(" \t")))  # as Go trims them
    return checked
