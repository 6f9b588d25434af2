"""The one describer of pods and formatter of events: the short and the long form use the
same words, so a readiness error, a failing test's report and a bundle agree."""

from __future__ import annotations

from typing import Any

from kubefixtures.kube.pods import (
    container_state,
    describe_events,
    describe_pod,
    describe_pod_lines,
    event_line,
)

CRASHING: dict[str, Any] = {
    "metadata": {"name": "web-1"},
    "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "app:1"}]},
    "status": {
        "phase": "Running",
        "podIP": "10.0.0.7",
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
        "containerStatuses": [
            {
                "name": "app",
                "ready": False,
                "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
                "lastState": {"terminated": {"reason": "Error", "exitCode": 1, "finishedAt": "T1"}},
            }
        ],
    },
}
EVENT: dict[str, Any] = {
    "type": "Warning",
    "reason": "BackOff",
    "count": 3,
    "lastTimestamp": "2026-01-01T00:00:01Z",
    "involvedObject": {"kind": "Pod", "name": "web-1"},
    "message": "Back-off restarting\n  failed container",
}


def test_the_short_and_the_long_description_say_the_same_words() -> None:
    words = "waiting: CrashLoopBackOff (back-off 10s)"
    assert describe_pod(CRASHING) == (
        f"Running; container app {words}, 1 restart (last exit code 1 Error)"
    )
    assert describe_pod_lines(CRASHING, [EVENT]) == [
        "Pod web-1: phase Running, node node-1, IP 10.0.0.7",
        "  conditions: Ready=False (ContainersNotReady)",
        f"  container app (app:1): not ready, {words}, 1 restart",
        "    last state: terminated: Error (exit code 1) at T1",
        "  events:",
        "    2026-01-01T00:00:01Z  pod/web-1  Warning BackOff (x3): Back-off restarting failed "
        "container",
    ]


def test_one_event_line_with_or_without_its_context() -> None:
    core = "Warning BackOff (x3): Back-off restarting failed container"
    assert event_line(EVENT, context=False) == core
    assert event_line(EVENT) == f"2026-01-01T00:00:01Z  pod/web-1  {core}"
    assert describe_events([EVENT]) == [core]
    series = {**EVENT, "count": None, "series": {"count": 4}}
    assert "(x4)" in event_line(series)


def test_container_states_with_times() -> None:
    assert container_state({"running": {"startedAt": "T0"}}, times=True) == "running since T0"
    assert container_state({"running": {}}) == "running"
    assert container_state({}) == "unknown"
