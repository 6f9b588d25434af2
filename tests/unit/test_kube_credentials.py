"""What the kubeconfig loader accepts and refuses about TLS, proxies, impersonation and
credential plugins; the transports themselves are in test_kube_transports.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.errors import ClusterError
from kubefixtures.kube._headers import checked_headers
from kubefixtures.kube.config import load_config
from tests.unit.test_kube_config import kubeconfig, plugin

CA_DATA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="  # base64 of a PEM header: never loaded


def cluster_config(tmp_path: Path, **cluster: Any) -> Path:
    return kubeconfig(
        tmp_path / "config", clusters={"main": {"server": "https://main:6443", **cluster}}
    )


@pytest.mark.parametrize("value", ["false", "true", "no", 0, 1])
def test_insecure_skip_tls_verify_must_be_a_boolean(tmp_path: Path, value: object) -> None:
    # The string "false" used to switch verification off (bool("false") is True).
    path = cluster_config(tmp_path, **{"insecure-skip-tls-verify": value})
    with pytest.raises(
        ClusterError,
        match=rf"^kubeconfig {tmp_path}/config: cluster 'main': insecure-skip-tls-verify "
        r"must be true or false, not .*$",
    ):
        load_config(str(path))


@pytest.mark.parametrize("ca", ["certificate-authority-data", "certificate-authority"])
def test_a_ca_with_insecure_skip_tls_verify_is_refused_as_kubectl_refuses_it(
    tmp_path: Path, ca: str
) -> None:
    path = cluster_config(tmp_path, **{"insecure-skip-tls-verify": True, ca: CA_DATA})
    with pytest.raises(
        ClusterError,
        match=r"cluster 'main': specifying a root certificates file with the insecure flag "
        r"is not allowed",
    ):
        load_config(str(path))


def test_insecure_skip_tls_verify_true_alone_turns_verification_off(tmp_path: Path) -> None:
    path = cluster_config(tmp_path, **{"insecure-skip-tls-verify": True})
    config = load_config(str(path))
    assert config.insecure
    assert config.ssl_context().check_hostname is False
    false = load_config(str(cluster_config(tmp_path, **{"insecure-skip-tls-verify": False})))
    assert not false.insecure
    assert false.ssl_context().check_hostname is True


def test_proxy_url_is_read_by_this_loader(tmp_path: Path) -> None:
    path = cluster_config(tmp_path, **{"proxy-url": "http://user:pw@proxy.corp:3128"})
    code = (
        "import sys; from kubefixtures.kube.config import load_config; "
        f"c = load_config({str(path)!r}); "
        "print(c.proxy.host, c.proxy.port, c.proxy_for_server() is c.proxy, "
        "'kubernetes' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["proxy.corp", "3128", "True", "False"], done.stderr
    assert "pw" not in repr(load_config(str(path)).proxy)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("socks5://proxy:1080", r"socks5:// proxies are not supported"),
        ("https://proxy:3128", r"https:// proxies are not supported"),
        ("http://", r"the proxy URL has no host"),
    ],
)
def test_an_unsupported_proxy_url_is_one_line_naming_the_field(
    tmp_path: Path, url: str, message: str
) -> None:
    path = cluster_config(tmp_path, **{"proxy-url": url})
    with pytest.raises(
        ClusterError, match=rf"^kubeconfig .*: cluster 'main': proxy-url: {message}"
    ):
        load_config(str(path))


def test_impersonation_becomes_impersonate_headers(tmp_path: Path) -> None:
    user = {
        "token": "t",
        "as": "jane",
        "as-uid": "42",
        "as-groups": ["devs", "ops"],
        "as-user-extra": {"scopes.example.com/x y": ["a", "b"]},
    }
    path = kubeconfig(tmp_path / "config", users={"main": user})
    assert load_config(str(path)).request_headers() == [
        ("Authorization", "Bearer t"),
        ("Impersonate-User", "jane"),
        ("Impersonate-Uid", "42"),
        ("Impersonate-Group", "devs"),
        ("Impersonate-Group", "ops"),
        ("Impersonate-Extra-scopes.example.com%2Fx%20y", "a"),
        ("Impersonate-Extra-scopes.example.com%2Fx%20y", "b"),
    ]


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({"as-groups": ["devs"]}, r"as-groups, as-uid and as-user-extra need as"),
        ({"as": "jane", "as-groups": "devs"}, r"as-groups must be a list of strings"),
        ({"as": ["jane"]}, r"as must be a string"),
    ],
)
def test_bad_impersonation_is_one_line_naming_the_user(
    tmp_path: Path, user: dict[str, Any], message: str
) -> None:
    path = kubeconfig(tmp_path / "config", users={"main": user})
    with pytest.raises(ClusterError, match=rf"^kubeconfig .*config: user 'main': {message}"):
        load_config(str(path))


def test_a_token_with_a_line_break_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", users={"main": {"token": "s3cr3t\r\nX-Evil: 1"}})
    with pytest.raises(ClusterError, match="refused to send the Authorization header") as raised:
        load_config(str(path)).request_headers()
    assert "s3cr3t" not in str(raised.value)


def exec_user(script: Path) -> dict[str, Any]:
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script)}}


LEAKY_PLUGIN = """
import sys
sys.stderr.write("starting up " * 200 + "\\n")
sys.stderr.write("debug: got token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.c2lnbmF0dXJl\\n")
sys.stderr.write("password=hunter2 Bearer abcd1234 opaque 9f8e7d6c5b4a39281706f5e4d3c2b1a0\\n")
sys.stderr.write("-----BEGIN PRIVATE KEY-----\\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\\n")
sys.stderr.write("-----END PRIVATE KEY-----\\nfailed to log in\\n")
sys.exit(1)
"""


def test_a_failing_plugins_stderr_is_masked_and_cut(tmp_path: Path) -> None:
    path = kubeconfig(
        tmp_path / "config", users={"main": exec_user(plugin(tmp_path, LEAKY_PLUGIN))}
    )
    with pytest.raises(ClusterError, match=r"exited with 1: .*failed to log in$") as raised:
        load_config(str(path)).authorization()
    message = str(raised.value)
    for secret in ("eyJhbGciOiJSUzI1NiJ9", "hunter2", "abcd1234", "9f8e7d6c5b4a", "MIGHAgEAMBMG"):
        assert secret not in message
    assert "starting up " * 40 not in message  # only the tail
    assert len(message) < 600
    assert "\n" not in message


RENEWING_PLUGIN = """
import json, sys
from pathlib import Path
runs = Path(sys.argv[1])
runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
if len(runs.read_text()) > 1:
    sys.stderr.write("refresh failed; the old one was tok-aaaa1111bbbb2222\\n")
    sys.exit(1)
