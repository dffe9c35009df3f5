"""The report as one HTML page a person reads at any fleet size: summary first, then failures.

Server-rendered, self-contained (inline CSS, no scripts, no external assets), every value
escaped. It stays light at 1,000 nodes x 200 images: failures are grouped (one row per image,
kind and reason, its nodes behind `<details>`), and the node x image grid is filtered and
paged through plain links and a GET form (`?node=`, `?image=`, `?state=`, `?page=`,
`?imagePage=`), so it works with any browser, curl included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefetcher.model import CELL_STATES
from prefetcher.report_focus import one_image_html, one_node_html, single_match
from prefetcher.report_grid import grid_html
from prefetcher.report_markup import STATE_CLASS, escape, link, percent, thousands
from prefetcher.report_query import ReportQuery, filter_groups
from prefetcher.report_sections import (
    budget_table,
    failures_html,
    images_table,
    learning_html,
    sources_html,
)

REFRESH_SECONDS = 60

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1280px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;margin:0}h2{font-size:17px;margin:30px 0 8px}h3{font-size:15px;margin:18px 0 6px}
a{color:#175cd3;text-decoration:none}a:hover{text-decoration:underline}
.muted{color:#667085}.card{background:#fff;border:1px solid #e4e7ec;border-radius:10px;padding:16px 18px;margin:12px 0}
.head{display:flex;justify-content:space-between;align-items:baseline;gap:12px;flex-wrap:wrap}
.big{font-size:30px;font-weight:700}
.bar{height:14px;background:#e4e7ec;border-radius:7px;overflow:hidden;display:flex;margin:8px 0}
.bar span{display:block;height:100%}
.stats{display:flex;flex-wrap:wrap;gap:8px 26px;margin-top:8px}.stats b{font-size:18px;display:block}
.stats a{color:inherit}
table{border-collapse:collapse;background:#fff;width:100%;border:1px solid #e4e7ec;border-radius:10px}
th,td{border-bottom:1px solid #eef0f3;padding:6px 9px;text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600;font-size:13px}
td.num,th.num{text-align:right;white-space:nowrap}
code{font-size:12.5px;overflow-wrap:anywhere}.reason{color:#b42318;font-weight:600}
.kind{display:inline-block;background:#fef3f2;color:#b42318;border-radius:10px;padding:0 8px;font-size:12px}
.msg{color:#475467;font-size:12.5px;max-width:380px}.why{color:#475467}
details summary{cursor:pointer;color:#175cd3;white-space:nowrap}
details .names{max-height:240px;overflow:auto;font-size:12.5px;color:#475467;padding-top:4px;width:300px;text-align:left;display:flex;flex-wrap:wrap;gap:1px 14px;align-content:flex-start}
.names span{white-space:nowrap}
td.ref{min-width:250px}td.state{white-space:nowrap}.dot{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
tr.present-images .names{width:auto;font-family:monospace}
form.find{display:flex;flex-wrap:wrap;gap:10px;align-items:end}
form.find label{display:flex;flex-direction:column;font-size:12px;color:#475467}
form.find input,form.find select{font:inherit;padding:5px 8px;border:1px solid #d0d5dd;border-radius:6px;min-width:180px}
form.find button{font:inherit;padding:6px 14px;border:0;border-radius:6px;background:#175cd3;color:#fff;cursor:pointer}
.scroll{overflow-x:auto}
table.grid{width:auto;border:0;background:none}
.grid td,.grid th{padding:0;border:1px solid #f6f7f9;text-align:center}.grid th{background:none}
.grid th.n{text-align:left;padding:0 8px 0 0;white-space:nowrap;font-weight:400;font-size:12.5px;background:none}
.grid th.c{font-weight:400;font-size:11px;color:#667085;padding:0 0 0 8px;text-align:left;background:none;white-space:nowrap}
.grid th.i{height:170px;white-space:nowrap;vertical-align:bottom;font-weight:400;font-size:12px;background:none}
.grid th.i div{transform:rotate(-55deg);transform-origin:left bottom;width:16px;position:relative;left:9px}
.grid td{width:15px;height:15px}.grid th.tail{min-width:130px}
.p{background:#12b76a}.u{background:#2e90fa}.m{background:#fdb022}.f{background:#f04438}.i{background:#e4e7ec}
.legend span{display:inline-block;width:11px;height:11px;border-radius:2px;margin:0 4px 0 12px;vertical-align:middle}
.pager{margin:8px 0;display:flex;gap:14px;flex-wrap:wrap}
"""


# --- summary --------------------------------------------------------------------------


