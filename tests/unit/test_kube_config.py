"""Loading kubeconfigs without the official client: merging, paths, credentials, errors."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubefixtures.errors import ClusterError
from kubefixtures.kube import config as kube_config
from kubefixtures.kube.config import as_cluster_config, load_config


def kubeconfig(
    path: Path,
    *,
    current: str | None = "main",
    clusters: dict[str, dict[str, Any]] | None = None,
    users: dict[str, dict[str, Any]] | None = None,
    contexts: dict[str, tuple[str, str]] | None = None,
) -> Path:
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current,
        "clusters": [
            {"name": name, "cluster": cluster}
            for name, cluster in (clusters or {"main": {"server": "https://main:6443"}}).items()
        ],
        "users": [{"name": name, "user": user} for name, user in (users or {"main": {}}).items()],
        "contexts": [
            {"name": name, "context": {"cluster": cluster, "user": user}}
            for name, (cluster, user) in (contexts or {"main": ("main", "main")}).items()
        ],
    }
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_current_context_gives_server_and_token(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", users={"main": {"token": "t0ken"}})
    config = load_config(str(path))
    assert (config.server, config.context) == ("https://main:6443", "main")
    assert config.authorization() == "Bearer t0ken"
    assert "t0ken" not in repr(config)


def test_a_named_context_is_used_and_an_unknown_one_is_named(tmp_path: Path) -> None:
    path = kubeconfig(
        tmp_path / "config",
        clusters={"main": {"server": "https://main"}, "other": {"server": "https://other/"}},
        contexts={"main": ("main", "main"), "other": ("other", "main")},
    )
    assert load_config(str(path), "other").server == "https://other"
    with pytest.raises(ClusterError, match=rf"kubeconfig {path}: no context named 'nope'"):
        load_config(str(path), "nope")


def test_kubeconfig_files_merge_as_kubectl_merges_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = kubeconfig(
        tmp_path / "first",
        current="shared",
        clusters={"shared": {"server": "https://first"}},
        users={"shared": {"token": "from-first"}},
        contexts={"shared": ("shared", "shared")},
    )
    second = kubeconfig(
        tmp_path / "second",
        current="extra",
        clusters={"shared": {"server": "https://second"}, "extra": {"server": "https://extra"}},
        users={"shared": {"token": "from-second"}},
        contexts={"extra": ("extra", "shared")},
    )
    missing = tmp_path / "missing"  # kubectl skips files that do not exist
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(map(str, (missing, first, second))))
    config = load_config()
    assert (config.context, config.server) == ("shared", "https://first")  # first one wins
    assert config.authorization() == "Bearer from-first"
    assert load_config(context="extra").server == "https://extra"


def test_relative_paths_are_relative_to_the_file_holding_them(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "token").write_text("from-file\n")
    path = kubeconfig(
        tmp_path / "config",
        clusters={"main": {"server": "https://main", "certificate-authority": "creds/ca.crt"}},
        users={
            "main": {
                "tokenFile": "creds/token",
                "client-certificate": "creds/client.crt",
                "client-key": "creds/client.key",
            }
        },
    )
    config = load_config(str(path))
    assert config.ca_file == str(tmp_path / "creds" / "ca.crt")
    assert config.client_cert_files == (
        str(tmp_path / "creds" / "client.crt"),
        str(tmp_path / "creds" / "client.key"),
    )
    assert config.authorization() == "Bearer from-file"


def test_basic_auth(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", users={"main": {"username": "u", "password": "p"}})
    assert load_config(str(path)).authorization() == f"Basic {base64.b64encode(b'u:p').decode()}"


def plugin(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "plugin.py"
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


EXEC_PLUGIN = """
import json, os, sys
from pathlib import Path
calls = Path(sys.argv[1])
calls.write_text(calls.read_text() + os.environ["KUBERNETES_EXEC_INFO"] + "\\n"
                 if calls.exists() else os.environ["KUBERNETES_EXEC_INFO"] + "\\n")
count = len(calls.read_text().splitlines())
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": f"{os.environ['PREFIX']}-{count}",
                             "expirationTimestamp": sys.argv[2]}}))
