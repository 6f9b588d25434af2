#!/usr/bin/env python3
"""The operator image's site-packages: ``trees/tree.py pip`` of requirements.txt, minus what
the operator never imports.

    packages.py OUT          build the tree (run by build.py with Debian's python3.11)
    packages.py --pins       print requirements.txt from what the dev venv has installed
                             (.venv/bin/python hack/images/operator/packages.py --pins)

The official ``kubernetes`` client is not among them: the operator logs kopf in through
kubefixtures' own kubeconfig loader (kubefixtures/operator/login.py) and reads the pod's
ServiceAccount itself. Standard library only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGE_DIR = "/opt/kubefixtures/site"


HEADER = """\
# What the kubefixtures operator imports at run time, pinned exactly (tree.py installs them
# with --no-deps): the closure of kubefixtures[operator] as installed in the dev venv.
# Regenerate after a dependency change:
#   .venv/bin/python hack/images/operator/packages.py --pins > hack/images/operator/requirements.txt
"""


def pins() -> list[str]:
    """``name==version`` for everything ``kubefixtures[operator]`` needs, from the running
    environment's metadata (markers evaluated for it), kubefixtures itself left out."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    extras_seen: dict[str, set[str]] = {}
    todo: list[tuple[str, set[str]]] = [("kubefixtures", {"operator"})]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in extras_seen and extras <= extras_seen[key]:
            continue
        extras_seen[key] = extras_seen.get(key, set()) | extras
        distribution = metadata.distribution(name)
        found[key] = distribution.version
        for line in distribution.requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in extras or {""}]
            marker = requirement.marker
            if marker is None or any(marker.evaluate(env) for env in environments):
                todo.append((requirement.name, set(requirement.extras)))
    found.pop("kubefixtures", None)
    return [f"{name}=={version}" for name, version in sorted(found.items())]


def main() -> None:
    if sys.argv[1:] == ["--pins"]:
        sys.stdout.write(HEADER + "".join(f"{pin}\n" for pin in pins()))
        return
    if len(sys.argv) != 2:
        sys.exit("usage: packages.py OUT | packages.py --pins")
    out = Path(sys.argv[1])
    tree = HERE.parent / "trees" / "tree.py"
    requirements = HERE / "requirements.txt"
    command = [sys.executable, str(tree), "pip", str(requirements), str(out)]
    command += ["--compile", IMAGE_DIR]
    if subprocess.run(command, check=False).returncode != 0:
        sys.exit("packages.py: tree.py pip failed (its output is above)")


if __name__ == "__main__":
    main()
