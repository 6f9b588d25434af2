"""Writing the session report: ``FILE.json`` (the model, see schema.json) or ``FILE.html``
(the waterfall page). The path was checked when pytest started (settings.parse_report_path);
the file is replaced atomically, so a reader never sees half a report.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from kubefixtures.errors import KubefixturesError
from kubefixtures.report.model import ClusterInfo, SessionReport

if TYPE_CHECKING:
    from kubefixtures.session import SessionState

__all__ = ["write_report", "write_session_report"]


def write_session_report(state: SessionState, exit_status: int) -> str:
    """Write the session's report where the settings say; the line saying where (or why
    not) for the terminal summary."""
    from kubefixtures.report.header import cluster_info

    assert state.settings.report is not None
    try:
        found = cluster_info(state.settings.kubeconfig, state.settings.context)
    except KubefixturesError:
        found = None  # the environments' errors said why already
    cluster = ClusterInfo(context=found[0], server=found[1]) if found else None
    report = state.report.session_report(state.session_id, exit_status, cluster)
    try:
        written = write_report(state.settings.report, report)
    except KubefixturesError as error:
        return f"kubefixtures: {error}"
    return f"report: {written}"


def write_report(path: str | os.PathLike[str], report: SessionReport) -> Path:
    """Write ``report`` to ``path`` as its suffix says; KubefixturesError naming the file."""
    target = Path(path)
    if target.suffix.lower() == ".html":
        from kubefixtures.report.html import render_html

        text = render_html(report)
    else:
        text = report.model_dump_json(indent=2) + "\n"
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.chmod(temporary, 0o644)  # nothing secret in it: readable like any CI artifact
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise KubefixturesError(
            f"{target}: cannot write the kubefixtures report: {error.strerror or error}"
        ) from None
    return target
