"""The ``pytest_report_header`` line: ``kubefixtures 0.1.0: cluster CONTEXT (SERVER)``.

Read from the kubeconfig alone (kubefixtures.kube.config.kubeconfig_cluster): no credential
plugin runs and nothing is contacted, so the line costs a file read. The server is shown
without user info, path or query (a URL may carry credentials).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from kubefixtures.errors import KubefixturesError

__all__ = ["cluster_info", "header_line", "public_server"]


def public_server(server: str) -> str:
    """``https://host:port`` of a server URL: no user info, path, query or fragment."""
    try:
        parts = urlsplit(server)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "(unreadable server URL)"
    if not parts.scheme or not host:
        return "(unreadable server URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def cluster_info(kubeconfig: str | None, context: str | None) -> tuple[str | None, str] | None:
    """The context and (public) server the session uses, per the kubeconfig; None when
    there is none. Raises KubefixturesError when the kubeconfig cannot say."""
    # The package first: the background import thread may be importing it right now, and
    # only a plain import of the package waits for that to finish. Importing the submodule
    # at once would start it beside the package's own import of it, and one of the two
    # threads would get it half-initialised (ImportError: partially initialized module).
    import kubefixtures.kube  # noqa: F401
    from kubefixtures.kube.config import kubeconfig_cluster

    found = kubeconfig_cluster(kubeconfig, context)
    if found is None:
        return None
    name, server = found
    return name, public_server(server)


def header_line(kubeconfig: str | None, context: str | None) -> str:
    from kubefixtures import __version__

    start = f"kubefixtures {__version__}"
    try:
        found = cluster_info(kubeconfig, context)
    except KubefixturesError as error:
        return f"{start}: {error}"
    if found is None:
        where = kubeconfig or "KUBECONFIG or ~/.kube/config"
        return f"{start}: no kubeconfig ({where}: no such file) and not in a pod"
    name, server = found
    return f"{start}: cluster {name or 'in-cluster'} ({server})"
