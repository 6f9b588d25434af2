"""Taking files from this machine into an image: paths with their symlink
chains, binaries with the shared libraries they link, busybox applets."""

from __future__ import annotations

import os
import posixpath
import re
import stat
import subprocess
from pathlib import Path

from imagekit.errors import BuildError
from imagekit.rootfs import Rootfs, directory, disk_file, symlink

_MAX_DEPTH = 40

# "libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x...)" or
# "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no path and is skipped.
_LDD_LINE = re.compile(r"^\s*(?:(?P<name>\S+) => )?(?P<path>/\S+|not found)(?: \(0x[0-9a-f]+\))?$")


def add_host_path(fs: Rootfs, path: str, depth: int = 0) -> None:
    """Copy the host's `path` to the same path in the image.

    Symlinks are kept as symlinks and their targets copied too, so
    /usr/bin/redis-server -> redis-check-rdb arrives as both. A symlinked
    directory on the way (/lib -> usr/lib) is copied only when the image has
    nothing there yet; otherwise the image's own layout decides where the file
    lands. Directories are copied with everything in them.
    """
    if depth > _MAX_DEPTH:
        raise BuildError(f"{path}: too many levels of symbolic links")
    path = posixpath.normpath(path)
    parts = path.strip("/").split("/")
    for index in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:index])
        if os.path.islink(ancestor) and not fs.exists(ancestor):
            add_host_path(fs, ancestor, depth + 1)
    try:
        info = os.lstat(path)
    except OSError as error:
        raise BuildError(f"{path}: {error.strerror} (is its Debian package installed?)") from None
    if stat.S_ISLNK(info.st_mode):
        target = os.readlink(path)
        fs.put(path, symlink(target))
        add_host_path(fs, posixpath.join(posixpath.dirname(path), target), depth + 1)
    elif stat.S_ISREG(info.st_mode):
        fs.put(path, disk_file(Path(path)))
    elif stat.S_ISDIR(info.st_mode):
        _add_host_tree(fs, path, info.st_mode & 0o7777, depth)
    else:
        raise BuildError(f"{path}: only regular files, directories and symlinks can be copied")


def _add_host_tree(fs: Rootfs, path: str, mode: int, depth: int) -> None:
    fs.put(path, directory(mode))
    for name in sorted(os.listdir(path)):
        add_host_path(fs, posixpath.join(path, name), depth)


def add_tree(fs: Rootfs, path: str, source: Path) -> None:
    """Copy the directory `source` (an artifact's output tree) to `path` in the image.

    Files and directories keep their modes; symlinks inside the tree (node_modules/.bin)
    stay symlinks, their targets are not followed: they point inside the tree.
    """
    fs.put(path, directory(source.stat().st_mode & 0o7777))
    for name in sorted(os.listdir(source)):
        child = source / name
        image_path = posixpath.join(path, name)
        info = os.lstat(child)
        if stat.S_ISLNK(info.st_mode):
            fs.put(image_path, symlink(os.readlink(child)))
        elif stat.S_ISDIR(info.st_mode):
            add_tree(fs, image_path, child)
        elif stat.S_ISREG(info.st_mode):
            fs.put(image_path, disk_file(child))
        else:
            raise BuildError(f"{child}: only regular files, directories and symlinks can be copied")


def shared_libraries(binary: str) -> list[str]:
    """Absolute paths of the libraries (and the loader) `binary` links, per ldd.

    ldd resolves them with this machine's loader configuration; the image gets
    them at the same paths, where its loader's default search finds them.
    """
    try:
        result = subprocess.run(
            ["ldd", binary], capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError:
        raise BuildError("ldd not found (Debian package libc-bin)") from None
    if result.returncode != 0:
        if "not a dynamic executable" in result.stderr + result.stdout:
            return []  # static: nothing to gather
        raise BuildError(f"ldd {binary} failed: {result.stderr.strip() or result.stdout.strip()}")
    return parse_ldd(binary, result.stdout)


def parse_ldd(binary: str, output: str) -> list[str]:
    libraries: list[str] = []
    for line in output.splitlines():
        if "statically linked" in line:
            return []
        match = _LDD_LINE.match(line)
        if match is None:
            continue  # linux-vdso.so.1 and friends: provided by the kernel
        if match["path"] == "not found":
            raise BuildError(f"{binary}: needs {match['name']}, which ldd cannot find")
        libraries.append(match["path"])
    return sorted(set(libraries))


def add_binary(fs: Rootfs, binary: str) -> None:
    add_host_path(fs, binary)
    for library in shared_libraries(binary):
        add_host_path(fs, library)


def busybox_applets(busybox: str) -> list[str]:
    """The applet paths this busybox was built with, e.g. "usr/bin/wget"."""
    try:
        result = subprocess.run(
            [busybox, "--list-full"], capture_output=True, text=True, check=True, timeout=60
        )
    except (OSError, subprocess.CalledProcessError) as error:
        raise BuildError(f"{busybox} --list-full failed: {error}") from None
    # Entries without a directory (linuxrc) belong at the root of an initramfs,
    # not of a container image.
    return sorted(line for line in result.stdout.split() if "/" in line)


def add_busybox_applets(fs: Rootfs, busybox: str) -> None:
    """A symlink to busybox for each applet, unless something is there already."""
    own = fs.canonical(busybox, create=False)
    for applet in busybox_applets(busybox):
        if fs.canonical(applet, create=True) == own or fs.exists(applet):
            continue
        fs.put("/" + applet, symlink(busybox))
