"""Phases on the monotonic clock, the summary lines, the merge of xdist workers' timelines,
the session report against its published JSON Schema, the HTML page and the header line."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from kubefixtures.details import Environment, EnvironmentDetails, ServiceDetails
from kubefixtures.provisioning.base import EnvironmentSpec
from kubefixtures.report.collect import Collector
from kubefixtures.report.files import write_report
from kubefixtures.report.header import header_line, public_server
from kubefixtures.report.html import render_html
from kubefixtures.report.model import SCHEMA_PATH, ClusterInfo, SessionReport, schema_text
from kubefixtures.settings import parse_report_path
from kubefixtures.timing import PHASES, Phases

START = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = START) -> None:
        self.now = 100.0
        self.start = start

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.now - 100.0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeProvisioning:
    spec: EnvironmentSpec
    phases: Phases
    namespace: str | None = None
    manager: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def spec(name: str = "shop") -> EnvironmentSpec:
    return EnvironmentSpec(name=name, sources=(Path("manifests"),))


def environment(name: str = "shop", namespace: str = "kf-shop-x7k2p9") -> Environment:
    web = ServiceDetails(
        name="web", namespace=namespace, port=41231, ports={80: 41231}, url="http://127.0.0.1:41231"
    )
    redis = ServiceDetails(name="redis", namespace=namespace, port=40001, ports={6379: 40001})
    details = EnvironmentDetails(
        name=name,
        namespace=namespace,
        context="local",
        session_id="s1",
        services={"web": web, "redis": redis},
        secrets={"password": "hunter2-not-in-reports"},
        ready_seconds=9.0,
    )
    return Environment(details, [])


def fresh_phases(clock: ManualClock, mode: str = "fresh") -> Phases:
    """A setup as FreshProvisioning records it: connect beside render, forward beside ready."""
    phases = Phases(mode, clock=clock)
    phases.begin()
    connect_start = clock.monotonic()
    with phases.phase("render"):
        clock.advance(0.2)
    phases.record("connect", connect_start, connect_start + 0.1)
    for name, seconds in (("resolve", 0.05), ("namespace", 0.1), ("apply", 0.3)):
        with phases.phase(name):
            clock.advance(seconds)
    forwarding = clock.monotonic()
    with phases.phase("ready"):
        clock.advance(8.0)
    clock.advance(0.25)
    phases.record("forward", forwarding, clock.monotonic())
    phases.end()
    return phases


# --- phases -------------------------------------------------------------------------------------


def test_phases_are_spans_in_the_order_they_started_and_may_overlap() -> None:
    clock = ManualClock()
    phases = fresh_phases(clock)
    assert list(phases.seconds()) == [
        "render",
        "connect",
        "resolve",
        "namespace",
        "apply",
        "ready",
        "forward",
    ]
    assert phases.seconds()["ready"] == 8.0
    assert phases.seconds()["forward"] == 8.25  # from beside ready to the last forward
    assert phases.total == pytest.approx(0.2 + 0.05 + 0.1 + 0.3 + 8.25)
    assert set(phases.seconds()) <= set(PHASES)


def test_a_phase_entered_twice_adds_up_and_spans_both() -> None:
    clock = ManualClock()
    phases = Phases(clock=clock)
    with phases.phase("hooks"):
        clock.advance(1.0)
    clock.advance(5.0)
    with phases.phase("hooks"):
        clock.advance(2.0)
    span = phases.spans()["hooks"]
    assert span.seconds == pytest.approx(3.0)
    assert span.end - span.start == pytest.approx(8.0)


def test_a_phase_that_raises_is_recorded_all_the_same() -> None:
    clock = ManualClock()
    phases = Phases(clock=clock)

    def conflicting_apply() -> None:
        with phases.phase("apply"):
            clock.advance(0.5)
            raise RuntimeError("conflict")

    with pytest.raises(RuntimeError):
        conflicting_apply()
    assert phases.seconds() == {"apply": 0.5}
    assert phases.total == 0.5  # no begin/end: over the spans


# --- collecting, summary lines, xdist -----------------------------------------------------------


def collected(clock: ManualClock) -> Collector:
    collector = Collector(clock)
    clock.advance(2.0)  # collection
    shop = FakeProvisioning(spec("shop"), fresh_phases(clock))
    collector.environment(shop, "session", environment())
    failing = FakeProvisioning(spec("broken"), Phases(clock=clock), namespace="kf-broken-1")
    failing.phases.begin()
    with failing.phases.phase("apply"):
        clock.advance(0.4)
    collector.environment(
        failing, "module", None, error="apply failed: Deployment web: spec invalid\nmore"
    )
    collector.count("setup", "passed", False)
    collector.count("call", "passed", False)
    collector.count("call", "failed", False)
    collector.count("setup", "failed", False)
    collector.count("call", "skipped", True)
    collector.count("setup", "skipped", False)
    lines = [
        "kept namespace kf-broken-1 of environment 'broken' (its setup failed); inspect: ...",
        "  kubectl --context local -n kf-broken-1 get all",
        "  kubectl --context local delete namespace kf-broken-1  # remove it",
    ]
    collector.kept_namespace("kf-broken-1", "broken", "its setup failed", lines, None)
    return collector


def test_one_summary_line_per_environment_with_namespace_objects_services_and_phases() -> None:
    lines = collected(ManualClock()).summary_lines()
    assert lines == [
        "shop: ready in 8.9 s (fresh): namespace kf-shop-x7k2p9, 0 objects, "
        "web http://127.0.0.1:41231 (forward), redis 127.0.0.1:40001 (forward) | "
        "render 0.20 connect 0.10 resolve 0.05 namespace 0.10 apply 0.30 ready 8.00 forward 8.25 s",
        "broken: failed after 0.4 s in namespace kf-broken-1 (fresh) | apply 0.40 s",
    ]


def test_the_controller_merges_workers_on_its_own_timeline() -> None:
    controller = Collector(ManualClock())
    worker_clock = ManualClock(START + timedelta(seconds=3))  # started 3 s after it
    worker = Collector(worker_clock)
    worker_clock.advance(1.0)
    manager = FakeProvisioning(spec(), fresh_phases(worker_clock))
    worker.environment(manager, "session", environment(), worker="gw0")
    other_clock = ManualClock(START + timedelta(seconds=3.5))
    other = Collector(other_clock)
    waiting = Phases("shared", clock=other_clock)
    waiting.begin()
    with waiting.phase("wait"):
        other_clock.advance(9.0)
    waiting.end()
    other.environment(
        FakeProvisioning(spec(), waiting, manager="gw0"), "session", environment(), worker="gw1"
    )
    # Through execnet: plain data.
    controller.merge("gw0", json.loads(json.dumps(worker.worker_output())))
    controller.merge("gw1", json.loads(json.dumps(other.worker_output())))
    first, second = controller.environments
    assert first.started == pytest.approx(4.0)
    assert first.spans[0].start == pytest.approx(4.0)
    assert second.started == pytest.approx(3.5)
    assert second.manager == "gw0"
    # The worker that waited is named on the manager's line, not on a line of its own.
    [line] = controller.summary_lines()
    assert line.startswith("shop: ready in 8.9 s (fresh, xdist worker gw0): namespace kf-shop-")
    assert line.endswith("| shared with gw1")
    assert controller.workers == ["gw0", "gw1"]


def test_a_shared_environment_whose_manager_is_unknown_has_a_line_of_its_own() -> None:
    clock = ManualClock()
    collector = Collector(clock)
    waiting = Phases("shared", clock=clock)
    with waiting.phase("wait"):
        clock.advance(1.5)
    provisioning = FakeProvisioning(spec(), waiting, manager="gw3")
    collector.environment(provisioning, "session", environment(), worker="gw1")
    assert collector.summary_lines() == [
        "shop: namespace kf-shop-x7k2p9 of xdist worker gw3, waited 1.5 s "
        "(shared, xdist worker gw1)"
    ]


# --- the report files -------------------------------------------------------------------------


def session_report() -> SessionReport:
    collector = collected(ManualClock())
    return collector.session_report("s1", 1, ClusterInfo(context="local", server="https://h:6443"))


def test_the_published_schema_is_the_models() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "kubefixtures/report/schema.json is stale: python -m kubefixtures.report.model"
    )


def test_a_written_json_report_validates_against_the_published_schema(tmp_path: Path) -> None:
    path = write_report(tmp_path / "report.json", session_report())
    data = json.loads(path.read_text())
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(data)
    assert data["outcome"] == {
        "exit_status": 1,
        "passed": 1,
        "failed": 1,
        "errors": 1,
        "skipped": 1,
        "xfailed": 1,
        "xpassed": 0,
    }
    assert [env["name"] for env in data["environments"]] == ["shop", "broken"]
    assert data["environments"][1]["error"] == "apply failed: Deployment web: spec invalid"
    assert data["kept_namespaces"][0]["commands"] == [
        "kubectl --context local -n kf-broken-1 get all",
        "kubectl --context local delete namespace kf-broken-1  # remove it",
    ]
    assert "hunter2" not in path.read_text()  # secrets never reach a report


def test_the_schema_refuses_a_report_of_another_shape() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    data = json.loads(session_report().model_dump_json())
    data["environments"][0]["mode"] = "borrowed"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_html_report_is_well_formed_self_contained_and_draws_every_phase(
    tmp_path: Path,
) -> None:
    report = session_report()
    text = write_report(tmp_path / "report.html", report).read_text()
    # Well-formed as XML too (the DOCTYPE aside), so any parser reads it.
    root = ET.fromstring(text.split("\n", 1)[1])
    groups = root.findall(".//{http://www.w3.org/2000/svg}g")
    assert [group.get("data-environment") for group in groups] == ["shop", "broken"]
    for group, record in zip(groups, report.environments, strict=True):
        drawn = [
            rect.get("data-phase")
            for rect in group.iter("{http://www.w3.org/2000/svg}rect")
            if rect.get("class") == "phase"
        ]
        assert drawn == list(record.phases)
    parser = _Elements()
    parser.feed(text)
    tags = {tag for tag, _ in parser.tags}
    assert not tags & {"script", "link", "img", "iframe", "object"}
    assert not any("src" in attrs or "href" in attrs for _, attrs in parser.tags)
    assert "kf-broken-1 delete namespace" not in text  # commands are shown as given
    assert "kubectl --context local delete namespace kf-broken-1" in text


def test_the_html_report_of_a_session_without_environments_says_so() -> None:
    report = Collector(ManualClock()).session_report("s1", 0, None)
    text = render_html(report)
    ET.fromstring(text.split("\n", 1)[1])
    assert "No environment was brought up." in text


def test_an_unwritable_report_is_one_line_naming_the_file(tmp_path: Path) -> None:
    from kubefixtures.errors import KubefixturesError

    with pytest.raises(KubefixturesError, match=r"missing/r\.json: cannot write the kubefixtures"):
        write_report(tmp_path / "missing" / "r.json", session_report())


# --- the report path, the header line ----------------------------------------------------------


def test_the_report_path_must_be_json_or_html_in_a_writable_directory(tmp_path: Path) -> None:
    assert parse_report_path(str(tmp_path / "r.JSON")) == str(tmp_path / "r.JSON")
    assert parse_report_path("") == ""
    with pytest.raises(ValueError, match=r"must end in \.json or \.html"):
        parse_report_path(str(tmp_path / "r.txt"))
    with pytest.raises(ValueError, match="does not exist"):
        parse_report_path(str(tmp_path / "nowhere" / "r.json"))
    (tmp_path / "r.html").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        parse_report_path(str(tmp_path / "r.html"))


KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: local
clusters:
- name: local
  cluster: {server: "https://admin:s3cret@127.0.0.1:6443/some/path?token=abc"}
users:
- name: me
  user:
    exec: {command: /nonexistent/plugin, apiVersion: client.authentication.k8s.io/v1}
contexts:
- name: local
  context: {cluster: local, user: me}
"""


def test_the_header_names_context_and_server_without_credentials(tmp_path: Path) -> None:
    from kubefixtures import __version__

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(KUBECONFIG)
    # The exec plugin does not exist: nothing but the file is read.
    assert header_line(str(kubeconfig), None) == (
        f"kubefixtures {__version__}: cluster local (https://127.0.0.1:6443)"
    )
    assert "no context named 'other'" in header_line(str(kubeconfig), "other")
    missing = header_line(str(tmp_path / "absent"), None)
    assert missing.endswith("absent: no such file) and not in a pod")


def test_public_server_keeps_scheme_host_and_port_only() -> None:
    assert public_server("https://u:p@[::1]:6443/x?y=z") == "https://[::1]:6443"
    assert public_server("https://example.com") == "https://example.com"
    assert public_server("not a url") == "(unreadable server URL)"


def test_every_phase_is_documented() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text()
    for phase in PHASES:
        assert f"| `{phase}` |" in text, phase
