"""Where a declaration was written: sources, build contexts and working directories in a
conftest are relative to its directory, whichever factory (``environment``, ``catalog``,
``app_image``, ``local_service``) they were given to."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["caller_directory"]


def caller_directory(depth: int = 1) -> Path:
    """The directory of the module ``depth`` calls above the function calling this one
    (1: that function's caller); the working directory when the module has no file."""
    frame = sys._getframe(depth + 1)
    module_file = frame.f_globals.get("__file__")
    return Path(module_file).resolve().parent if module_file else Path.cwd()