print(json.dumps({"kind": "ExecCredential", "status": {"token": "tok-aaaa1111bbbb2222",
                  "expirationTimestamp": "2000-01-01T00:00:00Z"}}))
"""


def test_a_failing_plugin_never_repeats_a_token_it_gave_before(tmp_path: Path) -> None:
    script = plugin(tmp_path, RENEWING_PLUGIN)
    user = exec_user(script)
    user["exec"]["args"] = [str(tmp_path / "runs")]
    config = load_config(str(kubeconfig(tmp_path / "config", users={"main": user})))
    assert config.authorization() == "Bearer tok-aaaa1111bbbb2222"
    with pytest.raises(ClusterError, match=r"refresh failed; the old one was \*+$") as raised:
        config.authorization()  # expired: the plugin runs again, and fails
    assert "aaaa1111" not in str(raised.value)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"clientCertificateData": "CERT"}, r"clientCertificateData without clientKeyData"),
        ({}, r"gave neither a token nor a client certificate and key"),
    ],
)
def test_a_plugin_giving_half_a_credential_is_one_line(
    tmp_path: Path, status: dict[str, str], message: str
) -> None:
    body = f"import json\nprint(json.dumps({{'kind': 'ExecCredential', 'status': {status!r}}}))"
    path = kubeconfig(tmp_path / "config", users={"main": exec_user(plugin(tmp_path, body))})
    with pytest.raises(ClusterError, match=message):
        load_config(str(path)).authorization()


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\x00b", "a\x7fb", "a\x1bb"])
def test_every_control_character_in_a_header_value_is_refused(value: str) -> None:
    with pytest.raises(ClusterError, match=r"^src: refused to send the X-A header") as raised:
        checked_headers([("X-A", value)], "src")
    assert value not in str(raised.value)


def test_blanks_around_a_header_value_are_trimmed_and_a_bad_name_refused() -> None:
    assert checked_headers([("X-A", " a\tb \t")], "src") == [("X-A", "a\tb")]
    with pytest.raises(ClusterError, match=r"^src: refused to send a header with an invalid name"):
        checked_headers([("X-A\r\nX-B", "v")], "src")
