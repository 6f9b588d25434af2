"""hack/images' image kit for the tests that load images under tags of their own."""

from __future__ import annotations

import sys
from pathlib import Path

IMAGE_KIT = Path(__file__).resolve().parents[1] / "hack" / "images"
if str(IMAGE_KIT) not in sys.path:
    sys.path.insert(0, str(IMAGE_KIT))

from imagekit.archive import retag_archive  # noqa: E402

__all__ = ["retag_archive"]
