"""Writing files that hold secrets (keys, tokens, credentials) so that no other user can
ever read them: created with mode 0600 by the call that creates them, never chmod'ed
afterwards (between a create with the umask's mode and a chmod, the file is readable)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
# O_EXCL: the name is new, so the mode given here is the mode it gets (an existing file
# would keep its own). O_NOFOLLOW: a symlink planted under that name is refused.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_private_file(path: str | os.PathLike[str], content: str | bytes) -> Path:
    """Replace ``path`` with ``content``, mode 0600 (or less, under a stricter umask), and
    atomically: a reader sees the old file or the new one, never half of one. A missing
    parent directory is created 0700."""
    target = Path(path)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.partial")
    descriptor = os.open(temporary, _CREATE_FLAGS, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target
