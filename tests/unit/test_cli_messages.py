"""`kubefixtures` commands name their own flags in errors (``--kubeconfig``), never the pytest
options (``--kubefixtures-kubeconfig``) the same loaders name under pytest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubefixtures.cli import main
from kubefixtures.errors import setting_name


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as stop:  # argparse's usage errors
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


def no_context_kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    server = {"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}
    path.write_text(f"apiVersion: v1\nkind: Config\nclusters: [{server}]\ncontexts: []\n")
    return path


@pytest.mark.parametrize("command", ["status", "gc", "diagnose ns --out OUT"])
def test_a_missing_kubeconfig_names_the_kubeconfig_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    argv = command.replace("OUT", str(tmp_path / "out")).split()
    code, err = run(capsys, *argv, "--kubeconfig", "/nonexistent")
    assert code == 1
    assert err == (
        "kubefixtures: error: kubeconfig /nonexistent does not exist "
        "(set --kubeconfig or KUBECONFIG)\n"
    )
    assert "--kubefixtures-" not in err


def test_a_kubeconfig_without_a_current_context_names_the_context_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = no_context_kubeconfig(tmp_path)
    code, err = run(capsys, "status", "--kubeconfig", str(path))
    assert (code, err) == (1, f"kubefixtures: error: kubeconfig {path}: no current-context "
                              "(set --context)\n")  # fmt: skip


def test_an_unknown_context_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = no_context_kubeconfig(tmp_path)
    code, err = run(capsys, "gc", "--kubeconfig", str(path), "--context", "nope")
    assert (code, err) == (1, f"kubefixtures: error: kubeconfig {path}: no context named 'nope'\n")


def test_up_names_its_own_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    code, err = run(capsys, "up", str(manifests), "--kubeconfig", str(tmp_path / "absent"))
    assert code == 1
    assert err.endswith("does not exist (set --kubeconfig or KUBECONFIG)\n")
    code, err = run(capsys, "up", str(manifests), "--image-overrides", "redis")
    assert (code, err) == (1, "kubefixtures: error: --image-overrides: 'redis' is not a "
                              "NAME=IMAGE pair\n")  # fmt: skip
    assert not list(tmp_path.glob("*.kubefixtures.json"))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["gc", "--grace", "-5"], "argument --grace: '-5' is out of range"),
        (["gc", "--grace", "soon"], "argument --grace: 'soon' is not a number of seconds"),
        (["up", "m", "--ready-timeout", "0"], "argument --ready-timeout: '0' is out of range"),
        (["up", "m", "--lease-duration", "inf"], "argument --lease-duration: 'inf'"),
        (["up", "m", "--namespace-prefix", "Bad_"], "argument --namespace-prefix: 'Bad_'"),
        (["diagnose", "ns", "--out", "o", "--log-lines", "-1"], "argument --log-lines: '-1'"),
    ],
)
def test_bad_numbers_and_ranges_name_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    code, err = run(capsys, *argv)
    assert code == 2
    assert expected in err
    assert "--kubefixtures-" not in err


def test_after_a_command_messages_name_the_pytest_options_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run(capsys, "status", "--kubeconfig", "/nonexistent")
    assert setting_name("kubeconfig", environment="KUBECONFIG") == (
        "--kubefixtures-kubeconfig or KUBECONFIG"
    )
    assert setting_name("context") == "--kubefixtures-context"


def test_the_installed_command_says_it_too(tmp_path: Path) -> None:
    command = shutil.which("kubefixtures", path=str(Path(sys.executable).parent))
    assert command is not None
    result = subprocess.run(
        [command, "status", "--kubeconfig", "/nonexistent"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": ""},
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "kubefixtures: error: kubeconfig /nonexistent does not exist "
        "(set --kubeconfig or KUBECONFIG)\n"
    )
