#!/usr/bin/env python3
"""The operator image's site-packages: ``trees/tree.py pip`` of requirements.txt, minus what
the operator never imports.

    packages.py OUT

kubernetes 37 ships an asyncio copy of its whole client (``kubernetes/aio``, about 70 MB
with its byte code); neither kopf nor kubefixtures imports it. Standard library only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGE_DIR = "/opt/kubefixtures/site"
UNUSED = ("kubernetes/aio",)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: packages.py OUT")
    out = Path(sys.argv[1])
    tree = HERE.parent / "trees" / "tree.py"
    requirements = HERE / "requirements.txt"
    command = [sys.executable, str(tree), "pip", str(requirements), str(out), "--compile", IMAGE_DIR]
    if subprocess.run(command, check=False).returncode != 0:
        sys.exit("packages.py: tree.py pip failed (its output is above)")
    for unused in UNUSED:
        shutil.rmtree(out / unused)


if __name__ == "__main__":
    main()
