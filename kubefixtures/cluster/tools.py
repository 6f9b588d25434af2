"""Finding the command-line tools the providers drive."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kubefixtures.cluster.base import ClusterError
from kubefixtures.executables import find_tool

__all__ = ["find_tool", "require_tool", "run_tool"]


def require_tool(name: str, hint: str) -> Path:
    found = find_tool(name)
    if found is None:
        raise ClusterError(f"`{name}` is not installed; {hint}")
    return found


def run_tool(argv: list[str | Path], what: str, timeout: float | None = None) -> str:
    try:
        result = subprocess.run(
            [str(part) for part in argv], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as error:
        raise ClusterError(f"{what} did not answer within {timeout:.0f} s") from error
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ClusterError(f"{what} failed: {last[0]}")
    return result.stdout
