"""`kubefixtures up --catalog SERVICE... --values a.b=c`: what it brings up, and its errors
(one line naming the flag and the bad key), before any cluster is contacted."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kubefixtures.catalog import manifests
from kubefixtures.cli import build_parser
from kubefixtures.cli import main as cli_main
from kubefixtures.cli.environments import spec_of


def spec(*arguments: str):  # type: ignore[no-untyped-def]
    parsed: argparse.Namespace = build_parser().parse_args(["up", *arguments])
    return spec_of(parsed, parsed.name)


def test_one_catalog_service_is_named_for_its_ready_fixture() -> None:
    up = spec("--catalog", "postgres", "--values", "postgres.database=shop")
    assert up.name == "kubefixtures_postgres"
    assert up.sources == (manifests("postgres"),)
    assert up.values["postgres"] == {"user": "kubefixtures", "database": "shop"}
    assert up.values["s3"]["region"] == "us-east-1"  # the catalog's defaults stay


def test_catalog_services_and_sources_together(tmp_path: Path) -> None:
    own = tmp_path / "app"
    own.mkdir()
    up = spec(str(own), "--catalog", "redis", "postgres", "--values", "greeting=hi", "a.b.c=d")
    assert up.name == "app"
    assert up.sources == (manifests("redis"), manifests("postgres"), own.resolve())
    assert up.values["greeting"] == "hi"
    assert up.values["a"] == {"b": {"c": "d"}}


def test_without_sources_or_services_several_services_are_named_catalog() -> None:
    assert spec("--catalog", "redis", "s3").name == "catalog"
    assert spec("--catalog", "redis", "--name", "backing").name == "backing"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--catalog", "mysql"], "--catalog mysql: no such catalog service (the catalog has redis"),
        (["--catalog", "redis", "redis"], "--catalog redis redis: a service is named twice"),
        ([], "up: give SOURCE... or --catalog SERVICE... (or both)"),
        (
            ["--catalog", "postgres", "--values", "postgres.databse=shop"],
            "--values postgres.databse=shop: catalog service postgres has no value 'databse' "
            "(it takes user, database)",
        ),
        (
            ["--catalog", "redis", "--values", "redis.version=7"],
            "--values redis.version=7: catalog service redis takes no values",
        ),
        (
            ["--catalog", "redis", "--values", "a=1", "a.b=2"],
            "--values a.b=2: a is given a value of its own already",
        ),
        (["--catalog", "redis", "--values", "a..b=2"], "--values a..b=2: 'a..b' has an empty part"),
    ],
)
def test_bad_arguments_are_one_line_naming_the_flag(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["up", *arguments]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"kubefixtures: error: {message}"), error
    assert error.count("\n") == 1
