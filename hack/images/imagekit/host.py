"""Facts about this machine that go into images: Debian package versions, CPU."""

from __future__ import annotations

import functools
import platform
import subprocess

from imagekit.errors import BuildError

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


@functools.cache
def package_version(package: str) -> str:
    """The installed version of a Debian package, e.g. "5:7.0.15-1~deb12u10"."""
    try:
        result = subprocess.run(
            ["dpkg-query", "--show", "--showformat=${db:Status-Status} ${Version}", package],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except FileNotFoundError:
        raise BuildError("dpkg-query not found: these recipes need a Debian host") from None
    status, _, version = result.stdout.partition(" ")
    if result.returncode != 0 or status != "installed":
        raise BuildError(f"Debian package {package} is not installed: apt-get install {package}")
    return version


def upstream_version(debian_version: str) -> str:
    """Strip epoch and Debian revision: 5:7.0.15-1~deb12u10 -> 7.0.15."""
    without_epoch = debian_version.partition(":")[2] or debian_version
    return without_epoch.rpartition("-")[0] or without_epoch


def image_architecture() -> str:
    machine = platform.machine()
    if machine not in _ARCHITECTURES:
        raise BuildError(f"unsupported machine architecture {machine!r}")
    return _ARCHITECTURES[machine]
