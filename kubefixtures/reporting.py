"""What went on in an environment, for a failing test's report and for CI artifacts.

- ``add_to_report``: the one failing-test report hook (the plugin calls it): the sections
  of every environment the test used, then those of every source registered with
  ``add_report_source`` (the catalog's local services register their output there).
- ``report_sections``: the namespace's recent events and the last N log lines of every
  pod's containers (and of the previous container when one restarted), as
  ``(title, text)`` sections that pytest shows under a failing test.
- ``write_bundle`` (``kubefixtures diagnose NS --out DIR``): every object of the namespace
  as YAML, describe-like text of pods, workloads and Services, every container's log, and
  the events.

Secrets never appear: the values of the namespace's Secrets (kubefixtures' own
``kubefixtures-secrets`` among them, which holds the generated ones) and any value the
caller knows to be secret are replaced with ``********`` in everything shown or written
(in objects and events before they are serialised or normalised, so that neither YAML's
folding nor collapsed whitespace hides a value from the masker), and Secret objects are
written with their data masked. The bundle is private: directories 0700, files 0600.

Everything here is best effort: an error becomes a line in the output, never an exception
that would hide the test's own failure.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubefixtures.errors import KubefixturesError
from kubefixtures.private_files import write_private_file
from kubefixtures.secrets import MASK, Masker, namespace_secret_values

# kubefixtures.kube (its pods module: the one describer and event formatter) is imported in
# the functions that use it: the catalog imports this module, and kube/ costs ~45 ms.

if TYPE_CHECKING:
    import pytest

    from kubefixtures.kube import Cluster, Resource
    from kubefixtures.provisioning.base import Inspection
    from kubefixtures.session import AliveEnvironment

__all__ = [
    "Bundle",
    "add_to_report",
    "events_text",
    "report_sections",
    "write_bundle",
]

REPORT_EVENTS = 30  # events in a failing test's report (the most recent ones)
_TIMEOUT = (5.0, 15.0)  # connect, read: diagnostics must not hold a test run up for long
_WORKERS = 8
_SKIPPED = {  # not objects one inspects, or shown in events.txt instead
    "events",
    "bindings",
    "localsubjectaccessreviews",
    "pods/log",
}


# --- reading ------------------------------------------------------------------------------------


def _events(cluster: Cluster, namespace: str, masker: Masker) -> list[dict[str, Any]]:
    """The namespace's events, oldest first, masked as read: ``event_line`` collapses a
    message's whitespace, after which a secret holding spaces or newlines no longer matches."""
    from kubefixtures.kube.pods import oldest_first

    events = oldest_first(cluster.events(namespace, timeout=_TIMEOUT))
    return [masker.tree(event) for event in events]


def events_text(cluster: Cluster, namespace: str, masker: Masker, limit: int | None = None) -> str:
    """The namespace's events, oldest first (the last ``limit`` of them), masked."""
    from kubefixtures.kube.pods import event_line

    events = _events(cluster, namespace, masker)
    shown = events[-limit:] if limit else events
    lines = [event_line(event) for event in shown]
    if limit and len(events) > limit:
        lines.insert(0, f"({len(events) - limit} older events not shown)")
    return "\n".join(lines) if lines else "(no events)"


def _pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    pods = cluster.pods(namespace, timeout=_TIMEOUT)
    return sorted(pods, key=lambda pod: str(pod["metadata"]["name"]))


@dataclass(frozen=True)
class _LogRequest:
    pod: str
    container: str
    previous: bool


def _log_requests(pods: Sequence[Mapping[str, Any]]) -> list[_LogRequest]:
    """One per container that ran (init containers included), plus its previous instance
    when it restarted."""
    from kubefixtures.kube.pods import container_statuses

    requests = []
    for pod in pods:
        for container in container_statuses(pod):
            name = str(container.get("name"))
            requests.append(_LogRequest(pod["metadata"]["name"], name, previous=False))
            if int(container.get("restartCount") or 0) > 0:
                requests.append(_LogRequest(pod["metadata"]["name"], name, previous=True))
    return requests


def _log(cluster: Cluster, namespace: str, request: _LogRequest, tail: int | None) -> str:
    try:
        text = cluster.log(
            namespace,
            request.pod,
            request.container,
            tail=tail,
            previous=request.previous,
            timeout=_TIMEOUT,
        )
    except KubefixturesError as error:  # e.g. a container still waiting to start
        return f"(no log: {error})"
    return text if text.strip() else "(empty log)"


def _logs(
    cluster: Cluster, namespace: str, requests: Sequence[_LogRequest], tail: int | None
) -> list[str]:
    if not requests:
        return []
    with ThreadPoolExecutor(max_workers=min(len(requests), _WORKERS)) as pool:
        return list(pool.map(lambda request: _log(cluster, namespace, request, tail), requests))


# --- a failing test's report ---------------------------------------------------------------------