def _summary(report: Mapping[str, Any], query: ReportQuery) -> str:
    summary = report.get("summary") or {}
    coverage = float(summary.get("coverage", 1.0))
    wanted = summary.get("wantedPairs", 0) or 0
    bar = "".join(
        f'<span class="{STATE_CLASS[state]}" style="width:{percent(value, wanted)}" '
        f'title="{state}: {escape(value)}"></span>'
        for state, value in (
            (state, summary.get(f"{state}Pairs", 0) or 0)
            for state in ("present", "pulling", "missing", "failed")
        )
        if value
    )
    stats = "".join(
        f"<div><b>{thousands(summary.get(key, 0))}</b><span class=muted>{label}</span></div>"
        for key, label in (("nodes", "nodes"), ("images", "wanted images"))
    ) + "".join(
        f"<div><b>{link(query, thousands(summary.get(f'{state}Pairs', 0)), state=state, page=1, image_page=1)}</b>"
        f"<span class=muted>{state}</span></div>"
        for state in CELL_STATES
    )
    if summary.get("budgetLeftOut"):
        stats += (
            f"<div><b>{thousands(summary['budgetLeftOut'])}</b>"
            "<span class=muted>left out by budget</span></div>"
        )
    quiet = (
        '<p class="muted">Quiet hours: only urgent pulls start.</p>'
        if summary.get("quietHours")
        else ""
    )
    return (
        '<section class="card" id="summary"><div class="head">'
        f'<div><span class="big">{coverage:.1%}</span> <span class="muted">coverage</span></div>'
        f'<span class="muted">{thousands(summary.get("presentPairs", 0))} of {thousands(wanted)} '
        "wanted node &times; image pairs present</span></div>"
        f'<div class="bar">{bar}</div><div class="stats">{stats}</div>{quiet}'
        f"{_sweep(report)}</section>"
    )


def _sweep(report: Mapping[str, Any]) -> str:
    sweep = report.get("lastSweep") or {}
    planned = ", ".join(f"{k} {v}" for k, v in (sweep.get("planned") or {}).items())
    done = ", ".join(f"{k} {v}" for k, v in (sweep.get("done") or {}).items())
    seconds = sweep.get("seconds")
    took = f" in {seconds:.2f} s" if isinstance(seconds, int | float) else ""
    trigger = f" ({sweep['trigger']})" if sweep.get("trigger") else ""
    errors = "".join(f'<li class="reason">{escape(e)}</li>' for e in sweep.get("errors") or [])
    return (
        f'<p class="muted">Last pass at {escape(sweep.get("at", ""))}{escape(took)}{escape(trigger)}. '
        f"Planned: {escape(planned)}."
        + (f" Done: {escape(done)}." if done else "")
        + "</p>"
        + (f"<ul>{errors}</ul>" if errors else "")
    )


def _find_form(query: ReportQuery) -> str:
    options = "".join(
        f'<option value="{s}"{" selected" if s == query.state else ""}>{s or "any"}</option>'
        for s in ("", *CELL_STATES)
    )
    clear = ' <a href="?">clear</a>' if query.filtered else ""
    return (
        '<form class="find card" method="get" action="" role="search">'
        f'<label>Node<input name="node" value="{escape(query.node)}" placeholder="part of a node name"></label>'
        f'<label>Image<input name="image" value="{escape(query.image)}" placeholder="part of an image reference"></label>'
        f'<label>State<select name="state">{options}</select></label>'
        f"<button type=submit>Find</button>{clear}</form>"
    )


# --- failures -------------------------------------------------------------------------


# --- one node, one image --------------------------------------------------------------


# --- grid -----------------------------------------------------------------------------


# --- images and budget ----------------------------------------------------------------


def render_html(report: Mapping[str, Any], query: ReportQuery | None = None) -> str:
    """The full (unfiltered) report as a page, narrowed and paged by `query`."""
    query = query or ReportQuery()
    summary = report.get("summary") or {}
    coverage = float(summary.get("coverage", 1.0))
    failures: Sequence[Mapping[str, Any]] = report.get("failureGroups") or []
    if query.filtered:
        failures = filter_groups(failures, query)
    focus = ""
    if query.node:
        node = single_match(report.get("nodes") or [], "name", query.node)
        focus += one_node_html(node, query) if node else ""
    if query.image:
        image = single_match(report.get("images") or [], "image", query.image)
        focus += one_image_html(image, query) if image else ""
    legend = "".join(f'<span class="{STATE_CLASS[s]}"></span>{s}' for s in CELL_STATES)
    # Relative links: the page also works behind a path prefix (`kubectl proxy`, an ingress).
    json_link = "report" + (query.params(page=1, image_page=1) if query.filtered else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>image-sync: {coverage:.1%} coverage</title>
<style>{_CSS}</style></head><body><main>
<div class="head"><h1>image-sync prefetch report</h1>
<span class="muted">Generated {escape(report.get("generatedAt", ""))} · <a href="{escape(json_link)}">JSON</a> · <a href="metrics">metrics</a></span></div>
{_summary(report, query)}
{learning_html(report)}
{_find_form(query)}
<h2>Failures</h2>{failures_html(failures, query)}
{focus}
<h2>Nodes &times; images</h2><p class="legend muted">{legend} · worst nodes first; hover a cell for its reason</p>
{grid_html(report, query)}
<h2>Images</h2>{images_table(report, query)}
<h2>Left out by the disk budget</h2>{budget_table(report, query)}
<h2>Sources</h2>{sources_html(report)}
</main></body></html>
"""
