"""Pools the operator keeps, without a cluster: the template a Pool stores renders copies
whose key is the session's own (and is refused when it cannot), the keeper's plan for each
round, the settings that turn pools on, and the command's one-line errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.cli import main as cli_main
from kubefixtures.errors import KubefixturesError, SettingsError
from kubefixtures.leases.policy import KEEP_UNTIL_ANNOTATION, format_time
from kubefixtures.leases.pool import (
    POOL_HOME_LABEL,
    POOL_KEY_LABEL,
    POOL_LABEL,
    POOL_NAME_LABEL,
    SPARE,
    SPARE_SINCE_ANNOTATION,
    STARTING,
    claim_metadata,
    operator_pool_selector,
    protection_patch,
)
from kubefixtures.operator.config import OperatorConfig, OperatorConfigError
from kubefixtures.operator.pools import PROTECTION_SECONDS, plan_pool
from kubefixtures.provisioning.base import EnvironmentSpec
from kubefixtures.provisioning.pool_template import (
    PoolTemplate,
    copy_spec,
    template_key,
    template_of,
)
from kubefixtures.provisioning.reused import reuse_key
from kubefixtures.rendering import RenderContext, Secrets, render_sources
from kubefixtures.settings import Settings
from tests.unit.test_settings import FakeConfig

NOW = datetime(2026, 12, 1, 14, 0, 0, tzinfo=UTC)

MANIFEST = """\
apiVersion: v1
kind: Secret
metadata:
  name: db
  labels: {session: "${session_id}"}
stringData:
  password: ${secret:db}
  url: "postgres://app:${secret:db}@db.${namespace}.svc:5432/app"
  literal: "$${not_a_placeholder}"
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db}
spec:
  replicas: ${replicas}
  template:
    spec:
      containers:
        - {name: db, image: postgres:16}
