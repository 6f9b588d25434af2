"""The session report's format (``--kubefixtures-report=FILE.json``): pydantic models, from
which the published JSON Schema (``schema.json`` beside this module) is generated.

Versioned like the details file: fields may be added (optional ones), never renamed or
removed within a version. Nothing secret goes in: no generated secret, no credential, and
the server's URL without user info or query.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "REPORT_VERSION",
    "SCHEMA_PATH",
    "ClusterInfo",
    "EnvironmentRecord",
    "KeptNamespace",
    "Outcome",
    "PhaseSpan",
    "ServiceAddress",
    "SessionReport",
    "schema_text",
]

REPORT_VERSION: Literal[1] = 1
SCHEMA_PATH = Path(__file__).with_name("schema.json")

Mode = Literal["fresh", "reused", "pooled", "existing", "attached", "shared"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class PhaseSpan(_Model):
    """One phase on the session's timeline: seconds from the session's start."""

    phase: str
    start: float
    end: float


class ServiceAddress(_Model):
    """Where the tests reached a Service (on this machine) and by which route."""

    host: str
    port: int
    url: str | None = None
    route: str = Field(
        default="forward",
        description="direct (spliced to the pod's IP), forward (through the apiserver), service "
        "(at the Service's ClusterIP, routed by the cluster) or mixed",
    )


class EnvironmentRecord(_Model):
    """One environment a fixture got (or failed to get)."""

    name: str = Field(description="the environment's (fixture's) name")
    namespace: str | None = Field(description="its namespace (None: the setup failed early)")
    scope: str = Field(description="the fixture's scope: session, package, module, class...")
    mode: Mode = Field(
        description="fresh: a new namespace; reused: adopted from an earlier run "
        "(--kubefixtures-reuse); pooled: a spare copy claimed from the pool "
        "(--kubefixtures-pool); existing: the user's namespace (--kubefixtures-namespace); "
        "attached: from a details file; shared: brought up by another xdist worker (manager)"
    )
    status: Literal["ready", "failed"]
    error: str | None = Field(default=None, description="why the setup failed (one line)")
    worker: str | None = Field(default=None, description="the xdist worker (None: no xdist)")
    manager: str | None = Field(
        default=None, description="shared: the xdist worker that brought it up"
    )
    context: str | None = None
    started: float = Field(description="seconds from the session's start to the setup's start")
    seconds: float = Field(description="seconds the setup took")
    phases: dict[str, float] = Field(
        default_factory=dict, description="seconds per phase (phases may overlap)"
    )
    spans: list[PhaseSpan] = Field(default_factory=list)
    objects: int = 0
    services: dict[str, ServiceAddress] = Field(default_factory=dict)


class KeptNamespace(_Model):
    """A namespace left up for a person to look at (keep-on-failure)."""

    namespace: str
    environment: str
    why: str
    commands: list[str] = Field(description="kubectl and kubefixtures command lines to paste")
    worker: str | None = None


class Outcome(_Model):
    """How the tests went."""

    exit_status: int
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    xfailed: int = 0
    xpassed: int = 0


class ClusterInfo(_Model):
    """The cluster the session used, as the kubeconfig names it."""

    context: str | None = None
    server: str | None = None


class SessionReport(_Model):
    """One pytest session: its environments, their phases, the outcome, kept namespaces."""

    version: Literal[1] = REPORT_VERSION
    kubefixtures: str = Field(description="the kubefixtures version")
    session_id: str
    started_at: datetime = Field(description="when the session started (UTC)")
    seconds: float = Field(description="seconds from the session's start to the report")
    cluster: ClusterInfo | None = None
    workers: list[str] = Field(default_factory=list, description="xdist workers, if any")
    outcome: Outcome
    environments: list[EnvironmentRecord] = Field(default_factory=list)
    kept_namespaces: list[KeptNamespace] = Field(default_factory=list)


def schema_text() -> str:
    """The JSON Schema of ``SessionReport``, as ``schema.json`` holds it."""
    schema = SessionReport.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m kubefixtures.report.model: rewrite schema.json
    SCHEMA_PATH.write_text(schema_text())
