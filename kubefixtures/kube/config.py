"""Where a cluster is and how to prove who we are: kubeconfig and in-cluster loading.

Importing the official client costs about 0.3 s of CPU (it loads every generated model),
which was a third of the time kubefixtures needed to bring a small environment up. This
module reads what nearly every kubeconfig holds by itself: server, CA, client certificates,
tokens and token files, basic auth, exec credential plugins (tokens or client
certificates), impersonation and ``proxy-url`` (kind, our local cluster, EKS, GKE and AKS
with kubelogin all use these). A kubeconfig that needs more (the legacy ``auth-provider``
plugins) is loaded by the official client instead, whose configuration is then read
through the same interface; the client is an optional dependency
(``pip install kubefixtures[auth-provider]``), and without it such a kubeconfig is a
one-line error naming the user entry.

Merging follows kubectl: of the files in KUBECONFIG, the first to define a name wins, as
does the first ``current-context``; relative paths are relative to the file that holds them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from kubefixtures.errors import ClusterError, setting_name
from kubefixtures.kube import _redact
from kubefixtures.kube._headers import checked_headers
from kubefixtures.kube._proxy import Proxy, environment_proxy, parse_proxy

__all__ = ["ClusterConfig", "as_cluster_config", "load_config"]

JSON = dict[str, Any]
_SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_EXEC_TIMEOUT = 60.0
_EXPIRY_MARGIN = 10.0  # renew exec credentials this long before they expire
_TOKEN_FILE_TTL = 60.0  # bound service account tokens rotate; re-read the file now and then
# What this loader leaves to the official client.
_UNSUPPORTED_USER_KEYS = ("auth-provider",)
_TLS_LOCK = threading.Lock()


class _Unsupported(Exception):
    """The kubeconfig needs something only the official client's loader does."""

    def __init__(self, user: str, user_file: Path, key: str) -> None:
        super().__init__(f"kubeconfig {user_file}: user {user!r} uses {key}")
        self.user, self.user_file, self.key = user, user_file, key


@dataclass(frozen=True)
class ClusterConfig:
    """A loaded cluster connection: ``server`` URL, TLS settings and credentials."""

    server: str
    context: str | None
    source: str  # "kubeconfig /root/.kube/config" or "in-cluster config", for messages
    ca_pem: str | None = None
    ca_file: str | None = None
    client_cert: tuple[str, str] | None = field(default=None, repr=False)  # (cert, key) PEM
    client_cert_files: tuple[str, str | None] | None = None
    insecure: bool = False
    check_hostname: bool = True
    tls_server_name: str | None = None
    # Returns the Authorization header's value (or None); may run a credential plugin.
    authorization: Callable[[], str | None] = field(default=lambda: None, repr=False)
    authorization_may_block: bool = False  # it (or client_certificate) may run a plugin
    # A credential plugin's current (cert, key) PEM pair, or None; may run the plugin.
    client_certificate: Callable[[], tuple[str, str] | None] | None = field(
        default=None, repr=False
    )
    proxy: Proxy | None = None  # the kubeconfig's proxy-url (None: the environment's, if any)
    # Impersonate-* headers (as, as-groups, as-uid, as-user-extra), sent with every request.
    impersonation: tuple[tuple[str, str], ...] = ()
    namespace: str | None = None  # the context's namespace (in a pod: the pod's own)
    _ssl: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def secure(self) -> bool:
        return self.server.startswith("https://")

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for this cluster (safe to share between threads): built once, and
        again when a credential plugin hands out a new client certificate."""
        pair = self.client_certificate() if self.client_certificate is not None else None
        with _TLS_LOCK:
            if "context" not in self._ssl or self._ssl.get("pair") != pair:
                self._ssl["context"] = self._new_ssl_context(pair)
                self._ssl["pair"] = pair
            context: ssl.SSLContext = self._ssl["context"]
            return context

    def request_headers(self) -> list[tuple[str, str]]:
        """Authorization and Impersonate-* headers for one request, checked for control
        characters; may run a credential plugin (see ``authorization_may_block``)."""
        value = self.authorization()
        pairs = [("Authorization", value)] if value else []
        return checked_headers([*pairs, *self.impersonation], self.source)

    def proxy_for_server(self) -> Proxy | None:
        """The proxy to reach ``server`` through: proxy-url, else the environment's."""
        if self.proxy is not None:
            return self.proxy
        parts = urlsplit(self.server)
        secure = parts.scheme == "https"
        return environment_proxy(
            parts.scheme, parts.hostname or "localhost", parts.port or (443 if secure else 80)
        )

    def _new_ssl_context(self, plugin_pair: tuple[str, str] | None) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_pem)
        except (OSError, ssl.SSLError) as error:
            raise ClusterError(f"{self.source}: cannot load the cluster's CA: {error}") from None
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif not self.check_hostname:
            context.check_hostname = False
        try:
            if plugin_pair is not None:
                _load_cert_chain_from_memory(context, *plugin_pair)
            elif self.client_cert_files is not None:
                context.load_cert_chain(*self.client_cert_files)
            elif self.client_cert is not None:
                _load_cert_chain_from_memory(context, *self.client_cert)
        except (OSError, ssl.SSLError) as error:
            raise ClusterError(
                f"{self.source}: cannot load the client certificate: {error}"
            ) from None
        # Every connection is HTTP/1.1: requests, watches and port-forward upgrades alike.
        context.set_alpn_protocols(["http/1.1"])
        return context


