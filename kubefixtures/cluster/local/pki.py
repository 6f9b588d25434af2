"""The cluster's PKI, made on the machine with openssl (one CA, one key pair per identity).

EC P-256 keys keep generation fast; certificates live ten years because a local cluster
is thrown away long before that.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubefixtures.cluster.base import ClusterError
from kubefixtures.cluster.local import layout

CA_NAME = "ca"
VALID_DAYS = "3650"
SERVER = "serverAuth"
CLIENT = "clientAuth"


@dataclass(frozen=True)
class Identity:
    """One certificate: who it names, and what it may be used for."""

    name: str
    common_name: str
    organization: str | None = None
    usages: tuple[str, ...] = (CLIENT,)
    alt_names: tuple[str, ...] = ()


def identities() -> list[Identity]:
    node = layout.NODE_NAME
    return [
        Identity(
            "apiserver",
            "kube-apiserver",
            usages=(SERVER,),
            alt_names=(
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                f"DNS:kubernetes.default.svc.{layout.CLUSTER_DOMAIN}",
                "DNS:localhost",
                "IP:127.0.0.1",
                f"IP:{layout.NODE_IP}",
                f"IP:{layout.KUBERNETES_SERVICE_IP}",
            ),
        ),
        Identity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
        Identity("admin", "kubefixtures-admin", "system:masters"),
        Identity("controller-manager", "system:kube-controller-manager"),
        Identity("scheduler", "system:kube-scheduler"),
        Identity("kube-proxy", "system:kube-proxy"),
        Identity("kubelet", f"system:node:{node}", "system:nodes"),
        Identity(
            "kubelet-serving",
            node,
            usages=(SERVER,),
            alt_names=(f"DNS:{node}", "DNS:localhost", f"IP:{layout.NODE_IP}", "IP:127.0.0.1"),
        ),
        Identity("coredns", "kubefixtures:coredns"),
    ]


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ClusterError("openssl is not installed; `apt-get install openssl` (see README)")
    result = subprocess.run([openssl, *args], capture_output=True, text=True)
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ClusterError(f"openssl {args[0]} failed: {message[0]}")


def _subject(identity: Identity) -> str:
    organization = f"/O={identity.organization}" if identity.organization else ""
    return f"{organization}/CN={identity.common_name}"


def make_ca(pki: Path) -> None:
    _openssl(
        "req", "-x509", "-new", "-nodes",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", str(pki / f"{CA_NAME}.key"), "-out", str(pki / f"{CA_NAME}.crt"),
        "-days", VALID_DAYS, "-subj", "/CN=kubefixtures-local-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )  # fmt: skip


def make_certificate(pki: Path, identity: Identity) -> None:
    extensions = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=" + ",".join(identity.usages),
    ]
    if identity.alt_names:
        extensions.append("subjectAltName=" + ",".join(identity.alt_names))
    addext: list[str] = []
    for extension in extensions:
        addext += ["-addext", extension]
    _openssl(
        "req", "-x509", "-new", "-nodes",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", str(pki / f"{identity.name}.key"), "-out", str(pki / f"{identity.name}.crt"),
        "-days", VALID_DAYS, "-subj", _subject(identity),
        "-CA", str(pki / f"{CA_NAME}.crt"), "-CAkey", str(pki / f"{CA_NAME}.key"),
        *addext,
    )  # fmt: skip


def make_service_account_keys(pki: Path) -> None:
    key = pki / "service-account.key"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", str(key))  # fmt: skip
    _openssl("pkey", "-in", str(key), "-pubout", "-out", str(pki / "service-account.pub"))


def ensure_pki(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (pki / f"{CA_NAME}.crt").is_file():
        make_ca(pki)
    for identity in identities():
        if not (pki / f"{identity.name}.crt").is_file():
            make_certificate(pki, identity)
    if not (pki / "service-account.pub").is_file():
        make_service_account_keys(pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)
