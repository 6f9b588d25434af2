"""kopf's credentials from kubefixtures' own kubeconfig loader (kubefixtures.kube.config).

Without a login handler of its own, kopf piggybacks on the official ``kubernetes`` client
(150 MB installed) when that is installed, and otherwise reads kubeconfigs with a loader of
its own: the operator would then reach the cluster by another path than its reapers do. One
loader means one answer to "which cluster, as whom", for kopf's watches and for the
reapers' deletions alike, and no official client in the operator image.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from kubefixtures.errors import ClusterError
from kubefixtures.kube.config import ClusterConfig, load_config

__all__ = ["UnsupportedForOperator", "connection_info", "login"]


class UnsupportedForOperator(ClusterError):
    """The loaded configuration holds something kopf's connections cannot carry."""


def connection_info(config: ClusterConfig) -> kopf.ConnectionInfo:
    """What kopf needs of ``config``: server, CA, client certificate, Authorization."""
    if config.impersonation:
        # kopf sends no Impersonate-* headers: it would act as the user itself, with
        # rights the kubeconfig did not mean the operator to use.
        raise UnsupportedForOperator(
            f"{config.source}: impersonation (as, as-groups...) is not supported"
        )
    if config.tls_server_name:
        # kopf dials the server's host and checks its certificate against it.
        raise UnsupportedForOperator(f"{config.source}: tls-server-name is not supported")
    if not config.check_hostname and not config.insecure:
        raise UnsupportedForOperator(f"{config.source}: a certificate check without its host name")
    scheme, token = _authorization(config.authorization())
    certificate, key = _client_certificate(config)
    return kopf.ConnectionInfo(
        server=config.server,
        # kopf takes one of the two; the kubeconfig's data wins over its file, as in kubectl.
        ca_path=None if config.ca_pem else config.ca_file,
        ca_data=config.ca_pem,
        insecure=config.insecure,
        scheme=scheme,
        token=token,
        certificate_path=certificate if config.client_cert_files else None,
        certificate_data=certificate if not config.client_cert_files else None,
        private_key_path=key if config.client_cert_files else None,
        private_key_data=key if not config.client_cert_files else None,
        default_namespace=config.namespace,
        proxy_url=_proxy_url(config),
    )


def _authorization(value: str | None) -> tuple[str | None, str | None]:
    """``("Bearer", "abc")`` from ``"Bearer abc"``; kopf puts them back together."""
    if not value:
        return None, None
    scheme, _, token = value.partition(" ")
    return scheme, token or None


def _client_certificate(config: ClusterConfig) -> tuple[str | None, str | None]:
    """(cert, key): files from the kubeconfig, else PEM data (its own or a plugin's)."""
    if config.client_certificate is not None:
        pair = config.client_certificate()
        if pair is not None:
            return pair
    if config.client_cert_files is not None:
        cert, key = config.client_cert_files
        return cert, key or cert  # one file may hold both
    if config.client_cert is not None:
        return config.client_cert
    return None, None


def _proxy_url(config: ClusterConfig) -> str | None:
    proxy = config.proxy_for_server()
    if proxy is None:
        return None
    if proxy.authorization is None:
        return f"http://{proxy.address}"
    from base64 import b64decode
    from urllib.parse import quote

    user, _, password = (
        b64decode(proxy.authorization.removeprefix("Basic ")).decode().partition(":")
    )
    return f"http://{quote(user, safe='')}:{quote(password, safe='')}@{proxy.address}"


@kopf.on.login()
async def login(**_: Any) -> kopf.ConnectionInfo:
    """The kubeconfig (KUBECONFIG, ~/.kube/config) or the pod's ServiceAccount, loaded as
    the reapers load it; run again by kopf whenever the API answers 401 (a rotated token, an
    expired credential plugin's token)."""
    try:
        config = await asyncio.to_thread(load_config)
        # A credential plugin, if any, runs here: off the event loop too.
        return await asyncio.to_thread(connection_info, config)
    except ClusterError as error:
        # A kubeconfig the operator cannot use: stop with its one line, not retry forever.
        raise kopf.PermanentError(str(error)) from None
