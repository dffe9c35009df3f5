"""The report as one HTML page a person reads at any fleet size: summary first, then failures.

Server-rendered, self-contained (inline CSS, no scripts, no external assets), every value
escaped. It stays light at 1,000 nodes x 200 images: failures are grouped (one row per image,
kind and reason, its nodes behind `<details>`), and the node x image grid is filtered and
paged through plain links and a GET form (`?node=`, `?image=`, `?state=`, `?page=`,
`?imagePage=`), so it works with any browser, curl included.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prefetcher.budget import format_bytes
from prefetcher.model import CELL_STATES
from prefetcher.report_query import ReportQuery, filter_groups

NODES_PER_PAGE = 50
IMAGES_PER_PAGE = 40
FAILURE_GROUPS_SHOWN = 25
BUDGET_ROWS_SHOWN = 100
REFRESH_SECONDS = 60
# One letter per state keeps 2,000 grid cells light; the legend spells them out.
STATE_CLASS = {"present": "p", "pulling": "u", "missing": "m", "failed": "f", "ineligible": "i"}
_WORST_FIRST = {"failed": 0, "pulling": 1, "missing": 2, "present": 3, "ineligible": 4}

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


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _n(value: Any) -> str:
    """A count with thousands separators (174,244 reads faster than 174244)."""
    return f"{value:,}" if isinstance(value, int) else _e(value)


def _time(stamp: str | None) -> str:
    """`2026-11-22T03:04:00Z` as `2026-11-22 03:04:00Z`: a line break may fall between."""
    return (stamp or "").replace("T", " ", 1)


def _lines(names: Iterable[str]) -> str:
    """Names as a wrapping list that never breaks inside a name (they hold hyphens)."""
    return "\n".join(f"<span>{_e(name)}</span>" for name in names)


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "0%"


def _short(image: str) -> str:
    """The last path segment, cut to fit a grid column's slanted heading."""
    name = image.rsplit("/", 1)[-1]
    return name if len(name) <= 30 else name[:29] + "\u2026"


def _link(query: ReportQuery, text: str, **changes: Any) -> str:
    return f'<a href="{_e(query.params(**changes))}">{_e(text)}</a>'


# --- summary --------------------------------------------------------------------------