def report_sections(inspection: Inspection, log_lines: int) -> list[tuple[str, str]]:
    """``(title, text)`` sections: recent events, then the logs (``log_lines`` per
    container; none with 0)."""
    cluster, namespace = inspection.cluster, inspection.namespace
    prefix = f"kubefixtures {inspection.environment} ({namespace})"
    try:
        masker = Masker(inspection.masks | namespace_secret_values(cluster, namespace, _TIMEOUT))
    except KubefixturesError as error:
        return [(f"{prefix}: diagnostics", f"could not read the namespace: {error}")]
    sections = []
    from kubefixtures.control import applied_objects

    applied = applied_objects(namespace)
    if applied:
        sections.append((f"{prefix}: applied by tests", "\n".join(applied)))
    try:
        sections.append(
            (f"{prefix}: events", events_text(cluster, namespace, masker, REPORT_EVENTS))
        )
    except KubefixturesError as error:
        sections.append((f"{prefix}: events", f"could not list events: {error}"))
    if log_lines <= 0:
        return sections
    try:
        requests = _log_requests(_pods(cluster, namespace))
    except KubefixturesError as error:
        return [*sections, (f"{prefix}: logs", f"could not list pods: {error}")]
    for request, text in zip(requests, _logs(cluster, namespace, requests, log_lines), strict=True):
        which = " (previous container)" if request.previous else ""
        title = f"{prefix}: logs pod/{request.pod} {request.container}{which}"
        sections.append((title, masker(text.rstrip("\n"))))
    return sections


SectionSource = Callable[[Sequence[str]], list[tuple[str, str]]]
_sources: list[SectionSource] = []  # what else a failing test's report shows
_sources_lock = threading.Lock()


def add_report_source(source: SectionSource) -> None:
    """From now on, add ``source(fixture_names)``, ``(title, text)`` sections about the
    fixtures a failing test used, to its report (once, however often it is added)."""
    with _sources_lock:
        if source not in _sources:
            _sources.append(source)


def add_to_report(
    report: pytest.TestReport,
    fixture_names: Sequence[str],
    alive: Sequence[AliveEnvironment],
    log_lines: int,
) -> None:
    """Add the sections of every environment a failing test used (``alive``: none when
    diagnostics are off), then those of the registered sources, to its report."""
    for tracked in alive:
        if tracked.provisioning is None:
            continue
        try:
            inspection = tracked.provisioning.inspection()
        except KubefixturesError as error:
            title = f"kubefixtures {tracked.fixture_name}: diagnostics"
            report.sections.append((title, f"could not connect: {error}"))
            continue
        if inspection is not None:
            report.sections.extend(report_sections(inspection, log_lines))
    with _sources_lock:
        sources = list(_sources)
    for source in sources:
        report.sections.extend(source(fixture_names))


# --- the bundle ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """What ``write_bundle`` wrote."""

    directory: Path
    objects: int
    logs: int
    events: int
    errors: tuple[str, ...]


def _namespaced_resources(cluster: Cluster) -> list[tuple[Resource, str]]:
    """Every namespaced kind worth writing, with its file stem (``plural.group``)."""
    found = []
    for resource in cluster.listable_namespaced_resources(timeout=_TIMEOUT):
        if resource.plural in _SKIPPED or resource.group == "events.k8s.io":
            continue
        stem = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
        found.append((resource, stem))
    return found


def _mask_secret_object(item: dict[str, Any]) -> dict[str, Any]:
    for field in ("data", "stringData"):
        if item.get(field):
            item[field] = dict.fromkeys(item[field], MASK)
    return item


def _clean(item: dict[str, Any]) -> dict[str, Any]:
    metadata = item.get("metadata") or {}
    metadata.pop("managedFields", None)
    annotations = metadata.get("annotations") or {}
    # kubectl apply keeps the whole object, secrets included, in this annotation.
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    return item


