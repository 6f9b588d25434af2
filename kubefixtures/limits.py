"""What kubefixtures accepts from the outside: every bound in one place, and the checks that
enforce them (docs/security.md, "What each input accepts", lists them for users).

A value or file outside these bounds is refused where it is read, before anything is
created: a number of seconds that would overflow a date hours later, or a manifest that
would expand to gigabytes at apply time, fails at once with one line instead.

Standard library only: the plugin imports this at pytest start-up (through settings).
"""

from __future__ import annotations

import math
import os

__all__ = [
    "MAX_COUNT",
    "MAX_FILE_BYTES",
    "MAX_POOL_NAMESPACES",
    "MAX_POOL_SIZE",
    "MAX_RENDERED_BYTES",
    "MAX_SECONDS",
    "MAX_TOOL_OUTPUT_BYTES",
    "MAX_YAML_DEPTH",
    "describe_size",
    "parse_count",
    "parse_pool_size",
    "parse_seconds",
    "read_text",
]

# A year: longer than any timeout, lease or keep-until anyone needs, and far from the
# values that overflow datetime/timedelta arithmetic or thread waits.
MAX_SECONDS = 365 * 24 * 3600
# Counts of lines (log lines in a report).
MAX_COUNT = 1_000_000
# Spare copies of one environment a session keeps ready (``--kubefixtures-pool``): each is a
# namespace with its pods running, so a typo such as 500 must not fill a shared cluster; a
# suite's worth of copies (50 tests, a fresh environment each) must fit.
MAX_POOL_SIZE = 100
# Any one file read (manifest, details file, kubeconfig). The API server refuses requests
# over 3 MiB, so a bigger file is a mistake, not an environment.
MAX_FILE_BYTES = 16 * 1024 * 1024
# An environment's objects once rendered: placeholders filled and YAML aliases expanded
# (a 525-byte file of nested aliases would otherwise expand to hundreds of megabytes).
MAX_RENDERED_BYTES = 16 * 1024 * 1024
# What a rendering tool (helm template, kubectl kustomize) may print: read into memory
# before it is parsed, and YAML is wordier than the JSON that MAX_RENDERED_BYTES measures.
MAX_TOOL_OUTPUT_BYTES = 2 * MAX_RENDERED_BYTES
# Nesting of YAML collections. Kubernetes objects, CRDs with deep schemas included, stay
# far below; the YAML composer recurses per level, so this also keeps it off the stack limit.
MAX_YAML_DEPTH = 100


def describe_size(limit: int) -> str:
    """``16 MiB``, ``10 bytes``: a limit in messages."""
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"


def parse_seconds(text: str, *, zero_allowed: bool = False) -> float:
    """A number of seconds: finite, more than 0 (or 0 with ``zero_allowed``), at most
    MAX_SECONDS. Raises ValueError saying which (the caller names the option)."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    lowest = "0" if zero_allowed else "more than 0"
    within = seconds >= 0 if zero_allowed else seconds > 0
    if not (math.isfinite(seconds) and within and seconds <= MAX_SECONDS):
        raise ValueError(
            f"{text!r} is out of range: seconds must be {lowest} and at most "
            f"{MAX_SECONDS} (365 days)"
        )
    return seconds


def parse_count(text: str, *, maximum: int = MAX_COUNT) -> int:
    """A whole number from 0 to ``maximum``. Raises ValueError saying what is wrong."""
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if not 0 <= count <= maximum:
        raise ValueError(f"{text!r} is out of range: it must be from 0 to {maximum}")
    return count


# The operator's cap on the namespaces its pools' copies hold (kubefixtures.operator.pools).
MAX_POOL_NAMESPACES = 1000


def parse_pool_size(text: str) -> int:
    """A number of spare copies, from 0 to MAX_POOL_SIZE."""
    return parse_count(text, maximum=MAX_POOL_SIZE)


def read_text(path: str | os.PathLike[str], *, limit: int | None = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a file of at most ``limit`` bytes (None: any size).

    Raises OSError as ``open`` does, and ValueError (a phrase to follow the file's name:
    "is not UTF-8 text (line 3)", "is larger than 16 MiB") for a file it refuses.
    """
    with open(path, "rb") as stream:
        data = stream.read() if limit is None else stream.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ValueError(f"is larger than {describe_size(limit)}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(f"is not UTF-8 text (line {line})") from None
