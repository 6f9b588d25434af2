"""The bounds on what kubefixtures accepts: seconds, counts and files, wherever they are read
(pytest options and ini keys, `kubefixtures` commands, the operator's environment, the
environment() factory), refused at parse time with one line naming the option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubefixtures import environment
from kubefixtures.cli import main as cli_main
from kubefixtures.errors import SettingsError
from kubefixtures.limits import (
    MAX_COUNT,
    MAX_SECONDS,
    parse_count,
    parse_seconds,
    read_text,
)
from kubefixtures.operator.config import OperatorConfig, OperatorConfigError
from kubefixtures.settings import OPTIONS, Settings

OUT_OF_RANGE_SECONDS = ["inf", "-inf", "nan", "-1", "0", "1e15", str(MAX_SECONDS + 1)]


class FakeConfig:
    def __init__(self, ini: dict[str, Any]) -> None:
        self.ini = ini

    def getoption(self, name: str) -> Any:
        return None

    def getini(self, name: str) -> Any:
        return self.ini.get(name)


@pytest.mark.parametrize("text", OUT_OF_RANGE_SECONDS)
def test_seconds_must_be_finite_positive_and_at_most_a_year(text: str) -> None:
    with pytest.raises(ValueError, match="out of range: seconds must be more than 0 and at most"):
        parse_seconds(text)


@pytest.mark.parametrize("text", ["0", "0.0"])
def test_a_grace_may_be_zero(text: str) -> None:
    assert parse_seconds(text, zero_allowed=True) == 0.0


@pytest.mark.parametrize("text", ["inf", "nan", "-1", "1e15"])
def test_a_grace_is_bounded_too(text: str) -> None:
    with pytest.raises(ValueError, match="seconds must be 0 and at most"):
        parse_seconds(text, zero_allowed=True)


def test_seconds_within_range_are_accepted() -> None:
    assert parse_seconds("0.5") == 0.5
    assert parse_seconds(str(MAX_SECONDS)) == MAX_SECONDS


@pytest.mark.parametrize("text", ["-1", str(MAX_COUNT + 1), "10" * 50])
def test_counts_are_bounded(text: str) -> None:
    with pytest.raises(ValueError, match=f"out of range: it must be from 0 to {MAX_COUNT}"):
        parse_count(text)


SECONDS_OPTIONS = [option for option in OPTIONS if option.kind == "seconds"]


@pytest.mark.parametrize("option", SECONDS_OPTIONS, ids=lambda option: option.name)
@pytest.mark.parametrize("text", ["inf", "nan", "1e15"])
def test_every_seconds_setting_is_range_checked_at_parse_time(option: Any, text: str) -> None:
    """--kubefixtures-lease-duration=inf used to raise OverflowError once the namespace
    existed; keep-for=1e15 failed at teardown."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_config(FakeConfig({option.ini: text}))
    message = str(caught.value)
    assert message.startswith(f"{option.flag} (ini {option.ini}): {text!r} is out of range")
    assert "\n" not in message


def test_a_count_setting_is_range_checked_at_parse_time() -> None:
    with pytest.raises(SettingsError, match=r"--kubefixtures-log-lines .*out of range"):
        Settings.from_config(FakeConfig({"kubefixtures_log_lines": "1" * 30}))


@pytest.mark.parametrize(
    "arguments",
    [
        ["gc", "--grace", "inf"],
        ["status", "--grace", "nan"],
        ["operator", "--grace", "-1"],
        ["up", "src", "--lease-duration", "inf"],
        ["up", "src", "--keep-for", "1e15"],
        ["up", "src", "--ready-timeout", "0"],
        ["diagnose", "ns", "--out", "d", "--log-lines", "-5"],
        ["up", "src", "--namespace-prefix", "Bad_Prefix"],
    ],
    ids=" ".join,
)
def test_commands_refuse_out_of_range_values_before_doing_anything(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(arguments)
    assert exited.value.code == 2  # argparse: a usage error
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "out of range" in error or "not a usable namespace prefix" in error
    assert error.startswith("kubefixtures ")


def test_the_operator_grace_variable_is_bounded() -> None:
    with pytest.raises(OperatorConfigError, match="KUBEFIXTURES_OPERATOR_GRACE: 'inf' is out"):
        OperatorConfig.from_env({"KUBEFIXTURES_OPERATOR_GRACE": "inf"})


@pytest.mark.parametrize("timeout", [float("inf"), float("nan"), 1e15, 0])
def test_an_environment_timeout_is_bounded(timeout: float) -> None:
    with pytest.raises(ValueError, match=r"environment\(timeout=.*\): .* out of range"):
        environment("manifests/", timeout=timeout)


def test_read_text_refuses_a_file_that_is_not_utf8_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(ValueError, match=r"^is not UTF-8 text \(line 2\)$"):
        read_text(path)


def test_read_text_refuses_a_file_over_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"x" * 11)
    assert read_text(path, limit=11) == "x" * 11
    with pytest.raises(ValueError, match=r"^is larger than 10 bytes$"):
        read_text(path, limit=10)
