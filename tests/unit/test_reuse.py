"""The reuse key: the same for every session of the same manifests, another for any change."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubefixtures.provisioning.base import EnvironmentSpec
from kubefixtures.provisioning.reused import KnownSecrets, reuse_key
from kubefixtures.settings import Settings

MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  namespace: ${namespace}
  session: ${session_id}
  password: ${secret:db}
  greeting: ${greeting}
---
apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  containers:
    - name: app
      image: redis:7
"""


@pytest.fixture
def source(tmp_path: Path) -> Path:
    (tmp_path / "app.yaml").write_text(MANIFEST)
    return tmp_path


def spec(source: Path, greeting: str = "hi", name: str = "shop") -> EnvironmentSpec:
    return EnvironmentSpec(name=name, sources=(source,), values={"greeting": greeting})


def test_the_key_ignores_what_every_session_changes(source: Path) -> None:
    # Namespace, session id and generated secrets differ per session; the key must not.
    first = reuse_key(spec(source), Settings())
    assert first == reuse_key(spec(source), Settings())
    assert len(first) == 20
    assert all(character in "0123456789abcdef" for character in first)


def test_the_key_changes_with_the_manifests_values_overrides_and_name(source: Path) -> None:
    base = reuse_key(spec(source), Settings())
    assert reuse_key(spec(source, greeting="hello"), Settings()) != base
    overridden = Settings(image_overrides={"redis": "local/redis:7.0"})
    assert reuse_key(spec(source), overridden) != base
    assert reuse_key(spec(source, name="other"), Settings()) != base
    (source / "app.yaml").write_text(MANIFEST.replace("redis:7", "redis:7.2"))
    assert reuse_key(spec(source), Settings()) != base


def test_known_secrets_come_back_and_new_ones_are_generated() -> None:
    secrets = KnownSecrets({"db": "stored-value"})
    assert secrets.get("db") == "stored-value"
    fresh = secrets.get("other")
    assert fresh != "stored-value"
    assert secrets.get("other") == fresh