"""


def sources(tmp_path: Path, text: str = MANIFEST) -> EnvironmentSpec:
    path = tmp_path / "src" / "env.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return EnvironmentSpec(name="shop", sources=(path,), values={"replicas": 2})


# --- the template ---------------------------------------------------------------------------


def test_the_template_renders_copies_a_session_would_render(tmp_path: Path) -> None:
    spec = sources(tmp_path)
    settings = Settings(image_overrides={"postgres": "kubefixtures.local/postgres:16"})
    template = template_of(spec, settings)
    assert template.environment == "shop"
    assert template.key == reuse_key(spec, settings) == template_key(template)

    # One copy, with a namespace, session id and secrets of its own: the objects a session
    # renders from the sources with the same.
    secrets = Secrets()
    copy = copy_spec(template, tmp_path)

    def rendered(spec: EnvironmentSpec, overrides: dict[str, str]) -> list[dict[str, Any]]:
        context = RenderContext(
            namespace="kf-shop-abc123",
            session_id="s1",
            environment="shop",
            values=spec.values,
            secrets=secrets,
            image_overrides=overrides,
        )
        return [obj.manifest for obj in render_sources(spec.sources, context)]

    ours = rendered(copy, {})
    assert ours == rendered(spec, dict(settings.image_overrides))
    password = secrets.get("db")
    assert (
        ours[0]["stringData"]["url"] == f"postgres://app:{password}@db.kf-shop-abc123.svc:5432/app"
    )
    assert ours[0]["stringData"]["literal"] == "${not_a_placeholder}"
    assert ours[1]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "kubefixtures.local/postgres:16"
    )


def test_another_value_is_another_key(tmp_path: Path) -> None:
    spec = sources(tmp_path)
    other = EnvironmentSpec(name="shop", sources=spec.sources, values={"replicas": 3})
    assert template_of(spec, Settings()).key != template_of(other, Settings()).key


def test_sources_that_transform_a_secret_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a chart's `b64enc` of a secret does: the value reaches the manifest transformed,
    # so no placeholder can stand for it.
    import base64

    from kubefixtures.provisioning import pool_template

    real = pool_template.render_sources

    def encoding(paths: Any, context: RenderContext) -> Any:
        objects = real(paths, context)
        if paths[0].name == "env.yaml":  # the sources, not a template rendered again
            secret = objects[0].manifest
            encoded = base64.b64encode(context.secrets.get("db").encode()).decode()
            secret["data"] = {"p": encoded}
        return objects

    monkeypatch.setattr(pool_template, "render_sources", encoding)
    monkeypatch.setattr("kubefixtures.provisioning.reused.render_sources", encoding)
    with pytest.raises(KubefixturesError, match="cannot be kept by the operator") as caught:
        template_of(sources(tmp_path), Settings())
    assert "'shop'" in str(caught.value)


def test_a_template_that_is_not_its_key_is_seen(tmp_path: Path) -> None:
    template = template_of(sources(tmp_path), Settings())
    edited = PoolTemplate(
        template.environment, template.template.replace('"db"', '"db2"'), template.key
    )
    assert template_key(edited) != template.key


# --- the keeper's plan ---------------------------------------------------------------------


def lease(
    name: str,
    state: str,
    *,
    key: str = "k1",
    since: datetime | None = None,
    until: datetime | None = None,
    renewed: datetime | None = None,
) -> dict[str, Any]:
    annotations: dict[str, str] = {}
    if since is not None:
        annotations[SPARE_SINCE_ANNOTATION] = format_time(since)
    if until is not None:
        annotations[KEEP_UNTIL_ANNOTATION] = format_time(until)
    return {
        "metadata": {
            "namespace": name,
            "resourceVersion": "7",
            "labels": {POOL_KEY_LABEL: key, POOL_LABEL: state, POOL_NAME_LABEL: "web"},
            "annotations": annotations,
        },
        "spec": {
            "holderIdentity": "op@host/1",
            "leaseDurationSeconds": 60,
            "renewTime": format_time(renewed or NOW - timedelta(seconds=5), micro=True),
        },
    }


def fresh_spare(name: str, key: str = "k1", age: float = 10) -> dict[str, Any]:
    return lease(
        name,
        SPARE,
        key=key,
        since=NOW - timedelta(seconds=age),
        until=NOW + timedelta(seconds=PROTECTION_SECONDS - age),
    )


def plan(members: list[dict[str, Any]], **changes: Any) -> Any:
    arguments: dict[str, Any] = {
        "key": "k1",
        "size": 3,
        "max_age": 3600,
        "members": members,
        "own_starting": 0,
        "room": 10,
        "now": NOW,
    }
    return plan_pool(**{**arguments, **changes})


def test_the_missing_copies_are_started() -> None:
    made = plan([fresh_spare("a"), lease("b", STARTING)])
    assert (made.ready, made.starting, made.start, made.retire, made.capped) == (1, 1, 1, [], False)
    # Copies this operator is making and the listing does not show yet count as starting.
    assert plan([fresh_spare("a")], own_starting=2).start == 0
    # A copy coming up whose maintainer died is not counted (the reapers take it).
    dead = lease("c", STARTING, renewed=NOW - timedelta(minutes=5))
    assert plan([dead]).start == 3


def test_old_or_stale_spares_are_retired_and_replaced() -> None:
    old = fresh_spare("old", age=4000)
    other_key = fresh_spare("other", key="k0")
    made = plan([old, other_key, fresh_spare("a")])
    assert [item["metadata"]["namespace"] for item in made.retire] == ["old", "other"]
    assert (made.ready, made.start) == (1, 2)


def test_a_deleted_pool_keeps_nothing() -> None:
    made = plan([fresh_spare("a"), lease("b", STARTING)], key=None)
    assert [item["metadata"]["namespace"] for item in made.retire] == ["a"]
    assert made.start == 0


def test_the_cap_holds() -> None:
    made = plan([], room=1)
    assert (made.start, made.capped) == (1, True)
    assert plan([], room=0).start == 0
    assert plan([], room=-2).start == 0  # over the cap already (a lowered cap): nothing new


def test_protection_is_extended_when_a_third_is_used_up() -> None:
    young = fresh_spare("young", age=10)
    aging = fresh_spare("aging", age=PROTECTION_SECONDS / 2)
    made = plan([young, aging])
    assert [item["metadata"]["namespace"] for item in made.protect] == ["aging"]
    patch = protection_patch(NOW + timedelta(seconds=PROTECTION_SECONDS), "7")
    assert patch["metadata"]["resourceVersion"] == "7"  # a compare-and-swap: never a claimed copy
    assert patch["metadata"]["annotations"][KEEP_UNTIL_ANNOTATION] == "2026-12-01T14:05:00Z"


def test_a_claim_drops_the_operator_labels_and_the_selector_finds_its_copies() -> None:
    labels = claim_metadata()["labels"]
    assert labels[POOL_NAME_LABEL] is None
    assert labels[POOL_HOME_LABEL] is None
    assert operator_pool_selector("ci", "web", SPARE) == (
        "app.kubernetes.io/managed-by=kubefixtures,kubefixtures.io/pool-home=ci,"
        "kubefixtures.io/pool-name=web,kubefixtures.io/pool=spare"
    )
    assert operator_pool_selector("ci").endswith("pool-home=ci,kubefixtures.io/pool-name")


# --- settings -----------------------------------------------------------------------------


def test_pools_are_off_unless_the_cap_is_given() -> None:
    assert OperatorConfig.from_env({}).pool_max_namespaces == 0
    config = OperatorConfig.from_env(
        {"POD_NAMESPACE": "kf-system", "KUBEFIXTURES_OPERATOR_POOL_MAX_NAMESPACES": "25"}
    )
    assert (config.pool_namespace, config.pool_max_namespaces) == ("kf-system", 25)
    chosen = OperatorConfig.from_env(
        {"POD_NAMESPACE": "kf-system", "KUBEFIXTURES_OPERATOR_POOL_NAMESPACE": "pools"}
    )
    assert chosen.pool_namespace == "pools"
    with pytest.raises(OperatorConfigError, match="KUBEFIXTURES_OPERATOR_POOL_MAX_NAMESPACES"):
        OperatorConfig.from_env({"KUBEFIXTURES_OPERATOR_POOL_MAX_NAMESPACES": "1001"})


def test_the_operator_option_is_validated(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["operator", "--pool-max-namespaces", "-1"])
    assert "argument --pool-max-namespaces: '-1' is out of range" in capsys.readouterr().err


def test_claiming_without_keeping() -> None:
    claim = Settings.from_config(FakeConfig(options={"kubefixtures_pool_claim": True}))
    assert (claim.pool, claim.pool_claim, claim.claims_spares) == (0, True, True)
    assert Settings(pool=2).claims_spares
    assert not Settings().claims_spares
    with pytest.raises(SettingsError, match="--kubefixtures-pool-claim"):
        Settings.from_config(
            FakeConfig(options={"kubefixtures_pool_claim": True, "kubefixtures_reuse": True})
        )
    with pytest.raises(SettingsError, match="--kubefixtures-pool-claim"):
        Settings.from_config(
            FakeConfig(options={"kubefixtures_pool_claim": True, "kubefixtures_namespace": "mine"})
        )


# --- the command ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["pool", "create", "m", "--name", "Web", "--size", "1"], "argument --name: 'Web'"),
        (["pool", "create", "m", "--name", "web", "--size", "0"], "argument --size: '0' keeps"),
        (["pool", "create", "m", "--name", "web", "--size", "101"], "argument --size: '101'"),
        (["pool", "create", "m", "--name", "w", "--size", "1", "--max-age", "0"], "--max-age"),
        (["pool", "create", "m", "--size", "1"], "the following arguments are required: --name"),
    ],
)
def test_bad_arguments_name_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(argv)
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


def test_bad_sources_are_one_line_and_nothing_is_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    absent = str(tmp_path / "absent")
    assert cli_main(["pool", "create", absent, "--name", "web", "--size", "1"]) == 1
    assert capsys.readouterr().err == f"kubefixtures: error: {absent}: no such file or directory\n"
    assert cli_main(["pool", "create", "--name", "web", "--size", "1"]) == 1
    assert capsys.readouterr().err == (
        "kubefixtures: error: pool create: give SOURCE... or --catalog SERVICE... (or both)\n"
    )
    bad = sources(
        tmp_path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: ${nope}}\n"
    )
    code = cli_main(["pool", "create", str(bad.sources[0]), "--name", "web", "--size", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "unknown placeholder ${nope}" in err
    assert cli_main(["pool", "create", str(bad.sources[0].parent), "--name", "web", "--size", "1",
                     "--image-overrides", "redis"]) == 1  # fmt: skip
    assert "--image-overrides: 'redis' is not a NAME=IMAGE pair" in capsys.readouterr().err
