"""write_private_file: the one way kubefixtures writes a file that holds a secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kubefixtures.private_files import write_private_file
from tests.unit.file_creation import creation_modes


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_file_is_0600_from_its_creation_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "admin.key"
    with creation_modes(monkeypatch) as modes:
        write_private_file(target, "-----BEGIN PRIVATE KEY-----\n")
    assert modes == {target.resolve(): 0o600}
    assert mode_of(target) == 0o600
    assert target.read_text() == "-----BEGIN PRIVATE KEY-----\n"


def test_an_existing_readable_file_is_replaced_by_a_private_one(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_text("old")
    target.chmod(0o644)
    write_private_file(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode_of(target) == 0o600
    assert [path.name for path in tmp_path.iterdir()] == ["config"]


def test_a_missing_directory_is_created_private(tmp_path: Path) -> None:
    target = tmp_path / "kube" / "config"
    write_private_file(target, "x")
    assert mode_of(target.parent) & 0o077 == 0
    assert mode_of(target) == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # cannot be replaced by a file
    with pytest.raises(IsADirectoryError):
        write_private_file(target, "secret")
    assert [path.name for path in tmp_path.iterdir()] == ["taken"]
