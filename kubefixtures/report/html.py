"""``--kubefixtures-report=FILE.html``: the session report as a page to look at.

A waterfall of every environment's phases across the session's timeline (inline SVG: one
row per phase, grouped by environment, hover for exact times), then the same figures as a
table, the tests' outcome and the kept namespaces with their commands. Self-contained: no
script, no external stylesheet, font or image, so it opens from a CI artifact as it is.
The markup is also well-formed XML (every tag closed, every attribute quoted).
"""

from __future__ import annotations

import math
from html import escape

from kubefixtures.report.model import EnvironmentRecord, SessionReport
from kubefixtures.timing import PHASES

__all__ = ["render_html"]

# One colour per phase, in PHASES' order (distinguishable, and readable on white).
_COLOURS = (
    "#8e6bbf", "#9aa0a6", "#c17d11", "#5b8def", "#2aa198", "#3b7d3b",
    "#e0a800", "#d9534f", "#b35806", "#6c757d",
)  # fmt: skip
_OTHER_COLOUR = "#444444"
_LABEL_WIDTH = 300
_CHART_WIDTH = 640
_ROW = 18
_HEADING_ROW = 24
_AXIS = 30

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; border-bottom: 1px solid #ddd;
  text-align: left; vertical-align: top; }
table { font-size: 13px; } td code { white-space: nowrap; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
td.failed { max-width: 22em; }
div.wide { overflow-x: auto; }
code, pre { font: 12px ui-monospace, monospace; }
.legend span { display: inline-block; margin-right: 1em; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
  vertical-align: middle; }
.failed { color: #b00020; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
svg text.environment { font-weight: bold; }
svg line.tick { stroke: #e6e6e6; }
"""


def _colour(phase: str) -> str:
    names = list(PHASES)
    return _COLOURS[names.index(phase) % len(_COLOURS)] if phase in PHASES else _OTHER_COLOUR


def _step(span: float) -> float:
    """A round tick interval giving about 8 ticks over ``span`` seconds."""
    raw = max(span / 8, 0.001)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if m * magnitude >= raw)


def _end_of(report: SessionReport) -> float:
    ends = [span.end for record in report.environments for span in record.spans]
    ends += [record.started + record.seconds for record in report.environments]
    return max([report.seconds, *ends, 0.001])


def _label(record: EnvironmentRecord) -> str:
    worker = f" ({record.worker})" if record.worker else ""
    return f"{record.name}{worker} {record.mode}"


def _waterfall(report: SessionReport) -> str:
    end = _end_of(report)
    scale = _CHART_WIDTH / end
    rows: list[str] = []
    y = _AXIS
    for index, record in enumerate(report.environments):
        x = _LABEL_WIDTH + record.started * scale
        width = max(record.seconds * scale, 1.0)
        rows.append(
            f'<g class="environment" data-environment="{escape(record.name)}" data-index="{index}">'
        )
        rows.append(f'<text class="environment" x="4" y="{y + 16}">{escape(_label(record))}</text>')
        rows.append(
            f'<rect class="total" x="{x:.1f}" y="{y + 8}" width="{width:.1f}" height="4" '
            f'fill="{"#b00020" if record.status == "failed" else "#bbbbbb"}">'
            f"<title>{escape(record.name)}: {record.status} after {record.seconds:.2f} s, "
            f"namespace {escape(record.namespace or '-')}</title></rect>"
        )
        y += _HEADING_ROW
        for span in record.spans:
            x = _LABEL_WIDTH + span.start * scale
            width = max((span.end - span.start) * scale, 1.0)
            seconds = record.phases.get(span.phase, span.end - span.start)
            rows.append(
                f'<text x="24" y="{y + 13}">{escape(span.phase)} {seconds:.2f} s</text>'
                f'<rect class="phase" data-phase="{escape(span.phase)}" x="{x:.1f}" '
                f'y="{y + 2}" width="{width:.1f}" height="{_ROW - 4}" '
                f'fill="{_colour(span.phase)}"><title>{escape(record.name)} '
                f"{escape(span.phase)}: {span.start:.2f} s to {span.end:.2f} s "
                f"({seconds:.2f} s)</title></rect>"
            )
            y += _ROW
        rows.append("</g>")
    height = y + 10
    step = _step(end)
    ticks = []
    count = int(end / step) + 1
    for index in range(count + 1):
        at = index * step
        if at > end * 1.0001:
            break
        x = _LABEL_WIDTH + at * scale
        ticks.append(
            f'<line class="tick" x1="{x:.1f}" y1="{_AXIS - 6}" x2="{x:.1f}" y2="{height}"/>'
            f'<text x="{x:.1f}" y="{_AXIS - 10}" text-anchor="middle">{at:g} s</text>'
        )
    total_width = _LABEL_WIDTH + _CHART_WIDTH + 40
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="waterfall" width="{total_width}" '
        f'height="{height}" viewBox="0 0 {total_width} {height}" role="img" '
        f'aria-label="environment phases across the session">'
        + "".join(ticks)
        + "".join(rows)
        + "</svg>"
    )


def _legend(report: SessionReport) -> str:
    used = {span.phase for record in report.environments for span in record.spans}
    items = [
        f'<span title="{escape(PHASES.get(phase, ""))}"><i style="background: {_colour(phase)}">'
        f"</i>{escape(phase)}</span>"
        for phase in [*PHASES, *sorted(used - set(PHASES))]
        if phase in used
    ]
    return f'<p class="legend">{"".join(items)}</p>'


def _environment_table(report: SessionReport) -> str:
    phases = [phase for phase in PHASES if any(phase in r.phases for r in report.environments)]
    head = "".join(f"<th>{escape(phase)}</th>" for phase in phases)
    rows = []
    for record in report.environments:
        cells = "".join(
            f'<td class="number">{record.phases[phase]:.2f}</td>'
            if phase in record.phases
            else "<td></td>"
            for phase in phases
        )
        services = ", ".join(
            f"{escape(name)} {escape(service.url or f'{service.host}:{service.port}')}"
            for name, service in record.services.items()
        )
        status = escape(record.status) + (f": {escape(record.error)}" if record.error else "")
        css = ' class="failed"' if record.status == "failed" else ""
        rows.append(
            f"<tr><td>{escape(record.name)}</td><td><code>{escape(record.namespace or '-')}"
            f"</code></td><td>{escape(record.mode)}</td><td>{escape(record.worker or '')}</td>"
            f"<td{css}>{status}</td>"
            f'<td class="number">{record.started:.2f}</td>'
            f'<td class="number">{record.seconds:.2f}</td>{cells}'
            f'<td class="number">{record.objects}</td><td>{services}</td></tr>'
        )
    return (
        "<table><tr><th>environment</th><th>namespace</th><th>mode</th><th>worker</th>"
        "<th>status</th><th>start (s)</th><th>total (s)</th>"
        f"{head}<th>objects</th><th>services</th></tr>{''.join(rows)}</table>"
    )


def _kept(report: SessionReport) -> str:
    if not report.kept_namespaces:
        return "<p>No namespace was kept.</p>"
    parts = []
    for kept in report.kept_namespaces:
        commands = "\n".join(escape(command) for command in kept.commands)
        parts.append(
            f"<p>Namespace <code>{escape(kept.namespace)}</code> of environment "
            f"{escape(kept.environment)}: {escape(kept.why)}</p><pre>{commands}</pre>"
        )
    return "".join(parts)


def render_html(report: SessionReport) -> str:
    """The page for ``report``."""
    outcome = report.outcome
    counts = ", ".join(
        f"{getattr(outcome, name)} {name}"
        for name in ("passed", "failed", "errors", "skipped", "xfailed", "xpassed")
        if getattr(outcome, name)
    )
    cluster = report.cluster
    where = (
        f"cluster {escape(cluster.context or 'in-cluster')} ({escape(cluster.server or '?')})"
        if cluster
        else "no cluster"
    )
    workers = f", xdist workers {escape(', '.join(report.workers))}" if report.workers else ""
    waterfall = (
        _legend(report) + _waterfall(report)
        if report.environments
        else "<p>No environment was brought up.</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        f"<title>kubefixtures session {escape(report.session_id)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>kubefixtures session {escape(report.session_id)}</h1>"
        f"<p>kubefixtures {escape(report.kubefixtures)}, {where}{workers}; started "
        f"{escape(report.started_at.isoformat(timespec='seconds'))}, {report.seconds:.1f} s; "
        f"exit status {outcome.exit_status}{': ' + counts if counts else ''}.</p>"
        f"<h2>Environments across the session</h2>{waterfall}"
        f'<h2>Phases (seconds)</h2><div class="wide">{_environment_table(report)}</div>'
        f"<h2>Kept namespaces</h2>{_kept(report)}"
        "</body></html>\n"
    )