def _load_cert_chain_from_memory(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    # The ssl module only loads key pairs from files: a private file that lives for a moment.
    with tempfile.TemporaryDirectory(prefix="kubefixtures-tls-") as scratch:
        path = Path(scratch) / "client.pem"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(cert_pem.rstrip() + "\n" + key_pem)
        context.load_cert_chain(str(path))


# --- loading -----------------------------------------------------------------------------------


def load_config(kubeconfig: str | None = None, context: str | None = None) -> ClusterConfig:
    """The configuration of ``context`` (default: the current one) of ``kubeconfig`` (default:
    KUBECONFIG, else ~/.kube/config), or the in-cluster config when there is no kubeconfig
    and we run in a pod. Raises ClusterError with one line naming the file and what is wrong.
    """
    files, paths, existing = _kubeconfig_files(kubeconfig)
    if not existing:
        if _in_cluster_applies(kubeconfig, context):
            return _in_cluster()
        first = paths[0] if paths else Path(files)
        raise ClusterError(
            f"kubeconfig {first} does not exist "
            f"(set {setting_name('kubeconfig', environment='KUBECONFIG')})"
        )
    merged = _merge([(path, _read(path)) for path in existing])
    where = os.pathsep.join(str(path) for path in existing)
    try:
        return _from_merged(merged, context, where)
    except _Unsupported as unsupported:
        return _official(files, context, where, unsupported)


def _kubeconfig_files(kubeconfig: str | None) -> tuple[str, list[Path], list[Path]]:
    """The kubeconfig files as given (``kubeconfig``, else KUBECONFIG, else ~/.kube/config),
    each as a path, and those of them that exist."""
    files = kubeconfig or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    paths = [Path(part) for part in files.split(os.pathsep) if part]
    return files, paths, [path for path in paths if path.is_file()]


def _in_cluster_applies(kubeconfig: str | None, context: str | None) -> bool:
    """No kubeconfig file: the in-cluster config is used when we run in a pod."""
    return not kubeconfig and not context and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def kubeconfig_cluster(
    kubeconfig: str | None = None, context: str | None = None
) -> tuple[str | None, str] | None:
    """The context and server ``load_config`` would use, read from the kubeconfig alone: no
    credential is loaded (no exec plugin runs) and nothing is contacted, so that a pytest
    header line can name them at no cost. None when there is no kubeconfig and no
    in-cluster config; ClusterError (one line) when the kubeconfig cannot say."""
    _files, _paths, existing = _kubeconfig_files(kubeconfig)
    if not existing:
        if _in_cluster_applies(kubeconfig, context):
            return None, _in_cluster_server()
        return None
    merged = _merge([(path, _read(path)) for path in existing])
    where = os.pathsep.join(str(path) for path in existing)
    name = context or merged.current
    if not name:
        raise ClusterError(f"kubeconfig {where}: no current-context")
    if name not in merged.contexts:
        raise ClusterError(f"kubeconfig {where}: no context named {name!r}")
    cluster = merged.clusters.get(str(merged.contexts[name].get("cluster")))
    if cluster is None:
        raise ClusterError(f"kubeconfig {where}: context {name!r} names no known cluster")
    return name, str(cluster[0].get("server") or "").rstrip("/")


def _read(path: Path) -> JSON:
    from kubefixtures.limits import read_text
    from kubefixtures.yamlinput import YAMLInputError, load_document

    try:
        data = load_document(read_text(path)) or {}
    except YAMLInputError as error:
        line = f" line {error.line}" if error.line is not None else ""
        raise ClusterError(f"kubeconfig {path}{line}: not valid YAML ({error.problem})") from None
    except OSError as error:
        raise ClusterError(f"kubeconfig {path}: {error.strerror or error}") from None
    except ValueError as error:  # not UTF-8, too large
        raise ClusterError(f"kubeconfig {path} {error}") from None
    if not isinstance(data, dict):
        raise ClusterError(f"kubeconfig {path}: not a kubeconfig (expected a mapping at the top)")
    return data


def _entries(data: JSON, path: Path, section: str, key: str) -> list[tuple[str, JSON]]:
    """The ``(name, body)`` of each entry of ``section`` (``users``: ``name`` and ``user``),
    checked for the shapes the loader relies on; ClusterError naming the field otherwise."""
    entries = data.get(section) or []
    if not isinstance(entries, list):
        raise ClusterError(f"kubeconfig {path}: {section} is not a list")
    named = []
    for index, entry in enumerate(entries):
        field = f"{section}[{index}]"
        if not isinstance(entry, dict):
            raise ClusterError(f"kubeconfig {path}: {field} is not a mapping")
        if "name" not in entry:
            continue  # as before: an entry nothing can refer to
        name = entry["name"]
        if not isinstance(name, str):
            raise ClusterError(f"kubeconfig {path}: {field}.name is not a string")
        body = entry.get(key) or {}
        if not isinstance(body, dict):
            raise ClusterError(f"kubeconfig {path}: {field}.{key} ({name!r}) is not a mapping")
        if key == "user":
            _check_user(body, f"kubeconfig {path}: {field}.user ({name!r})")
        for reference in ("cluster", "user") if key == "context" else ():
            if not isinstance(body.get(reference, ""), str):
                raise ClusterError(
                    f"kubeconfig {path}: {field}.context.{reference} ({name!r}) is not a string"
                )
        named.append((name, body))
    return named


def _check_user(user: JSON, where: str) -> None:
    """The parts of a user that are more than strings: an exec plugin's spec."""
    spec = user.get("exec")
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise ClusterError(f"{where}.exec is not a mapping")
    if not isinstance(spec.get("args") or [], list):
        raise ClusterError(f"{where}.exec.args is not a list")
    variables = spec.get("env") or []
    if not isinstance(variables, list):
        raise ClusterError(f"{where}.exec.env is not a list")
    for index, variable in enumerate(variables):
        if not (isinstance(variable, dict) and "name" in variable and "value" in variable):
            raise ClusterError(f"{where}.exec.env[{index}] is not a mapping of name and value")


@dataclass
class _Merged:
    """The named entries of every file, each with the file it came from (for relative paths)."""

    current: str | None = None
    clusters: dict[str, tuple[JSON, Path]] = field(default_factory=dict)
    users: dict[str, tuple[JSON, Path]] = field(default_factory=dict)
    contexts: dict[str, JSON] = field(default_factory=dict)


def _merge(documents: list[tuple[Path, JSON]]) -> _Merged:
    merged = _Merged()
    for path, data in documents:
        if merged.current is None and data.get("current-context"):
            merged.current = str(data["current-context"])
        for section, key, target in (
            ("clusters", "cluster", merged.clusters),
            ("users", "user", merged.users),
        ):
            for name, body in _entries(data, path, section, key):
                target.setdefault(name, (body, path))
        for name, body in _entries(data, path, "contexts", "context"):
            merged.contexts.setdefault(name, body)
    return merged


def _from_merged(merged: _Merged, context: str | None, where: str) -> ClusterConfig:
    name = context or merged.current
    if not name:
        raise ClusterError(
            f"kubeconfig {where}: no current-context (set {setting_name('context')})"
        )
    if name not in merged.contexts:
        raise ClusterError(f"kubeconfig {where}: no context named {name!r}")
    entry = merged.contexts[name]
    cluster_name, user_name = entry.get("cluster"), entry.get("user")
    if cluster_name not in merged.clusters:
        raise ClusterError(f"kubeconfig {where}: context {name!r} names no known cluster")
    cluster, cluster_file = merged.clusters[cluster_name]
    user, user_file = merged.users.get(str(user_name), ({}, cluster_file))
    for key in _UNSUPPORTED_USER_KEYS:
        if key in user:
            raise _Unsupported(str(user_name), user_file, key)
    source = f"kubeconfig {where}"
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise ClusterError(f"{source}: cluster {cluster_name!r} has no server")
    cluster_source = f"kubeconfig {cluster_file}: cluster {cluster_name!r}"
    insecure = _insecure(cluster, cluster_source)
    tls_server_name = _optional_string(cluster, "tls-server-name", cluster_source)
    proxy_url = _optional_string(cluster, "proxy-url", cluster_source)
    exec_credentials = (
        _ExecCredentials(user["exec"], user_file, source, server) if user.get("exec") else None
    )
    return ClusterConfig(
        server=server,
        context=name,
        source=source,
        ca_pem=_decoded(cluster.get("certificate-authority-data"), source, "certificate-authority"),
        ca_file=_path(cluster.get("certificate-authority"), cluster_file),
        client_cert=_client_cert_data(user, source),
        client_cert_files=_client_cert_files(user, user_file),
        insecure=insecure,
        tls_server_name=tls_server_name,
        authorization=exec_credentials.authorization
        if exec_credentials is not None
        else _authorization(user, user_file, source),
        authorization_may_block=exec_credentials is not None,
        client_certificate=exec_credentials.client_certificate
        if exec_credentials is not None
        else None,
        proxy=parse_proxy(proxy_url, f"{cluster_source}: proxy-url") if proxy_url else None,
        impersonation=_impersonation(user, f"kubeconfig {user_file}: user {user_name!r}"),
        namespace=_optional_string(entry, "namespace", f"{source}: context {name!r}"),
    )


def _insecure(cluster: JSON, source: str) -> bool:
    value = cluster.get("insecure-skip-tls-verify", False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ClusterError(
            f"{source}: insecure-skip-tls-verify must be true or false, not {value!r}"
        )
    if value and (
        cluster.get("certificate-authority-data") or cluster.get("certificate-authority")
    ):
        # kubectl refuses this too: which of the two was meant is anyone's guess.
        raise ClusterError(
            f"{source}: specifying a root certificates file with the insecure flag is not "
            "allowed (certificate-authority and insecure-skip-tls-verify: true)"
        )
    return value


def _optional_string(entry: JSON, key: str, source: str) -> str | None:
    value = entry.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ClusterError(f"{source}: {key} must be a string")
    return value


def _string_list(value: Any, source: str, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ClusterError(f"{source}: {key} must be a list of strings")
    return value


def _impersonation(user: JSON, source: str) -> tuple[tuple[str, str], ...]:
    """client-go's Impersonate-* headers for ``as``, ``as-uid``, ``as-groups`` and
    ``as-user-extra`` (extra keys percent-encoded as client-go encodes them)."""
    name = _optional_string(user, "as", source)
    uid = _optional_string(user, "as-uid", source)
    groups = _string_list(user.get("as-groups"), source, "as-groups")
    extra = user.get("as-user-extra") or {}
    if not isinstance(extra, dict):
        raise ClusterError(f"{source}: as-user-extra must be a mapping of lists of strings")
    if not name:
        if uid or groups or extra:
            raise ClusterError(
                f"{source}: as-groups, as-uid and as-user-extra need as (the user to impersonate)"
            )
        return ()
    headers = [("Impersonate-User", name)]
    if uid:
        headers.append(("Impersonate-Uid", uid))
    headers += [("Impersonate-Group", group) for group in groups]
    for key, values in extra.items():
        header = "Impersonate-Extra-" + quote(str(key), safe="!#$&'*+-.^_`|~")
        headers += [
            (header, value) for value in _string_list(values, source, f"as-user-extra.{key}")
        ]
    return tuple(headers)


def _decoded(data: Any, source: str, what: str) -> str | None:
    if not data:
        return None
    try:
        return base64.b64decode(str(data), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise ClusterError(f"{source}: {what}-data is not base64-encoded PEM") from None


def _path(value: Any, relative_to: Path) -> str | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else relative_to.parent / path)


def _client_cert_data(user: JSON, source: str) -> tuple[str, str] | None:
    cert = _decoded(user.get("client-certificate-data"), source, "client-certificate")
    key = _decoded(user.get("client-key-data"), source, "client-key")
    return (cert, key) if cert and key else None


def _client_cert_files(user: JSON, user_file: Path) -> tuple[str, str | None] | None:
    cert = _path(user.get("client-certificate"), user_file)
    return (cert, _path(user.get("client-key"), user_file)) if cert else None


def _authorization(user: JSON, user_file: Path, source: str) -> Callable[[], str | None]:
    if user.get("token"):
        header = f"Bearer {user['token']}"
        return lambda: header
    if user.get("tokenFile"):
        return _TokenFile(Path(_path(user["tokenFile"], user_file) or ""), source).authorization
    if user.get("username") or user.get("password"):
        pair = f"{user.get('username') or ''}:{user.get('password') or ''}"
        header = f"Basic {base64.b64encode(pair.encode()).decode()}"
        return lambda: header
    return lambda: None


class _TokenFile:
    """A bearer token read from a file, re-read now and then: bound tokens rotate."""

    def __init__(self, path: Path, source: str) -> None:
        self._path = path
        self._source = source
        self._token = ""
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def authorization(self) -> str | None:
        with self._lock:
            if time.monotonic() - self._read_at > _TOKEN_FILE_TTL:
                try:
                    self._token = self._path.read_text().strip()
                except OSError as error:
                    raise ClusterError(
                        f"{self._source}: cannot read the token file {self._path}: "
                        f"{error.strerror or error}"
                    ) from None
                except UnicodeDecodeError:
                    raise ClusterError(
                        f"{self._source}: the token file {self._path} is not UTF-8 text"
                    ) from None
                self._read_at = time.monotonic()
            return f"Bearer {self._token}" if self._token else None


class _ExecCredentials:
    """A client-go credential plugin (``users[].user.exec``), run when what it gave last
    (a token, a client certificate, or both) is missing or about to expire."""

    def __init__(self, spec: JSON, user_file: Path, source: str, server: str) -> None:
        self._spec = spec
        self._source = source
        self._server = server
        command = str(spec.get("command") or "")
        # client-go: a command with a slash is relative to the kubeconfig; a bare name is on PATH.
        if "/" in command and not Path(command).is_absolute():
            command = str(user_file.parent / command)
        self._command = [command, *map(str, spec.get("args") or [])]
        self._credential: _Credential | None = None
        self._given: set[str] = set()  # everything it handed out, masked in its messages
        self._lock = threading.Lock()

    def _current(self) -> _Credential:
        with self._lock:
            if self._credential is None or time.time() > self._credential.expires - _EXPIRY_MARGIN:
                self._credential = self._run()
                self._given.update(
                    secret for secret in (self._credential.token, *self._credential.pair) if secret
                )
            return self._credential

    def authorization(self) -> str | None:
        token = self._current().token
        return f"Bearer {token}" if token else None

    def client_certificate(self) -> tuple[str, str] | None:
        pair = self._current().pair
        return (pair[0], pair[1]) if pair[0] and pair[1] else None

    def _run(self) -> _Credential:
        api_version = str(self._spec.get("apiVersion") or "client.authentication.k8s.io/v1")
        info: JSON = {
            "apiVersion": api_version,
            "kind": "ExecCredential",
            "spec": {"interactive": False},
        }
        if self._spec.get("provideClusterInfo"):
            info["spec"]["cluster"] = {"server": self._server}
        env = dict(os.environ)
        for variable in self._spec.get("env") or []:
            env[str(variable["name"])] = str(variable["value"])
        env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
        what = f"{self._source}: credential plugin {self._command[0]}"
        try:
            done = subprocess.run(
                self._command,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_EXEC_TIMEOUT,
                check=False,
            )
        except FileNotFoundError:
            hint = self._spec.get("installHint")
            raise ClusterError(
                f"{what} is not installed" + (f" ({' '.join(str(hint).split())})" if hint else "")
            ) from None
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{what} did not finish within {_EXEC_TIMEOUT:g}s") from None
        except OSError as error:
            raise ClusterError(f"{what} failed: {error.strerror or error}") from None
        if done.returncode != 0:
            # What a failing plugin prints may hold a token: masked, and only its tail.
            stderr = done.stderr.decode("utf-8", errors="replace")
            said = _redact.plugin_output(stderr, self._given)
            raise ClusterError(f"{what} exited with {done.returncode}: {said}")
        try:
            # Strict: a token with replacement characters would fail later, far from here.
            stdout = done.stdout.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ClusterError(
                f"{what} printed output that is not UTF-8 (byte {error.start})"
            ) from None
        try:
            status = json.loads(stdout).get("status") or {}
        except (ValueError, AttributeError):
            raise ClusterError(f"{what} printed no ExecCredential JSON") from None
        if not isinstance(status, dict):
            raise ClusterError(f"{what} printed an ExecCredential whose status is not a mapping")
        token = status.get("token") or None
        cert = status.get("clientCertificateData") or None
        key = status.get("clientKeyData") or None
        if bool(cert) != bool(key):
            raise ClusterError(
                f"{what} gave clientCertificateData without clientKeyData, or the reverse"
            )
        if not token and not cert:
            raise ClusterError(f"{what} gave neither a token nor a client certificate and key")
        if not all(item is None or isinstance(item, str) for item in (token, cert, key)):
            raise ClusterError(f"{what} gave a token or certificate that is not a string")
        return _Credential(token, (cert, key), _timestamp(status.get("expirationTimestamp")))


@dataclass(frozen=True)
class _Credential:
    token: str | None = field(repr=False)
    pair: tuple[str | None, str | None] = field(repr=False)  # client (cert, key) PEM
    expires: float


def _timestamp(value: Any) -> float:
    if not value:
        return float("inf")
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    return float("inf")


def _in_cluster_server() -> str:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}:{port}"


def _in_cluster() -> ClusterConfig:
    ca = _SERVICE_ACCOUNT / "ca.crt"
    source = "in-cluster config"
    if not ca.is_file():
        raise ClusterError(f"{source}: {ca} does not exist (is a service account mounted?)")
    return ClusterConfig(
        server=_in_cluster_server(),
        context=None,
        source=source,
        ca_file=str(ca),
        authorization=_TokenFile(_SERVICE_ACCOUNT / "token", source).authorization,
        namespace=_pod_namespace(),
    )


def _pod_namespace() -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return (_SERVICE_ACCOUNT / "namespace").read_text().strip() or None
    return None


# --- the official client, for what this module does not read --------------------------------


def _official(
    files: str, context: str | None, where: str, unsupported: _Unsupported
) -> ClusterConfig:
    try:
        from kubernetes import client, config  # lazy: see the module docstring
    except ImportError:
        raise ClusterError(
            f"{unsupported}, which needs the official kubernetes client: "
            "pip install 'kubefixtures[auth-provider]'"
        ) from None

    configuration = client.Configuration()
    try:
        _contexts, current = config.list_kube_config_contexts(config_file=files)  # type: ignore[no-untyped-call]
        name = context or (current or {}).get("name")
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=files,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except config.ConfigException as error:
        raise ClusterError(f"kubeconfig {where}: {' '.join(str(error).split())}") from None
    return as_cluster_config(configuration, context=name, source=f"kubeconfig {where}")


def as_cluster_config(
    configuration: Any, *, context: str | None = None, source: str = "client configuration"
) -> ClusterConfig:
    """A ClusterConfig as is, or one read from a ``kubernetes.client.Configuration``."""
    if isinstance(configuration, ClusterConfig):
        return configuration
    official = configuration

    def authorization() -> str | None:
        # It runs the refresh hook (auth-provider, exec) itself. The loader files the token
        # under "BearerToken"; configurations built by hand often use "authorization".
        token = official.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            return str(token)
        if official.username or official.password:
            return str(official.get_basic_auth_token())
        return None

    assert_hostname = getattr(official, "assert_hostname", None)
    return ClusterConfig(
        server=str(official.host).rstrip("/"),
        context=context,
        source=source,
        ca_file=official.ssl_ca_cert or None,
        client_cert_files=(official.cert_file, official.key_file or None)
        if official.cert_file
        else None,
        insecure=not official.verify_ssl,
        check_hostname=assert_hostname is not False,
        tls_server_name=getattr(official, "tls_server_name", None) or None,
        proxy=parse_proxy(str(official.proxy), f"{source}: proxy")
        if getattr(official, "proxy", None)
        else None,
        authorization=authorization,
        authorization_may_block=official.refresh_api_key_hook is not None,
    )


def describe(config: ClusterConfig) -> str:
    """``context NAME (https://server)``, for messages."""
    where = f"context {config.context}" if config.context else config.source
    return f"{where} ({config.server})"
