"""Which proxy a request goes through, as Go's httpproxy (and so kubectl) decides it."""

from __future__ import annotations

import pytest

from kubefixtures.errors import ClusterError
from kubefixtures.kube._proxy import environment_proxy, no_proxy_matches, parse_proxy


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("", "api.corp", 443, False),
        ("*", "api.corp", 443, True),
        # Loopback and localhost never go through an environment proxy.
        ("", "localhost", 6443, True),
        ("", "127.0.0.5", 6443, True),
        ("", "::1", 6443, True),
        # A name matches itself and its subdomains; .name and *.name only subdomains.
        ("corp", "api.corp", 443, True),
        ("api.corp", "api.corp", 443, True),
        ("pi.corp", "api.corp", 443, False),
        (".corp", "api.corp", 443, True),
        (".api.corp", "api.corp", 443, False),
        ("*.corp", "api.corp", 443, True),
        ("*.api.corp", "api.corp", 443, False),
        (" Foo.Example , API.CORP ", "api.corp", 443, True),
        # Ports.
        ("api.corp:443", "api.corp", 443, True),
        ("api.corp:6443", "api.corp", 443, False),
        # IPs and CIDRs (a CIDR matches IP literals only, never names).
        ("10.1.2.3", "10.1.2.3", 443, True),
        ("10.1.2.3:443", "10.1.2.3", 6443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.0.0.0/8", "ten.corp", 443, False),
        ("fd00::/8", "fd00::5", 443, True),
        ("[fd00::5]:443", "fd00::5", 443, True),
        ("fd00::5", "[fd00::5]", 443, True),
        # Malformed entries are skipped, as Go skips them.
        ("10.0.0.0/99,:443", "10.1.2.3", 443, False),
    ],
)
def test_no_proxy_matches_as_go_does(no_proxy: str, host: str, port: int, direct: bool) -> None:
    assert no_proxy_matches(no_proxy, host, port) is direct


def test_uppercase_variables_win_and_the_scheme_picks_the_variable() -> None:
    env = {
        "HTTPS_PROXY": "http://upper:1",
        "https_proxy": "http://lower:2",
        "http_proxy": "http://plain:3",
    }
    assert environment_proxy("https", "api.corp", 443, env) == parse_proxy(
        "http://upper:1", "HTTPS_PROXY"
    )
    assert environment_proxy("http", "api.corp", 80, env) == parse_proxy(
        "http://plain:3", "http_proxy"
    )
    assert environment_proxy("https", "api.corp", 443, {"https_proxy": "lower:2"}) is not None
    # A CGI request's Proxy header arrives as HTTP_PROXY: ignored there, as Go ignores it.
    cgi = {"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}
    assert environment_proxy("http", "api.corp", 80, cgi) is None
    assert environment_proxy("https", "api.corp", 443, {**env, "no_proxy": "corp"}) is None
    assert environment_proxy("https", "api.corp", 443, {}) is None


def test_a_proxy_url_gives_host_port_and_basic_credentials() -> None:
    proxy = parse_proxy("http://al%40ice:p%3Ass@proxy.corp:8080", "F")
    assert (proxy.host, proxy.port, proxy.address) == ("proxy.corp", 8080, "proxy.corp:8080")
    assert proxy.authorization == "Basic YWxAaWNlOnA6c3M="  # al@ice:p:ss
    assert "p:ss" not in repr(proxy)
    assert parse_proxy("proxy.corp", "F").port == 80
    assert parse_proxy("http://[fd00::1]:3128", "F").address == "[fd00::1]:3128"


@pytest.mark.parametrize(
    "url", ["socks5://p:1080", "socks5h://p:1080", "https://p:443", "http://p:x"]
)
def test_an_unsupported_environment_proxy_names_the_variable(url: str) -> None:
    with pytest.raises(ClusterError, match=r"^HTTPS_PROXY: "):
        environment_proxy("https", "api.corp", 443, {"HTTPS_PROXY": url})
