"""The cluster's PKI, made on the machine with openssl: two CAs, one key pair per identity.

etcd has a CA of its own, as kubeadm gives it: the cluster CA also signs whatever
certificate signing request the controller-manager approves, and none of those may open
etcd. EC P-256 keys keep generation fast; certificates live ten years because a local
cluster is thrown away long before that. Keys never pass through a file of openssl's
making: openssl prints them and write_private_file creates each one 0600.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubefixtures.cluster.base import ClusterError
from kubefixtures.cluster.local import layout
from kubefixtures.private_files import write_private_file

CA_NAME = "ca"
ETCD_CA_NAME = "etcd-ca"
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
    ca: str = CA_NAME


ETCD_ALT_NAMES = ("DNS:localhost", "IP:127.0.0.1")


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
        # etcd's own: it serves clients and its (single) peer listener with these, and
        # trusts only certificates of its own CA, which signs nothing else.
        Identity(
            "etcd-server",
            "kubefixtures-etcd",
            usages=(SERVER, CLIENT),
            alt_names=ETCD_ALT_NAMES,
            ca=ETCD_CA_NAME,
        ),
        Identity(
            "etcd-peer",
            "kubefixtures-etcd-peer",
            usages=(SERVER, CLIENT),
            alt_names=ETCD_ALT_NAMES,
            ca=ETCD_CA_NAME,
        ),
        Identity("apiserver-etcd-client", "kube-apiserver-etcd-client", ca=ETCD_CA_NAME),
    ]


def _openssl(*args: str) -> str:
    """openssl's standard output."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ClusterError("openssl is not installed; `apt-get install openssl` (see README)")
    result = subprocess.run([openssl, *args], capture_output=True, text=True)
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ClusterError(f"openssl {args[0]} failed: {message[0]}")
    return result.stdout


def make_key(path: Path) -> Path:
    """A new EC P-256 private key, created 0600."""
    pem = _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1")
    return write_private_file(path, pem)


def _subject(identity: Identity) -> str:
    organization = f"/O={identity.organization}" if identity.organization else ""
    return f"{organization}/CN={identity.common_name}"


def make_ca(pki: Path, name: str = CA_NAME) -> None:
    key = make_key(pki / f"{name}.key")
    _openssl(
        "req", "-x509", "-new", "-key", str(key), "-out", str(pki / f"{name}.crt"),
        "-days", VALID_DAYS, "-subj", f"/CN=kubefixtures-local-{name}",
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
    key = make_key(pki / f"{identity.name}.key")
    _openssl(
        "req", "-x509", "-new", "-key", str(key), "-out", str(pki / f"{identity.name}.crt"),
        "-days", VALID_DAYS, "-subj", _subject(identity),
        "-CA", str(pki / f"{identity.ca}.crt"), "-CAkey", str(pki / f"{identity.ca}.key"),
        *addext,
    )  # fmt: skip


def make_service_account_keys(pki: Path) -> None:
    key = make_key(pki / "service-account.key")
    _openssl("pkey", "-in", str(key), "-pubout", "-out", str(pki / "service-account.pub"))


def ensure_pki(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    for ca in (CA_NAME, ETCD_CA_NAME):
        if not (pki / f"{ca}.crt").is_file():
            make_ca(pki, ca)
    for identity in identities():
        if not (pki / f"{identity.name}.crt").is_file():
            make_certificate(pki, identity)
    if not (pki / "service-account.pub").is_file():
        make_service_account_keys(pki)
