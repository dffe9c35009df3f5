"""The report page's fleet-wide sections: failures, images, disk budget, learning, sources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefetcher.budget import format_bytes
from prefetcher.report_markup import escape, link, name_list, spaced_time, thousands
from prefetcher.report_query import ReportQuery

FAILURE_GROUPS_SHOWN = 25
BUDGET_ROWS_SHOWN = 100


def failures_html(groups: Sequence[Mapping[str, Any]], query: ReportQuery) -> str:
    if not groups:
        matching = " match the filter" if query.filtered else ""
        return f'<p class="muted" id="failures">No failed pulls{matching}.</p>'
    rows = []
    for group in groups[:FAILURE_GROUPS_SHOWN]:
        count = group["nodeCount"]
        names = name_list(group["nodes"])
        rows.append(
            '<tr class="failure">'
            f"<td class=ref><code>{link(query, group['image'], image=group['image'], state='failed', node='', page=1, image_page=1)}</code></td>"
            f'<td><span class="reason">{escape(group["reason"])}</span><br>'
            f'<span class="kind">{escape(group["kind"])}</span></td>'
            f'<td class="num"><details><summary>{thousands(count)} node{"s" if count != 1 else ""}</summary>'
            f'<div class="names">{names}</div></details></td>'
            f'<td class="msg">{escape(str(group.get("message", ""))[:400])}</td>'
            f'<td class="num">{escape(group.get("attempts", ""))}<br>'
            f'<span class="muted">{escape(spaced_time(group.get("retryAt")))}</span></td></tr>'
        )
    more = ""
    if len(groups) > FAILURE_GROUPS_SHOWN:
        more = (
            f'<p class="muted">{len(groups) - FAILURE_GROUPS_SHOWN} more groups: '
            f"{link(query, 'see every failed pair in the grid', state='failed', page=1)}.</p>"
        )
    failed = sum(g["nodeCount"] for g in groups)
    return (
        f'<p class="muted">{thousands(failed)} failed pairs in {thousands(len(groups))} '
        f"group{'s' if len(groups) != 1 else ''} (image, kind, reason), largest first.</p>"
        '<table id="failures"><tr><th>Image</th><th>Reason, kind</th>'
        '<th class="num">Nodes</th><th>Message</th><th class="num">Attempts, next try</th>'
        f"</tr>{''.join(rows)}</table>{more}"
    )


def images_table(report: Mapping[str, Any], query: ReportQuery) -> str:
    rows = []
    images = [i for i in report.get("images") or [] if query.image_matches(i["image"])]
    images.sort(
        key=lambda i: (not i.get("nodesFailed"), not i.get("wanted"), -float(i.get("score") or 0))
    )
    for image in images:
        wanted, present = image.get("nodesWanted", 0), image.get("nodesPresent", 0)
        status = "released" if not image.get("wanted") else f"{present}/{wanted}"
        rows.append(
            f"<tr><td class=ref><code>{link(query, image['image'], image=image['image'], page=1, image_page=1)}</code></td>"
            f"<td>{escape(image.get('source', ''))}</td><td class=num>{escape(image.get('score', ''))}</td>"
            f"<td class=num>{escape(status)}</td><td class=num>{escape(image.get('nodesPulling', 0))}</td>"
            f"<td class=num>{escape(image.get('nodesFailed', 0))}</td>"
            f'<td class="reason">{escape(image.get("lastError", ""))}</td></tr>'
        )
    return (
        '<table id="images"><tr><th>Image</th><th>Source</th><th class=num>Score</th>'
        "<th class=num>Present / wanted nodes</th><th class=num>Pulling</th>"
        f"<th class=num>Failed</th><th>Last error</th></tr>{''.join(rows)}</table>"
    )


def budget_table(report: Mapping[str, Any], query: ReportQuery) -> str:
    left_out = [
        b
        for b in report.get("budgetLeftOut") or []
        if query.node_matches(b.get("node", "")) and query.image_matches(b.get("image", ""))
    ]
    if not left_out:
        return '<p class="muted">Every eligible image fits its node\'s disk budget.</p>'
    rows = "".join(
        f"<tr><td>{escape(b.get('node', ''))}</td><td class=ref><code>{escape(b.get('image', ''))}</code></td>"
        f"<td class=num>{escape(format_bytes(float(b.get('sizeBytes') or 0)))}</td>"
        f"<td>{escape(b.get('why', ''))}</td></tr>"
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


def learning_html(report: Mapping[str, Any]) -> str:
    """What the learning bounds left out, learned images no stored pod confirmed yet, and a
    pull policy rewrite that admission undid (AlwaysPullImages)."""
    learning = report.get("learning") or {}
    lines = "".join(
        f'<p class="reason">{escape(line)}</p>' for line in learning.get("boundReached") or []
    )
    undone = (report.get("runtime") or {}).get("pullPolicyRewriteUndone")
    if undone:
        lines += (
            f'<p class="reason">Pull policy rewrite undone on {escape(undone.get("pod", ""))} '
            f"since {escape(undone.get('since', ''))}: {escape(undone.get('why', ''))}</p>"
        )
    unconfirmed = learning.get("unconfirmed") or 0
    if unconfirmed:
        lines += (
            f'<p class="muted">{escape(unconfirmed)} learned image(s) wait for a stored pod that '
            "uses them before they are prefetched.</p>"
        )
    return lines


def sources_html(report: Mapping[str, Any]) -> str:
    """The Observed and Catalog sources: images, nodes at the image-list cap, registry errors."""
    sources = report.get("sources") or {}
    observed = sources.get("observed") or {}
    at_cap = observed.get("nodesAtImageListCap") or []
    parts = [
        f"<p>Observed: {escape(observed.get('images', 0))} images held by nodes on their own."
        + (
            f' <span class="reason">{escape(len(at_cap))} node(s) list 50 images, the kubelet\'s '
            f"default cap (raise nodeStatusMaxImages): {escape(', '.join(at_cap[:10]))}</span>"
            if at_cap
            else ""
        )
        + "</p>"
    ]
    prefixes = (sources.get("catalog") or {}).get("prefixes") or {}
    if prefixes:
        rows = "".join(
            f"<tr><td>{escape(prefix)}</td><td>{escape(state.get('images'))}</td>"
            f"<td>{escape(state.get('lastSuccess') or 'never')}</td>"
            f'<td class="reason">{escape(_source_error(state.get("lastError")))}</td></tr>'
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