def _summary(report: Mapping[str, Any], query: ReportQuery) -> str:
    summary = report.get("summary") or {}
    coverage = float(summary.get("coverage", 1.0))
    wanted = summary.get("wantedPairs", 0) or 0
    bar = "".join(
        f'<span class="{STATE_CLASS[state]}" style="width:{_pct(value, wanted)}" '
        f'title="{state}: {_e(value)}"></span>'
        for state, value in (
            (state, summary.get(f"{state}Pairs", 0) or 0)
            for state in ("present", "pulling", "missing", "failed")
        )
        if value
    )
    stats = "".join(
        f"<div><b>{_n(summary.get(key, 0))}</b><span class=muted>{label}</span></div>"
        for key, label in (("nodes", "nodes"), ("images", "wanted images"))
    ) + "".join(
        f"<div><b>{_link(query, _n(summary.get(f'{state}Pairs', 0)), state=state, page=1, image_page=1)}</b>"
        f"<span class=muted>{state}</span></div>"
        for state in CELL_STATES
    )
    if summary.get("budgetLeftOut"):
        stats += (
            f"<div><b>{_n(summary['budgetLeftOut'])}</b>"
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
        f'<span class="muted">{_n(summary.get("presentPairs", 0))} of {_n(wanted)} '
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
    errors = "".join(f'<li class="reason">{_e(e)}</li>' for e in sweep.get("errors") or [])
    return (
        f'<p class="muted">Last pass at {_e(sweep.get("at", ""))}{_e(took)}{_e(trigger)}. '
        f"Planned: {_e(planned)}."
        + (f" Done: {_e(done)}." if done else "")
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
        f'<label>Node<input name="node" value="{_e(query.node)}" placeholder="part of a node name"></label>'
        f'<label>Image<input name="image" value="{_e(query.image)}" placeholder="part of an image reference"></label>'
        f'<label>State<select name="state">{options}</select></label>'
        f"<button type=submit>Find</button>{clear}</form>"
    )


# --- failures -------------------------------------------------------------------------


def _failures(groups: Sequence[Mapping[str, Any]], query: ReportQuery) -> str:
    if not groups:
        matching = " match the filter" if query.filtered else ""
        return f'<p class="muted" id="failures">No failed pulls{matching}.</p>'
    rows = []
    for group in groups[:FAILURE_GROUPS_SHOWN]:
        count = group["nodeCount"]
        names = _lines(group["nodes"])
        rows.append(
            '<tr class="failure">'
            f"<td class=ref><code>{_link(query, group['image'], image=group['image'], state='failed', node='', page=1, image_page=1)}</code></td>"
            f'<td><span class="reason">{_e(group["reason"])}</span><br>'
            f'<span class="kind">{_e(group["kind"])}</span></td>'
            f'<td class="num"><details><summary>{_n(count)} node{"s" if count != 1 else ""}</summary>'
            f'<div class="names">{names}</div></details></td>'
            f'<td class="msg">{_e(str(group.get("message", ""))[:400])}</td>'
            f'<td class="num">{_e(group.get("attempts", ""))}<br>'
            f'<span class="muted">{_e(_time(group.get("retryAt")))}</span></td></tr>'
        )
    more = ""
    if len(groups) > FAILURE_GROUPS_SHOWN:
        more = (
            f'<p class="muted">{len(groups) - FAILURE_GROUPS_SHOWN} more groups: '
            f"{_link(query, 'see every failed pair in the grid', state='failed', page=1)}.</p>"
        )
    failed = sum(g["nodeCount"] for g in groups)
    return (
        f'<p class="muted">{_n(failed)} failed pairs in {_n(len(groups))} '
        f"group{'s' if len(groups) != 1 else ''} (image, kind, reason), largest first.</p>"
        '<table id="failures"><tr><th>Image</th><th>Reason, kind</th>'
        '<th class="num">Nodes</th><th>Message</th><th class="num">Attempts, next try</th>'
        f"</tr>{''.join(rows)}</table>{more}"
    )


# --- one node, one image --------------------------------------------------------------


def _dot(state: str) -> str:
    return f'<span class="dot {STATE_CLASS.get(state, "i")}"></span>{_e(state)}'


def _one_node(node: Mapping[str, Any], query: ReportQuery) -> str:
    """Every image of one node, worst first; the present ones folded into one row."""
    cells = sorted(
        (
            (image, cell)
            for image, cell in (node.get("images") or {}).items()
            if query.image_matches(image) and query.state_matches(cell.get("state", ""))
        ),
        key=lambda item: (_WORST_FIRST.get(item[1].get("state", ""), 9), item[0]),
    )
    present = [image for image, cell in cells if cell.get("state") == "present"]
    rows = "".join(
        f"<tr><td class=ref><code>{_link(query, image, image=image, node='', page=1)}</code></td>"
        f'<td class="state">{_dot(c.get("state", ""))}</td>'
        f'<td class="{"reason" if c.get("state") == "failed" else "why"}">{_e(c.get("reason", ""))}</td>'
        f'<td class="msg">{_e(c.get("message", ""))}</td><td class="num">{_e(c.get("attempts", ""))}</td>'
        f'<td class="num">{_e(_time(c.get("retryAt")))}</td></tr>'
        for image, c in cells
        if c.get("state") != "present"
    )
    if present:
        names = _lines(present)
        rows += (
            f'<tr class="present-images"><td colspan="6"><details><summary>{_n(len(present))} '
            f"image{'s' if len(present) != 1 else ''} present</summary>"
            f'<div class="names">{names}</div></details></td></tr>'
        )
    why = f" — not eligible: {_e(node.get('why', ''))}" if not node.get("eligible", True) else ""
    return (
        f'<section class="card" id="node"><h3>Node {_e(node["name"])}{why}</h3>'
        f'<p class="muted">{_n(node.get("present", 0))} of {_n(node.get("wanted", 0))} wanted images '
        f"present, {_n(node.get('pulling', 0))} pulling, {_n(node.get('failed', 0))} failed; "
        f"disk budget used {_e(format_bytes(float(node.get('budgetUsedBytes') or 0)))}"
        f"{_budget_of(node)}</p>"
        "<table><tr><th>Image</th><th>State</th><th>Reason</th><th>Message</th>"
        f'<th class="num">Attempts</th><th class="num">Next try</th></tr>{rows}</table></section>'
    )


def _one_image(image: Mapping[str, Any], query: ReportQuery) -> str:
    groups: dict[tuple[str, str], list[str]] = {}
    for node, cell in (image.get("nodes") or {}).items():
        if query.node_matches(node) and query.state_matches(cell.get("state", "")):
            groups.setdefault((cell.get("state", ""), cell.get("reason", "")), []).append(node)
    rows = "".join(
        f'<tr><td class="state">{_dot(state)}</td>'
        f'<td class="{"reason" if state == "failed" else "why"}">{_e(reason)}</td><td class="num"><details><summary>{len(nodes)} nodes</summary>'
        f'<div class="names">{_lines(nodes)}</div></details></td></tr>'
        for (state, reason), nodes in sorted(
            groups.items(), key=lambda g: (_WORST_FIRST.get(g[0][0], 9), -len(g[1]))
        )
    )
    return (
        f'<section class="card" id="image"><h3>Image <code>{_e(image["image"])}</code></h3>'
        f'<p class="muted">{_e(image.get("source", ""))}, score {_e(image.get("score", ""))}: '
        f"present on {_e(image.get('nodesPresent', 0))} of {_e(image.get('nodesWanted', 0))} "
        f"wanted nodes, {_e(image.get('nodesPulling', 0))} pulling, "
        f"{_e(image.get('nodesFailed', 0))} failed</p>"
        f'<table><tr><th>State</th><th>Reason</th><th class="num">Nodes</th></tr>{rows}</table></section>'
    )


def _single(items: Iterable[Mapping[str, Any]], key: str, text: str) -> Mapping[str, Any] | None:
    """The item named exactly `text`, else the only one matching it, else None."""
    matches = [i for i in items if text.lower() in str(i[key]).lower()]
    exact = [i for i in matches if i[key] == text]
    return exact[0] if exact else matches[0] if len(matches) == 1 else None


# --- grid -----------------------------------------------------------------------------


def _budget_of(node: Mapping[str, Any]) -> str:
    """` of 81.6 GB (diskBudget 50% of 163.2 GB)`: the budget and which limit sets it."""
    budget = node.get("budgetBytes")
    if budget is None:
        return ""
    reason = node.get("budgetReason") or ""
    return f" of {_e(format_bytes(float(budget)))}" + (f" ({_e(reason)})" if reason else "")


def _node_rank(node: Mapping[str, Any]) -> tuple[int, str]:
    """Worst first: failures, then pulls in flight, then waiting pulls, then complete."""
    if not node.get("eligible", True):
        rank = 4
    elif node.get("failed"):
        rank = 0
    elif node.get("pulling"):
        rank = 1
    elif node.get("present", 0) < node.get("wanted", 0):
        rank = 2
    else:
        rank = 3
    return rank, node["name"]


def _grid(report: Mapping[str, Any], query: ReportQuery) -> str:
    images = [
        i for i in report.get("images") or [] if i.get("wanted") and query.image_matches(i["image"])
    ]
    nodes = [n for n in report.get("nodes") or [] if query.node_matches(n["name"])]
    if query.state:
        refs = {i["image"] for i in images}
        nodes = [
            n
            for n in nodes
            if any(
                c.get("state") == query.state and ref in refs
                for ref, c in (n.get("images") or {}).items()
            )
        ]
        names = {n["name"] for n in nodes}
        images = [
            i
            for i in images
            if any(
                c.get("state") == query.state and name in names
                for name, c in (i.get("nodes") or {}).items()
            )
        ]
    if not images or not nodes:
        if not query.filtered:
            return '<p class="muted">No wanted images or no nodes yet.</p>'
        return '<p class="muted">No node and image match.</p>'
    nodes.sort(key=_node_rank)
    node_pages = -(-len(nodes) // NODES_PER_PAGE)
    image_pages = -(-len(images) // IMAGES_PER_PAGE)
    page, image_page = min(query.page, node_pages), min(query.image_page, image_pages)
    shown_nodes = nodes[(page - 1) * NODES_PER_PAGE : page * NODES_PER_PAGE]
    shown_images = images[(image_page - 1) * IMAGES_PER_PAGE : image_page * IMAGES_PER_PAGE]
    head = "".join(
        f'<th class="i" title="{_e(i["image"])}"><div>'
        f"{_link(query, _short(i['image']), image=i['image'], page=1, image_page=1)}</div></th>"
        for i in shown_images
    )
    rows = []
    for node in shown_nodes:
        cells = node.get("images") or {}
        tds = []
        for image in shown_images:
            cell = cells.get(image["image"])
            if cell is None:
                tds.append('<td class="i"></td>')
                continue
            state = cell.get("state", "ineligible")
            detail = " — ".join(str(cell[k]) for k in ("reason", "message") if cell.get(k))
            title = f' title="{_e(f"{state}: {detail}" if detail else state)}"'
            tds.append(
                f'<td class="{STATE_CLASS.get(state, "i")}"{title if state != "present" else ""}></td>'
            )
        rows.append(
            f'<tr><th class="n">{_link(query, node["name"], node=node["name"], page=1, image_page=1)}</th>'
            f'{"".join(tds)}<th class="c">{_e(node.get("present", 0))}/{_e(node.get("wanted", 0))}</th></tr>'
        )
    return (
        _pager(query, "nodes", page, node_pages, len(nodes), NODES_PER_PAGE, "page")
        + _pager(
            query, "images", image_page, image_pages, len(images), IMAGES_PER_PAGE, "image_page"
        )
        + f'<div class="scroll"><table class="grid" id="grid"><tr><th></th>{head}<th class="tail"></th></tr>'
        f"{''.join(rows)}</table></div>"
    )


def _pager(
    query: ReportQuery, what: str, page: int, pages: int, total: int, size: int, field: str
) -> str:
    if pages <= 1:
        return ""
    first, last = (page - 1) * size + 1, min(page * size, total)
    links = [f"<span>{what} {first}&ndash;{last} of {total}</span>"]
    if page > 1:
        links.append("&laquo; " + _link(query, "first", **{field: 1}))
        links.append("&lsaquo; " + _link(query, "previous", **{field: page - 1}))
    if page < pages:
        links.append(_link(query, "next", **{field: page + 1}) + " &rsaquo;")
        links.append(_link(query, "last", **{field: pages}) + " &raquo;")
    return f'<div class="pager" data-pager="{what}">{" ".join(links)}</div>'


# --- images and budget ----------------------------------------------------------------


def _images_table(report: Mapping[str, Any], query: ReportQuery) -> str:
    rows = []
    images = [i for i in report.get("images") or [] if query.image_matches(i["image"])]
    images.sort(
        key=lambda i: (not i.get("nodesFailed"), not i.get("wanted"), -float(i.get("score") or 0))
    )
    for image in images:
        wanted, present = image.get("nodesWanted", 0), image.get("nodesPresent", 0)
        status = "released" if not image.get("wanted") else f"{present}/{wanted}"
        rows.append(
            f"<tr><td class=ref><code>{_link(query, image['image'], image=image['image'], page=1, image_page=1)}</code></td>"
            f"<td>{_e(image.get('source', ''))}</td><td class=num>{_e(image.get('score', ''))}</td>"
            f"<td class=num>{_e(status)}</td><td class=num>{_e(image.get('nodesPulling', 0))}</td>"
            f"<td class=num>{_e(image.get('nodesFailed', 0))}</td>"
            f'<td class="reason">{_e(image.get("lastError", ""))}</td></tr>'
        )
    return (
        '<table id="images"><tr><th>Image</th><th>Source</th><th class=num>Score</th>'
        "<th class=num>Present / wanted nodes</th><th class=num>Pulling</th>"
        f"<th class=num>Failed</th><th>Last error</th></tr>{''.join(rows)}</table>"
    )


def _budget_table(report: Mapping[str, Any], query: ReportQuery) -> str:
    left_out = [
        b
        for b in report.get("budgetLeftOut") or []
        if query.node_matches(b.get("node", "")) and query.image_matches(b.get("image", ""))
    ]
    if not left_out:
        return '<p class="muted">Every eligible image fits its node\'s disk budget.</p>'
    rows = "".join(
        f"<tr><td>{_e(b.get('node', ''))}</td><td class=ref><code>{_e(b.get('image', ''))}</code></td>"
        f"<td class=num>{_e(format_bytes(float(b.get('sizeBytes') or 0)))}</td>"
        f"<td>{_e(b.get('why', ''))}</td></tr>"
        for b in left_out[:BUDGET_ROWS_SHOWN]
    )
    more = (
        f'<p class="muted">{len(left_out) - BUDGET_ROWS_SHOWN} more: filter by node or image, '
        "or read <code>budgetLeftOut</code> in the JSON report.</p>"
        if len(left_out) > BUDGET_ROWS_SHOWN
        else ""
    )
    return (
        "<table><tr><th>Node</th><th>Image</th><th class=num>Size</th><th>Why</th></tr>"
        f"{rows}</table>{more}"
    )


def _learning_html(report: Mapping[str, Any]) -> str:
    """What the learning bounds left out, learned images no stored pod confirmed yet, and a
    pull policy rewrite that admission undid (AlwaysPullImages)."""
    learning = report.get("learning") or {}
    lines = "".join(
        f'<p class="reason">{_e(line)}</p>' for line in learning.get("boundReached") or []
    )
    undone = (report.get("runtime") or {}).get("pullPolicyRewriteUndone")
    if undone:
        lines += (
            f'<p class="reason">Pull policy rewrite undone on {_e(undone.get("pod", ""))} '
            f"since {_e(undone.get('since', ''))}: {_e(undone.get('why', ''))}</p>"
        )
    unconfirmed = learning.get("unconfirmed") or 0
    if unconfirmed:
        lines += (
            f'<p class="muted">{_e(unconfirmed)} learned image(s) wait for a stored pod that '
            "uses them before they are prefetched.</p>"
        )
    return lines


def _sources_html(report: Mapping[str, Any]) -> str:
    """The Observed and Catalog sources: images, nodes at the image-list cap, registry errors."""
    sources = report.get("sources") or {}
    observed = sources.get("observed") or {}
    at_cap = observed.get("nodesAtImageListCap") or []
    parts = [
        f"<p>Observed: {_e(observed.get('images', 0))} images held by nodes on their own."
        + (
            f' <span class="reason">{_e(len(at_cap))} node(s) list 50 images, the kubelet\'s '
            f"default cap (raise nodeStatusMaxImages): {_e(', '.join(at_cap[:10]))}</span>"
            if at_cap
            else ""
        )
        + "</p>"
    ]
    prefixes = (sources.get("catalog") or {}).get("prefixes") or {}
    if prefixes:
        rows = "".join(
            f"<tr><td>{_e(prefix)}</td><td>{_e(state.get('images'))}</td>"
            f"<td>{_e(state.get('lastSuccess') or 'never')}</td>"
            f'<td class="reason">{_e(_source_error(state.get("lastError")))}</td></tr>'
            for prefix, state in prefixes.items()
        )
        parts.append(
            "<table><tr><th>Catalog prefix</th><th>Images</th><th>Last read</th>"
            f"<th>Last error</th></tr>{rows}</table>"
        )
    return "".join(parts)


def _source_error(error: Mapping[str, Any] | None) -> str:
    if not error:
        return ""
    return f"{error.get('kind', '')}: {error.get('message', '')} ({error.get('at', '')})"


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
        node = _single(report.get("nodes") or [], "name", query.node)
        focus += _one_node(node, query) if node else ""
    if query.image:
        image = _single(report.get("images") or [], "image", query.image)
        focus += _one_image(image, query) if image else ""
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
<span class="muted">Generated {_e(report.get("generatedAt", ""))} · <a href="{_e(json_link)}">JSON</a> · <a href="metrics">metrics</a></span></div>
{_summary(report, query)}
{_learning_html(report)}
{_find_form(query)}
<h2>Failures</h2>{_failures(failures, query)}
{focus}
<h2>Nodes &times; images</h2><p class="legend muted">{legend} · worst nodes first; hover a cell for its reason</p>
{_grid(report, query)}
<h2>Images</h2>{_images_table(report, query)}
<h2>Left out by the disk budget</h2>{_budget_table(report, query)}
<h2>Sources</h2>{_sources_html(report)}
</main></body></html>
"""
