"""``python -m kubefixtures.cli COMMAND ...``: the same as the ``kubefixtures`` command."""

from __future__ import annotations

import sys

from kubefixtures.cli import main

if __name__ == "__main__":
    sys.exit(main())
