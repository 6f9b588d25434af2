"""``python -m kubefixtures.operator [OPTIONS]``: the same as ``kubefixtures operator``
(the operator image's entry point: it has no console scripts)."""

from __future__ import annotations

import sys

from kubefixtures.cli import main

if __name__ == "__main__":
    sys.exit(main(["operator", *sys.argv[1:]]))
