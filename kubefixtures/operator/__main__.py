"""``python -m kubefixtures.operator [OPTIONS]``: the same as ``kubefixtures operator``
(the operator image's entry point: it has no console scripts). It does not go through the
CLI: the options are the reapers' (kubefixtures.leases.options)."""

from __future__ import annotations

import sys

from kubefixtures.operator.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
