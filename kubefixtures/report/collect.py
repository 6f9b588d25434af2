"""What the session report needs, gathered while a session runs: each environment a fixture
got (its phases, on the session's timeline), the namespaces kept, the tests' outcome.

An xdist worker's terminal output is never shown, so a worker hands what it gathered to
the controller (``worker_output`` into pytest-xdist's ``workeroutput``); the controller
``merge``-s it, moving the worker's timeline onto its own by the wall clock at which each
session started, and prints and writes the one report.

Cheap to import (the plugin's session state holds a ``Collector`` in every run): pydantic
comes in with the first record, when an environment has come up and loaded it already.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kubefixtures.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from typing import Protocol

    from kubefixtures.details import Environment
    from kubefixtures.provisioning.base import Provisioning
    from kubefixtures.report.model import (
        ClusterInfo,
        EnvironmentRecord,
        KeptNamespace,
        SessionReport,
    )

    class _Address(Protocol):  # ServiceDetails and the report's ServiceAddress
        @property
        def host(self) -> str: ...

        @property
        def port(self) -> int: ...

        @property
        def url(self) -> str | None: ...

        @property
        def route(self) -> str: ...


__all__ = ["Collector", "describe_services", "environment_line"]

_OUTCOMES = ("passed", "failed", "errors", "skipped", "xfailed", "xpassed")


def describe_services(services: Mapping[str, _Address]) -> str:
    """``web http://127.0.0.1:41231 (direct), redis 127.0.0.1:40001 (forward)``: where the
    tests reach each, and by which route."""
    return ", ".join(
        f"{name} {service.url or f'{service.host}:{service.port}'} ({service.route})"
        for name, service in services.items()
    )


class Collector:
    """One session's environments, kept namespaces and test outcomes. Thread-safe:
    environments brought up in advance are recorded from the fixtures, kept namespaces
    from teardowns."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.origin = clock.monotonic()  # the session's start, on the monotonic clock
        self.started_at = clock.wall()  # and on the wall clock (to merge xdist workers)
        self.environments: list[EnvironmentRecord] = []
        self.kept: list[KeptNamespace] = []
        self.counts = dict.fromkeys(_OUTCOMES, 0)
        self.workers: list[str] = []
        self._lock = threading.Lock()

    # --- while the session runs ---------------------------------------------------------------

    def environment(
        self,
        provisioning: Provisioning,
        scope: str,
        environment: Environment | None,
        *,
        error: str | None = None,
        worker: str | None = None,
    ) -> None:
        """A fixture got ``environment`` from ``provisioning`` (None: its setup failed)."""
        from kubefixtures.report.model import EnvironmentRecord, PhaseSpan, ServiceAddress

        if error:  # the fixture's one-line message (secrets masked where it was made)
            error = error.strip().splitlines()[0][:500] if error.strip() else None
        phases = provisioning.phases
        spans = phases.spans()
        first = min((span.start for span in spans.values()), default=self.clock.monotonic())
        started = phases.started if phases.started is not None else first
        details = environment.details if environment is not None else None
        namespace = details.namespace if details else getattr(provisioning, "namespace", None)
        record = EnvironmentRecord(
            name=provisioning.spec.name,
            namespace=namespace if isinstance(namespace, str) else None,
            scope=scope,
            mode=phases.mode,  # type: ignore[arg-type]  # one of Mode, set by provisionings
            status="ready" if environment is not None else "failed",
            error=error,
            worker=worker,
            manager=getattr(provisioning, "manager", None) if phases.mode == "shared" else None,
            context=details.context if details else None,
            started=round(started - self.origin, 3),
            seconds=round(phases.total, 3) if spans else (details.ready_seconds if details else 0),
            phases=phases.seconds(),
            spans=[
                PhaseSpan(
                    phase=name,
                    start=round(span.start - self.origin, 3),
                    end=round(span.end - self.origin, 3),
                )
                for name, span in spans.items()
            ],
            objects=len(details.objects) if details else 0,
            services={
                name: ServiceAddress(
                    host=service.host, port=service.port, url=service.url, route=service.route
                )
                for name, service in (details.services if details else {}).items()
            },
        )
        with self._lock:
            self.environments.append(record)

    def kept_namespace(
        self, namespace: str, environment: str, why: str, lines: Iterable[str], worker: str | None
    ) -> None:
        """A namespace kept on failure; ``lines`` are kept_namespace_lines' (commands indented)."""
        from kubefixtures.report.model import KeptNamespace

        commands = [line.strip() for line in lines if line.startswith("  ")]
        kept = KeptNamespace(
            namespace=namespace, environment=environment, why=why, commands=commands, worker=worker
        )
        with self._lock:
            self.kept.append(kept)

    def count(self, when: str, outcome: str, xfail: bool) -> None:
        """One test report (pytest's ``when`` and ``outcome``), counted as pytest's summary
        counts it: failures outside the call are errors."""
        key: str | None = None
        if when == "call":
            key = ("xfailed" if outcome == "skipped" else "xpassed") if xfail else outcome
        elif outcome == "failed":
            key = "errors"
        elif outcome == "skipped" and when == "setup":
            key = "xfailed" if xfail else "skipped"
        if key in self.counts:
            with self._lock:
                self.counts[key] += 1

    # --- pytest-xdist -----------------------------------------------------------------------

    def worker_output(self) -> dict[str, Any]:
        """What a worker hands the controller (plain data: execnet carries it)."""
        with self._lock:
            environments, kept = list(self.environments), list(self.kept)
        return {
            "started_at": self.started_at.isoformat(),
            "environments": [record.model_dump(mode="json") for record in environments],
            "kept": [item.model_dump(mode="json") for item in kept],
        }

    def merge(self, worker: str, output: Mapping[str, Any]) -> None:
        """On the controller: what worker ``worker`` gathered, on this session's timeline."""
        with self._lock:
            if worker not in self.workers:
                self.workers.append(worker)
        if not output.get("environments") and not output.get("kept"):
            return
        from kubefixtures.report.model import EnvironmentRecord, KeptNamespace

        shift = (datetime.fromisoformat(output["started_at"]) - self.started_at).total_seconds()
        records = []
        for raw in output.get("environments") or []:
            record = EnvironmentRecord.model_validate(raw)
            spans = [
                span.model_copy(
                    update={
                        "start": round(span.start + shift, 3),
                        "end": round(span.end + shift, 3),
                    }
                )
                for span in record.spans
            ]
            moved = {"started": round(record.started + shift, 3), "spans": spans}
            records.append(record.model_copy(update=moved))
        kept = [KeptNamespace.model_validate(raw) for raw in output.get("kept") or []]
        with self._lock:
            self.environments.extend(records)
            self.kept.extend(kept)

    # --- at the end ---------------------------------------------------------------------------

    def summary_lines(self) -> list[str]:
        """One line per environment, in the order they started; xdist workers that used
        another worker's environment are named on its line."""
        with self._lock:
            records = sorted(self.environments, key=lambda record: record.started)
        own = [record for record in records if record.mode != "shared"]
        lines = []
        for record in own:
            users = [
                shared.worker or "?"
                for shared in records
                if shared.mode == "shared"
                and shared.name == record.name
                and shared.namespace == record.namespace
            ]
            lines.append(environment_line(record, users))
        lines += [
            environment_line(record)
            for record in records
            if record.mode == "shared"
            and not any(
                mine.name == record.name and mine.namespace == record.namespace for mine in own
            )
        ]
        return lines

    def session_report(
        self, session_id: str, exit_status: int, cluster: ClusterInfo | None
    ) -> SessionReport:
        from kubefixtures import __version__
        from kubefixtures.report.model import Outcome, SessionReport

        with self._lock:
            environments = sorted(self.environments, key=lambda record: record.started)
            kept, counts, workers = list(self.kept), dict(self.counts), sorted(self.workers)
        return SessionReport(
            kubefixtures=__version__,
            session_id=session_id,
            started_at=self.started_at,
            seconds=round(self.clock.monotonic() - self.origin, 3),
            cluster=cluster,
            workers=workers,
            outcome=Outcome(exit_status=exit_status, **counts),
            environments=environments,
            kept_namespaces=kept,
        )


def environment_line(record: EnvironmentRecord, shared_with: Iterable[str] = ()) -> str:
    """``shop: ready in 9.1 s (fresh, xdist worker gw0): namespace kf-shop-x7k2p9,
    6 objects, web http://127.0.0.1:41231 | render 0.12 connect 0.00 ... s``."""
    how = record.mode + (f", xdist worker {record.worker}" if record.worker else "")
    phases = " ".join(f"{name} {seconds:.2f}" for name, seconds in record.phases.items())
    timing = f" | {phases} s" if phases else ""
    if record.mode == "shared":
        return (
            f"{record.name}: namespace {record.namespace} of xdist worker {record.manager}, "
            f"waited {record.seconds:.1f} s ({how})"
        )
    if record.status == "failed":
        where = f" in namespace {record.namespace}" if record.namespace else ""
        return f"{record.name}: failed after {record.seconds:.1f} s{where} ({how}){timing}"
    services = describe_services(record.services)
    users = sorted(set(shared_with))
    return (
        f"{record.name}: ready in {record.seconds:.1f} s ({how}): namespace {record.namespace}, "
        f"{record.objects} objects"
        + (f", {services}" if services else "")
        + timing
        + (f" | shared with {', '.join(users)}" if users else "")
    )
