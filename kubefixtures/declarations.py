"""What every declaration in a conftest shares, whichever factory it was given to
(``environment``, ``catalog``, ``app_image``, ``local_service``): its relative paths are
relative to the conftest's directory, and the built-in ``${...}`` placeholders are not its
to set. The plugin imports this module at pytest start-up, so it stays tiny."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["BUILTIN_PLACEHOLDERS", "caller_directory"]

# The placeholders every environment gets (rendering fills them).
BUILTIN_PLACEHOLDERS = ("environment", "namespace", "session_id")


def caller_directory(depth: int = 1) -> Path:
    """The directory of the module ``depth`` calls above the function calling this one
    (1: that function's caller); the working directory when the module has no file."""
    frame = sys._getframe(depth + 1)
    module_file = frame.f_globals.get("__file__")
    return Path(module_file).resolve().parent if module_file else Path.cwd()
