"""Settings: option over ini key over default; bad values name the option and ini key."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from kubefixtures.errors import SettingsError
from kubefixtures.settings import OPTIONS, Settings, parse_image_overrides


class FakeConfig:
    def __init__(self, options: dict[str, Any] | None = None, ini: dict[str, Any] | None = None):
        self.options = options or {}
        self.ini = ini or {}

    def getoption(self, name: str) -> Any:
        return self.options.get(name)

    def getini(self, name: str) -> Any:
        return self.ini.get(name)


def test_defaults() -> None:
    settings = Settings.from_config(FakeConfig())
    assert settings == Settings()
    assert settings.namespace_prefix == "kf"
    assert settings.ready_timeout == 180.0
    assert settings.keep_on_failure is False
    assert dict(settings.image_overrides) == {}


def test_every_option_has_a_flag_and_an_ini_key_of_the_same_name() -> None:
    for option in OPTIONS:
        assert option.flag == f"--kubefixtures-{option.name}"
        assert option.ini == "kubefixtures_" + option.name.replace("-", "_")


def test_ini_keys_are_used_when_no_option_is_given() -> None:
    settings = Settings.from_config(
        FakeConfig(
            ini={
                "kubefixtures_context": "kind-kind",
                "kubefixtures_ready_timeout": "30",
                "kubefixtures_keep_on_failure": "yes",
                "kubefixtures_image_overrides": ["redis:7=local/redis:7.0", "nginx=local/nginx"],
                "kubefixtures_namespace_prefix": "ci",
            }
        )
    )
    assert settings.context == "kind-kind"
    assert settings.ready_timeout == 30.0
    assert settings.keep_on_failure is True
    assert settings.namespace_prefix == "ci"
    assert dict(settings.image_overrides) == {"redis:7": "local/redis:7.0", "nginx": "local/nginx"}


def test_options_win_over_ini_keys() -> None:
    settings = Settings.from_config(
        FakeConfig(
            options={
                "kubefixtures_ready_timeout": "5.5",
                "kubefixtures_keep_on_failure": True,
                "kubefixtures_image_overrides": ["a=b,c=d", "e=f"],
            },
            ini={"kubefixtures_ready_timeout": "30", "kubefixtures_keep_on_failure": "false"},
        )
    )
    assert settings.ready_timeout == 5.5
    assert settings.keep_on_failure is True
    assert dict(settings.image_overrides) == {"a": "b", "c": "d", "e": "f"}


@pytest.mark.parametrize(
    ("dest", "value", "message"),
    [
        (
            "kubefixtures_ready_timeout",
            "soon",
            "--kubefixtures-ready-timeout (ini kubefixtures_ready_timeout): "
            "'soon' is not a number of seconds",
        ),
        ("kubefixtures_ready_timeout", "0", "seconds must be more than 0"),
        ("kubefixtures_keep_on_failure", "maybe", "'maybe' is not a boolean"),
        ("kubefixtures_image_overrides", "redis", "'redis' is not a NAME=IMAGE pair"),
        ("kubefixtures_namespace_prefix", "Bad_Prefix", "not a usable namespace prefix"),
        ("kubefixtures_pool", "101", "'101' is out of range: it must be from 0 to 100"),
        ("kubefixtures_pool", "-1", "out of range"),
        ("kubefixtures_pool", "two", "'two' is not a whole number"),
        ("kubefixtures_pool_max_age", "0", "seconds must be more than 0"),
    ],
)
def test_bad_values_name_the_option_and_ini_key(dest: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match="ini kubefixtures_") as caught:
        Settings.from_config(FakeConfig(ini={dest: value}))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_image_override_pairs() -> None:
    assert parse_image_overrides(" a=b  c=d,e=f\n") == {"a": "b", "c": "d", "e": "f"}
    assert parse_image_overrides("") == {}
    with pytest.raises(ValueError, match="'=x'"):
        parse_image_overrides("=x")


def test_route_from_option_or_ini_key_and_the_same_routes_as_the_forwarder() -> None:
    from typing import get_args

    from kubefixtures.kube.portforward import ROUTES, Route
    from kubefixtures.settings import ROUTES as SETTINGS_ROUTES

    assert Settings().route == "auto"
    ini = {"kubefixtures_route": "forward"}
    assert Settings.from_config(FakeConfig(ini=ini)).route == "forward"
    options = {"kubefixtures_route": "Direct"}
    assert Settings.from_config(FakeConfig(options=options, ini=ini)).route == "direct"
    assert SETTINGS_ROUTES == ROUTES == get_args(Route)


def test_direct_address_from_option_or_ini_key_and_the_same_as_the_forwarder() -> None:
    from typing import get_args

    from kubefixtures.kube.portforward import ADDRESSES, Address
    from kubefixtures.settings import ADDRESSES as SETTINGS_ADDRESSES

    assert Settings().direct_address == "local"
    ini = {"kubefixtures_direct_address": "service"}
    assert Settings.from_config(FakeConfig(ini=ini)).direct_address == "service"
    options = {"kubefixtures_direct_address": " Local "}
    assert Settings.from_config(FakeConfig(options=options, ini=ini)).direct_address == "local"
    assert SETTINGS_ADDRESSES == ADDRESSES == get_args(Address)


def test_relay_from_option_or_ini_key_and_the_same_as_the_forwarder() -> None:
    from typing import get_args

    from kubefixtures.kube.portforward import RELAYS, Relay
    from kubefixtures.settings import RELAYS as SETTINGS_RELAYS

    assert Settings().relay == ("process" if sys.platform.startswith("linux") else "thread")
    ini = {"kubefixtures_relay": "process"}
    assert Settings.from_config(FakeConfig(ini=ini)).relay == "process"
    options = {"kubefixtures_relay": " Thread "}
    assert Settings.from_config(FakeConfig(options=options, ini=ini)).relay == "thread"
    assert SETTINGS_RELAYS == RELAYS == get_args(Relay)


def test_an_unknown_relay_names_the_option_and_the_choices() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_config(FakeConfig(options={"kubefixtures_relay": "fork"}))
    assert str(caught.value) == (
        "--kubefixtures-relay (ini kubefixtures_relay): 'fork' is not a relay (use thread, process)"
    )


def test_an_unknown_direct_address_names_the_option_and_the_choices() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_config(FakeConfig(options={"kubefixtures_direct_address": "clusterip"}))
    assert str(caught.value) == (
        "--kubefixtures-direct-address (ini kubefixtures_direct_address): 'clusterip' is not "
        "a direct address (use local, service)"
    )


def test_an_unknown_route_names_the_option_and_the_routes() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_config(FakeConfig(ini={"kubefixtures_route": "tunnel"}))
    assert str(caught.value) == (
        "--kubefixtures-route (ini kubefixtures_route): 'tunnel' is not a route "
        "(use auto, forward, direct)"
    )


def test_a_pool_of_spares_and_its_maximum_age() -> None:
    settings = Settings.from_config(
        FakeConfig(options={"kubefixtures_pool": "3"}, ini={"kubefixtures_pool_max_age": "600"})
    )
    assert settings.pool == 3
    assert settings.pool_max_age == 600.0
    assert Settings().pool == 0  # no pool unless asked for


def test_reuse_and_a_pool_exclude_each_other() -> None:
    config = FakeConfig(options={"kubefixtures_reuse": "true", "kubefixtures_pool": "2"})
    with pytest.raises(SettingsError, match="exclude each other") as caught:
        Settings.from_config(config)
    assert "--kubefixtures-reuse" in str(caught.value)
    assert "--kubefixtures-pool" in str(caught.value)