def _make_private_directory(path: Path) -> None:
    """Create ``path`` and its missing parents 0700 (the umask can only take bits away),
    never chmod'ed after; an existing directory is the caller's and keeps its mode."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise


def write_bundle(
    cluster: Cluster,
    namespace: str,
    out: Path,
    *,
    masks: Iterable[str] = (),
    log_lines: int | None = None,
) -> Bundle:
    """Write the namespace's objects, describe-like text, logs and events under ``out``."""
    import yaml

    from kubefixtures.kube.pods import event_line

    if cluster.namespace(namespace, timeout=_TIMEOUT) is None:
        raise KubefixturesError(f"namespace {namespace} does not exist on {cluster.description}")
    masker = Masker({*masks, *namespace_secret_values(cluster, namespace, _TIMEOUT)})
    errors: list[str] = []
    _make_private_directory(out)

    def write(relative: str, text: str) -> None:
        path = out / relative
        _make_private_directory(path.parent)
        write_private_file(path, masker(text) + ("" if text.endswith("\n") else "\n"))

    # Objects, one file per kind.
    listed: dict[str, list[dict[str, Any]]] = {}

    def list_kind(item: tuple[Resource, str]) -> tuple[str, list[dict[str, Any]]]:
        resource, stem = item
        try:
            return stem, cluster.items(resource, namespace, timeout=_TIMEOUT)
        except KubefixturesError as error:
            errors.append(f"listing {stem}: {error}")
            return stem, []

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for stem, items in pool.map(list_kind, _namespaced_resources(cluster)):
            if items:
                listed[stem] = items
    objects = 0
    for stem, items in sorted(listed.items()):
        cleaned = [_clean(item) for item in items]
        if stem == "secrets":
            cleaned = [_mask_secret_object(item) for item in cleaned]
        # Masked before YAML folds, quotes or escapes a long or multi-line value.
        listed[stem] = [masker.tree(item) for item in cleaned]
        objects += len(cleaned)
        write(f"objects/{stem}.yaml", yaml.safe_dump_all(listed[stem], sort_keys=False))

    # Events, then describe-like text that also uses them.
    events = _events(cluster, namespace, masker)
    write("events.txt", "\n".join(event_line(event) for event in events) or "(no events)")
    pods = listed.get("pods", [])
    write("describe.txt", describe(listed, events))

    # Logs.
    requests = _log_requests(pods)
    texts = _logs(cluster, namespace, requests, log_lines)
    for request, text in zip(requests, texts, strict=True):
        suffix = ".previous.log" if request.previous else ".log"
        write(f"logs/{request.pod}/{request.container}{suffix}", text)

    summary = [
        f"namespace: {namespace}",
        f"cluster: {cluster.description}",
        f"written: {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"objects: {objects} in objects/ ({len(listed)} kinds)",
        f"logs: {len(requests)} in logs/",
        f"events: {len(events)} in events.txt",
        f"secret values masked as {MASK}",
        *(f"error: {error}" for error in errors),
    ]
    write("summary.txt", "\n".join(summary))
    return Bundle(out, objects, len(requests), len(events), tuple(errors))


# --- describe-like text --------------------------------------------------------------------------


def _describe_workload(kind: str, item: Mapping[str, Any]) -> list[str]:
    from kubefixtures.kube.pods import describe_conditions

    spec, status = item.get("spec") or {}, item.get("status") or {}
    if kind == "jobs":
        counts = (
            f"{status.get('succeeded', 0)} succeeded, {status.get('failed', 0)} failed, "
            f"{status.get('active', 0)} active"
        )
    else:
        wanted = spec.get("replicas", status.get("desiredNumberScheduled", "?"))
        ready = status.get("readyReplicas", status.get("numberReady", 0))
        counts = f"{ready}/{wanted} ready"
    title = {
        "deployments": "Deployment",
        "statefulsets": "StatefulSet",
        "daemonsets": "DaemonSet",
        "jobs": "Job",
    }.get(kind, kind)
    return [
        f"{title} {item['metadata']['name']}: {counts}; conditions: {describe_conditions(status)}"
    ]


def _describe_service(service: Mapping[str, Any], slices: Sequence[Mapping[str, Any]]) -> list[str]:
    spec = service.get("spec") or {}
    name = service["metadata"]["name"]
    ports = ", ".join(
        f"{port.get('name') or '-'} {port.get('port')}->{port.get('targetPort', port.get('port'))}"
        f"/{port.get('protocol', 'TCP')}"
        for port in spec.get("ports") or []
    )
    ready = not_ready = 0
    for endpoint_slice in slices:
        if (endpoint_slice["metadata"].get("labels") or {}).get(
            "kubernetes.io/service-name"
        ) != name:
            continue
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready"):
                ready += 1
            else:
                not_ready += 1
    return [
        f"Service {name} ({spec.get('type', 'ClusterIP')} {spec.get('clusterIP', '-')}): "
        f"ports {ports or 'none'}; endpoints {ready} ready, {not_ready} not ready"
    ]


def describe(
    listed: Mapping[str, Sequence[Mapping[str, Any]]], events: Sequence[Mapping[str, Any]]
) -> str:
    """Describe-like text of the workloads, pods, Services and claims in ``listed``
    (objects by file stem, as ``write_bundle`` lists them)."""
    from kubefixtures.kube.pods import describe_pod_lines

    lines: list[str] = []
    for stem in ("deployments.apps", "statefulsets.apps", "daemonsets.apps", "jobs.batch"):
        for item in listed.get(stem, []):
            lines += [*_describe_workload(stem.partition(".")[0], item), ""]
    for pod in listed.get("pods", []):
        lines += [*describe_pod_lines(pod, events), ""]
    slices = listed.get("endpointslices.discovery.k8s.io", [])
    for service in listed.get("services", []):
        lines += [*_describe_service(service, slices), ""]
    for claim in listed.get("persistentvolumeclaims", []):
        phase = (claim.get("status") or {}).get("phase", "?")
        lines += [f"PersistentVolumeClaim {claim['metadata']['name']}: {phase}", ""]
    return "\n".join(lines) if lines else "(nothing to describe)"
