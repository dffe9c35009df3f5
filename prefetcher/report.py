"""The prefetch report: a JSON-able dict built from a Plan, and an HTML page built from that dict.

`GET /report` serves `build_report(...)`, `GET /` serves `render_html(build_report(...))`.
The JSON keeps camelCase keys like the Kubernetes API; its shape is documented in
docs/prefetcher.md ("The report"). The page is self-contained (inline CSS, no scripts,
no external assets) and every value is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from imagesync.cachedimage import format_time
from prefetcher.budget import format_bytes
from prefetcher.model import CellState, Plan

GRID_MAX_NODES = 300
GRID_MAX_IMAGES = 80
_STATE_ORDER = {"failed": 0, "pulling": 1, "missing": 2, "present": 3, "ineligible": 4}


@dataclass(frozen=True)
class SweepInfo:
    """What the runtime did with the last plan: when, how long, and the outcome."""

    started: datetime
    seconds: float
    trigger: str = "sweep"  # sweep | node | image | pod | startup
    done: Mapping[str, int] = field(default_factory=dict)  # e.g. {"podsCreated": 3}
    errors: tuple[str, ...] = ()


def _cell(cell: CellState) -> dict[str, Any]:
    out: dict[str, Any] = {"state": cell.state}
    if cell.reason:
        out["reason"] = cell.reason
    if cell.message:
        out["message"] = cell.message
    if cell.kind:
        out["kind"] = cell.kind
    if cell.attempts:
        out["attempts"] = cell.attempts
    if cell.retry_at is not None:
        out["retryAt"] = format_time(cell.retry_at)
    return out


def build_report(plan: Plan, sweep: SweepInfo | None = None) -> dict[str, Any]:
    """The report for `plan` (and what the runtime did with it, when known)."""
    summary = plan.summary
    per_node: dict[str, dict[str, Any]] = {n.name: {} for n in plan.nodes}
    per_image: dict[str, dict[str, Any]] = {i.image: {} for i in plan.images if i.wanted}
    failures = []
    for cell in plan.cells:
        entry = _cell(cell)
        per_node.setdefault(cell.node, {})[cell.image] = entry
        per_image.setdefault(cell.image, {})[cell.node] = entry
        if cell.state == "failed":
            failures.append({"node": cell.node, "image": cell.image, **entry})
    failures.sort(key=lambda f: (f["image"], f["node"]))

    report: dict[str, Any] = {
        "generatedAt": format_time(plan.now),
        "summary": {
            "coverage": round(summary.coverage, 4) if summary else 1.0,
            "nodes": summary.nodes if summary else 0,
            "images": summary.images if summary else 0,
            "wantedPairs": summary.wanted_pairs if summary else 0,
            "presentPairs": summary.present_pairs if summary else 0,
            "pullingPairs": summary.pulling_pairs if summary else 0,
            "missingPairs": summary.missing_pairs if summary else 0,
            "failedPairs": summary.failed_pairs if summary else 0,
            "ineligiblePairs": summary.ineligible_pairs if summary else 0,
            "budgetLeftOut": summary.budget_left_out if summary else 0,
            "quietHours": summary.quiet_hours if summary else False,
        },
        "lastSweep": _sweep(plan, sweep),
        "failures": failures,
        "nodes": [
            {
                "name": n.name,
                "eligible": n.eligible,
                "why": n.why,
                "urgent": n.urgent,
                "budgetBytes": n.budget,
                "budgetUsedBytes": n.budget_used,
                "wanted": n.wanted,
                "present": n.present,
                "pulling": n.pulling,
                "failed": n.failed,
                "coverage": round(n.present / n.wanted, 4) if n.wanted else 1.0,
                "images": per_node.get(n.name, {}),
            }
            for n in plan.nodes
        ],
        "images": [
            {
                "name": i.name,
                "image": i.image,
                "source": i.source,
                "score": i.score,
                "wanted": i.wanted,
                "nodesWanted": i.nodes_wanted,
                "nodesPresent": i.nodes_present,
                "nodesPulling": i.nodes_pulling,
                "nodesFailed": i.nodes_failed,
                "lastError": i.last_error,
                "nodes": per_image.get(i.image, {}),
            }
            for i in plan.images
        ],
        "budgetLeftOut": [
            {
                "node": b.node,
                "image": b.image,
                "sizeBytes": b.size,
                "score": b.score,
                "why": b.why,
            }
            for b in plan.budget_left_out
        ],
        "pullsStarted": [
            {
                "node": p.node,
                "images": list(p.images),
                "pod": p.pod_name,
                "why": p.why,
                "urgent": p.urgent,
                "attempt": p.attempt,
                "sizeBytes": p.size,
                "deadlineSeconds": p.deadline_seconds,
            }
            for p in plan.pulls
        ],
    }
    return report


def _sweep(plan: Plan, sweep: SweepInfo | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "at": format_time(sweep.started if sweep else plan.now),
        "seconds": round(sweep.seconds, 3) if sweep else None,
        "trigger": sweep.trigger if sweep else None,
        "planned": {
            "pullsStarted": len(plan.pulls),
            "keepersCreated": len(plan.keepers),
            "podsDeleted": len(plan.deletions),
            "taintsRemoved": len(plan.taint_removals),
            "statusUpdates": len(plan.status_updates),
        },
        "done": dict(sweep.done) if sweep else {},
        "errors": list(sweep.errors) if sweep else [],
    }
    return out


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2430;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.muted{color:#667085}.card{background:#fff;border:1px solid #e4e7ec;border-radius:8px;padding:16px;margin:12px 0}
.bar{height:22px;background:#e4e7ec;border-radius:11px;overflow:hidden;display:flex}
.bar span{display:block;height:100%}
.stats{display:flex;flex-wrap:wrap;gap:18px;margin-top:10px}.stats b{font-size:18px;display:block}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border-bottom:1px solid #eef0f3;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600}
.grid td,.grid th{padding:0;border:1px solid #fff;text-align:center}
.grid th.n{text-align:left;padding:0 6px;white-space:nowrap;font-weight:400}
.grid th.i{height:140px;white-space:nowrap;vertical-align:bottom;font-weight:400}
.grid th.i div{transform:rotate(-60deg);transform-origin:left bottom;width:18px;position:relative;left:10px}
.grid td{width:16px;height:16px}
.present{background:#12b76a}.pulling{background:#2e90fa}.missing{background:#fdb022}
.failed{background:#f04438}.ineligible{background:#eaecf0}
.legend span{display:inline-block;width:12px;height:12px;border-radius:2px;margin:0 4px 0 12px;vertical-align:middle}
code{font-size:12px}.reason{color:#b42318;font-weight:600}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "0%"


def _coverage_bar(summary: Mapping[str, Any]) -> str:
    wanted = summary.get("wantedPairs", 0) or 0
    parts = []
    for key, css in (
        ("presentPairs", "present"),
        ("pullingPairs", "pulling"),
        ("missingPairs", "missing"),
        ("failedPairs", "failed"),
    ):
        value = summary.get(key, 0) or 0
        if value:
            parts.append(
                f'<span class="{css}" style="width:{_pct(value, wanted)}" '
                f'title="{_e(css)}: {_e(value)}"></span>'
            )
    return f'<div class="bar">{"".join(parts)}</div>'


def _failures(report: Mapping[str, Any]) -> str:
    failures: Sequence[Mapping[str, Any]] = report.get("failures") or []
    if not failures:
        return '<p class="muted">No failed pulls.</p>'
    rows = "".join(
        "<tr>"
        f"<td><code>{_e(f.get('image', ''))}</code></td><td>{_e(f.get('node', ''))}</td>"
        f'<td class="reason">{_e(f.get("reason", ""))}</td><td>{_e(f.get("kind", ""))}</td>'
        f"<td>{_e(f.get('message', ''))}</td><td>{_e(f.get('attempts', ''))}</td>"
        f"<td>{_e(f.get('retryAt', ''))}</td></tr>"
        for f in failures
    )
    return (
        "<table><tr><th>Image</th><th>Node</th><th>Reason</th><th>Kind</th><th>Message</th>"
        f"<th>Attempts</th><th>Next try</th></tr>{rows}</table>"
    )


def _grid(report: Mapping[str, Any]) -> str:
    images = [i for i in report.get("images") or [] if i.get("wanted")]
    nodes = list(report.get("nodes") or [])
    if not images or not nodes:
        return '<p class="muted">No wanted images or no nodes yet.</p>'

    def worst(node: Mapping[str, Any]) -> tuple[int, str]:
        states = [c.get("state", "") for c in (node.get("images") or {}).values()]
        return (min((_STATE_ORDER.get(s, 9) for s in states), default=9), node.get("name", ""))

    nodes.sort(key=worst)
    shown_nodes, shown_images = nodes[:GRID_MAX_NODES], images[:GRID_MAX_IMAGES]
    head = "".join(
        f'<th class="i" title="{_e(i["image"])}"><div>{_e(_short(i["image"]))}</div></th>'
        for i in shown_images
    )
    rows = []
    for node in shown_nodes:
        cells = node.get("images") or {}
        tds = []
        for image in shown_images:
            cell = cells.get(image["image"], {"state": "ineligible"})
            state = str(cell.get("state", "ineligible"))
            detail = " — ".join(str(cell[k]) for k in ("reason", "message") if cell.get(k))
            title = f"{node['name']} · {image['image']}: {state}" + (
                f" ({detail})" if detail else ""
            )
            tds.append(f'<td class="{_e(state)}" title="{_e(title)}"></td>')
        label = node["name"] + ("" if node.get("eligible", True) else f" ({node.get('why', '')})")
        rows.append(f'<tr><th class="n">{_e(label)}</th>{"".join(tds)}</tr>')
    note = ""
    if len(nodes) > len(shown_nodes) or len(images) > len(shown_images):
        note = (
            f'<p class="muted">Showing {len(shown_nodes)} of {len(nodes)} nodes and '
            f"{len(shown_images)} of {len(images)} images; the JSON report has all.</p>"
        )
    return f'<table class="grid"><tr><th></th>{head}</tr>{"".join(rows)}</table>{note}'


def _short(image: str) -> str:
    return image.rsplit("/", 1)[-1][:40]


def _images_table(report: Mapping[str, Any]) -> str:
    rows = []
    for image in report.get("images") or []:
        wanted = image.get("nodesWanted", 0)
        present = image.get("nodesPresent", 0)
        status = "released" if not image.get("wanted") else f"{present}/{wanted}"
        rows.append(
            f"<tr><td><code>{_e(image.get('image', ''))}</code></td>"
            f"<td>{_e(image.get('source', ''))}</td><td>{_e(image.get('score', ''))}</td>"
            f"<td>{_e(status)}</td><td>{_e(image.get('nodesPulling', 0))}</td>"
            f'<td class="reason">{_e(image.get("lastError", ""))}</td></tr>'
        )
    return (
        "<table><tr><th>Image</th><th>Source</th><th>Score</th><th>Present / wanted nodes</th>"
        f"<th>Pulling</th><th>Last error</th></tr>{''.join(rows)}</table>"
    )


def _budget_table(report: Mapping[str, Any]) -> str:
    left_out = report.get("budgetLeftOut") or []
    if not left_out:
        return '<p class="muted">Every eligible image fits its node\'s disk budget.</p>'
    rows = "".join(
        f"<tr><td>{_e(b.get('node', ''))}</td><td><code>{_e(b.get('image', ''))}</code></td>"
        f"<td>{_e(format_bytes(float(b.get('sizeBytes') or 0)))}</td>"
        f"<td>{_e(b.get('why', ''))}</td></tr>"
        for b in left_out[:500]
    )
    return f"<table><tr><th>Node</th><th>Image</th><th>Size</th><th>Why</th></tr>{rows}</table>"


def _sweep_html(report: Mapping[str, Any]) -> str:
    sweep = report.get("lastSweep") or {}
    planned = sweep.get("planned") or {}
    done = sweep.get("done") or {}
    seconds = sweep.get("seconds")
    took = f" in {seconds:.2f} s" if isinstance(seconds, int | float) else ""
    trigger = f" ({sweep['trigger']})" if sweep.get("trigger") else ""
    planned_text = ", ".join(f"{k} {v}" for k, v in planned.items())
    done_text = ", ".join(f"{k} {v}" for k, v in done.items())
    errors = "".join(f'<li class="reason">{_e(e)}</li>' for e in sweep.get("errors") or [])
    return (
        f"<p>Last sweep at {_e(sweep.get('at', ''))}{_e(took)}{_e(trigger)}.<br>"
        f"Planned: {_e(planned_text)}"
        + (f"<br>Done: {_e(done_text)}" if done_text else "")
        + "</p>"
        + (f"<ul>{errors}</ul>" if errors else "")
    )


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    summary = report.get("summary") or {}
    coverage = float(summary.get("coverage", 1.0))
    stats = "".join(
        f"<div><b>{_e(summary.get(key, 0))}</b><span class=muted>{_e(label)}</span></div>"
        for key, label in (
            ("nodes", "nodes"),
            ("images", "wanted images"),
            ("presentPairs", "present"),
            ("pullingPairs", "pulling"),
            ("missingPairs", "missing"),
            ("failedPairs", "failed"),
            ("ineligiblePairs", "ineligible"),
            ("budgetLeftOut", "left out by budget"),
        )
    )
    quiet = (
        '<p class="muted">Quiet hours: only urgent pulls start.</p>'
        if summary.get("quietHours")
        else ""
    )
    undone = (report.get("runtime") or {}).get("pullPolicyRewriteUndone")
    if undone:
        quiet += (
            f'<p class="reason">Pull policy rewrite undone on {_e(undone.get("pod", ""))} '
            f"since {_e(undone.get('since', ''))}: {_e(undone.get('why', ''))}</p>"
        )
    legend = "".join(
        f'<span class="{s}"></span>{s}'
        for s in ("present", "pulling", "missing", "failed", "ineligible")
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="30">
<title>image-sync: {_e(f"{coverage:.1%}")} coverage</title>
<style>{_CSS}</style></head><body>
<h1>image-sync prefetch report</h1>
<p class="muted">Generated {_e(report.get("generatedAt", ""))}</p>
<div class="card"><div style="display:flex;justify-content:space-between">
<b>Coverage {_e(f"{coverage:.1%}")}</b>
<span class="muted">{_e(summary.get("presentPairs", 0))} of {_e(summary.get("wantedPairs", 0))} node &times; image pairs present</span>
</div>{_coverage_bar(summary)}<div class="stats">{stats}</div>{quiet}
{_sweep_html(report)}</div>
<h2>Failures</h2>{_failures(report)}
<h2>Nodes &times; images</h2><p class="legend">{legend}</p>{_grid(report)}
<h2>Images</h2>{_images_table(report)}
<h2>Left out by the disk budget</h2>{_budget_table(report)}
</body></html>
"""
