"""The settings of sharing, reuse and diagnostics: defaults, parsing, one-line errors."""

from __future__ import annotations

from typing import Any

import pytest

from kubefixtures.errors import SettingsError
from kubefixtures.settings import Settings


class Config:
    def __init__(self, **ini: Any) -> None:
        self.ini = ini

    def getoption(self, name: str) -> Any:
        return None

    def getini(self, name: str) -> Any:
        return self.ini.get(name)


def test_defaults() -> None:
    settings = Settings.from_config(Config())
    assert settings.keep_for == 7200.0  # keep-on-failure keeps a namespace 2 h
    assert settings.reuse is False
    assert settings.diagnostics is True
    assert settings.log_lines == 50


def test_values_from_ini_keys() -> None:
    settings = Settings.from_config(
        Config(
            kubefixtures_keep_for="600",
            kubefixtures_reuse="yes",
            kubefixtures_diagnostics="off",
            kubefixtures_log_lines="0",
        )
    )
    assert settings.keep_for == 600.0
    assert settings.reuse is True
    assert settings.diagnostics is False
    assert settings.log_lines == 0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("kubefixtures_keep_for", "2h", "--kubefixtures-keep-for (ini kubefixtures_keep_for): "),
        ("kubefixtures_log_lines", "-1", "'-1' is out of range: it must be from 0 to 1000000"),
        ("kubefixtures_log_lines", "many", "'many' is not a whole number"),
        ("kubefixtures_reuse", "maybe", "'maybe' is not a boolean"),
    ],
)
def test_bad_values_are_one_line_naming_option_and_key(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_config(Config(**{key: value}))
    assert message in str(error.value)
    assert "\n" not in str(error.value)