"""


@pytest.mark.parametrize(
    ("expiry", "tokens"),
    [("2999-01-01T00:00:00Z", ["t-1", "t-1"]), ("2000-01-01T00:00:00Z", ["t-1", "t-2"])],
    ids=["cached-until-expiry", "run-again-once-expired"],
)
def test_an_exec_plugin_gives_tokens_until_they_expire(
    tmp_path: Path, expiry: str, tokens: list[str]
) -> None:
    script = plugin(tmp_path, EXEC_PLUGIN)
    calls = tmp_path / "calls"
    exec_spec = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": f"./{script.name}",  # relative to the kubeconfig
        "args": [str(calls), expiry],
        "env": [{"name": "PREFIX", "value": "t"}],
        "provideClusterInfo": True,
        "interactiveMode": "Never",
    }
    path = kubeconfig(tmp_path / "config", users={"main": {"exec": exec_spec}})
    config = load_config(str(path))
    assert config.authorization_may_block
    assert [config.authorization(), config.authorization()] == [f"Bearer {t}" for t in tokens]
    info = json.loads(calls.read_text().splitlines()[0])
    assert info["kind"] == "ExecCredential"
    assert info["spec"]["interactive"] is False
    assert info["spec"]["cluster"]["server"] == "https://main:6443"


def test_a_missing_exec_plugin_says_how_to_install_it(tmp_path: Path) -> None:
    exec_spec = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "kubefixtures-no-such-plugin",
        "installHint": "Install it\n  from the vendor.",
    }
    path = kubeconfig(tmp_path / "config", users={"main": {"exec": exec_spec}})
    config = load_config(str(path))  # plugins run when a request needs a token
    with pytest.raises(
        ClusterError,
        match=r"credential plugin kubefixtures-no-such-plugin is not installed "
        r"\(Install it from the vendor\.\)$",
    ):
        config.authorization()


def test_a_failing_exec_plugin_shows_what_it_said(tmp_path: Path) -> None:
    said = "import sys\nsys.stderr.write('token expired, log in\\n')\nsys.exit(3)"
    script = plugin(tmp_path, said)
    exec_spec = {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script)}
    path = kubeconfig(tmp_path / "config", users={"main": {"exec": exec_spec}})
    with pytest.raises(ClusterError, match=r"exited with 3: token expired, log in$"):
        load_config(str(path)).authorization()


@pytest.mark.parametrize(
    "stdout",
    [b'{"status": {"token": "ab\xffcd"}}', b"\xff\xfe"],
    ids=["token", "everything"],
)
def test_an_exec_plugin_printing_bytes_that_are_not_utf8_is_one_line(
    tmp_path: Path, stdout: bytes
) -> None:
    script = plugin(tmp_path, f"import sys\nsys.stdout.buffer.write({stdout!r})")
    exec_spec = {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script)}
    path = kubeconfig(tmp_path / "config", users={"main": {"exec": exec_spec}})
    with pytest.raises(ClusterError, match=r"plugin .*plugin\.py printed output that is not UTF-8"):
        load_config(str(path)).authorization()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("clusters: [\n  - name: x\n   bad", r"kubeconfig .*config line \d+: not valid YAML"),
        ("- just\n- a list\n", r"not a kubeconfig \(expected a mapping at the top\)"),
        ("current-context: main\ncontexts: []\n", r"no context named 'main'"),
        ("contexts: []\n", r"no current-context \(set --kubefixtures-context\)"),
    ],
)
def test_a_broken_kubeconfig_is_one_line_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "config"
    path.write_text(content)
    with pytest.raises(ClusterError, match=message) as caught:
        load_config(str(path))
    assert "\n" not in str(caught.value)


def test_a_context_naming_an_unknown_cluster(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", contexts={"main": ("gone", "main")})
    with pytest.raises(ClusterError, match="context 'main' names no known cluster"):
        load_config(str(path))


def test_bad_certificate_data_is_named(tmp_path: Path) -> None:
    path = kubeconfig(
        tmp_path / "config",
        clusters={"main": {"server": "https://m", "certificate-authority-data": "not base64!"}},
    )
    with pytest.raises(ClusterError, match="certificate-authority-data is not base64"):
        load_config(str(path))
    garbage = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnope\n").decode()
    path = kubeconfig(
        tmp_path / "config",
        clusters={"main": {"server": "https://m", "certificate-authority-data": garbage}},
    )
    with pytest.raises(ClusterError, match=r"kubeconfig .*: cannot load the cluster's CA"):
        load_config(str(path)).ssl_context()


def test_no_kubeconfig_names_the_file_and_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(ClusterError, match=r"absent does not exist \(set --kubefixtures-kube"):
        load_config()


def test_in_a_pod_without_kubeconfig_the_service_account_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ca.crt").write_text("ca")
    (tmp_path / "token").write_text("sa-token")
    monkeypatch.setattr(kube_config, "_SERVICE_ACCOUNT", tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    config = load_config()
    assert (config.server, config.context) == ("https://[fd00::1]:443", None)
    assert config.ca_file == str(tmp_path / "ca.crt")
    assert config.authorization() == "Bearer sa-token"


def test_what_this_loader_does_not_read_goes_to_the_official_client(tmp_path: Path) -> None:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    # A legacy auth-provider: an OIDC id-token that expires in 3000.
    token = f"{part({'alg': 'none'})}.{part({'exp': 32503680000})}.c2ln"
    provider = {"name": "oidc", "config": {"id-token": token, "client-id": "kf"}}
    provider["config"]["idp-issuer-url"] = "https://issuer.invalid"
    path = kubeconfig(tmp_path / "config", users={"main": {"auth-provider": provider}})
    config = load_config(str(path))
    assert (config.server, config.context) == ("https://main:6443", "main")
    assert config.authorization() == f"Bearer {token}"


def test_an_official_configuration_is_read_through_the_same_interface() -> None:
    from kubernetes import client

    official = client.Configuration()
    official.host = "https://api.example:443/"
    official.verify_ssl = True
    official.assert_hostname = False
    official.api_key = {"authorization": "abc"}
    official.api_key_prefix = {"authorization": "Bearer"}
    config = as_cluster_config(official)
    assert config.server == "https://api.example:443"
    assert (config.insecure, config.check_hostname) == (False, False)
    assert config.authorization() == "Bearer abc"
    assert as_cluster_config(config) is config


def test_importing_the_loader_does_not_import_the_official_client() -> None:
    code = "import sys, kubefixtures.kube.config; print('kubernetes' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"


def test_an_auth_provider_without_the_official_client_names_the_user_and_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # as when it is not installed
    provider = {"name": "oidc", "config": {"id-token": "x", "client-id": "kf"}}
    path = kubeconfig(tmp_path / "config", users={"main": {"auth-provider": provider}})
    with pytest.raises(ClusterError) as raised:
        load_config(str(path))
    message = str(raised.value)
    assert message == (
        f"kubeconfig {path}: user 'main' uses auth-provider, which needs the official "
        "kubernetes client: pip install 'kubefixtures[auth-provider]'"
    )
