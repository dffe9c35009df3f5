"""The report page's close-ups: every image of one node, every node of one image."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prefetcher.budget import format_bytes
from prefetcher.report_markup import (
    WORST_FIRST,
    escape,
    link,
    name_list,
    spaced_time,
    state_dot,
    thousands,
)
from prefetcher.report_query import ReportQuery


def one_node_html(node: Mapping[str, Any], query: ReportQuery) -> str:
    """Every image of one node, worst first; the present ones folded into one row."""
    cells = sorted(
        (
            (image, cell)
            for image, cell in (node.get("images") or {}).items()
            if query.image_matches(image) and query.state_matches(cell.get("state", ""))
        ),
        key=lambda item: (WORST_FIRST.get(item[1].get("state", ""), 9), item[0]),
    )
    present = [image for image, cell in cells if cell.get("state") == "present"]
    rows = "".join(
        f"<tr><td class=ref><code>{link(query, image, image=image, node='', page=1)}</code></td>"
        f'<td class="state">{state_dot(c.get("state", ""))}</td>'
        f'<td class="{"reason" if c.get("state") == "failed" else "why"}">{escape(c.get("reason", ""))}</td>'
        f'<td class="msg">{escape(c.get("message", ""))}</td><td class="num">{escape(c.get("attempts", ""))}</td>'
        f'<td class="num">{escape(spaced_time(c.get("retryAt")))}</td></tr>'
        for image, c in cells
        if c.get("state") != "present"
    )
    if present:
        names = name_list(present)
        rows += (
            f'<tr class="present-images"><td colspan="6"><details><summary>{thousands(len(present))} '
            f"image{'s' if len(present) != 1 else ''} present</summary>"
            f'<div class="names">{names}</div></details></td></tr>'
        )
    why = (
        f" — not eligible: {escape(node.get('why', ''))}" if not node.get("eligible", True) else ""
    )
    return (
        f'<section class="card" id="node"><h3>Node {escape(node["name"])}{why}</h3>'
        f'<p class="muted">{thousands(node.get("present", 0))} of {thousands(node.get("wanted", 0))} wanted images '
        f"present, {thousands(node.get('pulling', 0))} pulling, {thousands(node.get('failed', 0))} failed; "
        f"disk budget used {escape(format_bytes(float(node.get('budgetUsedBytes') or 0)))}"
        f"{_budget_of(node)}</p>"
        "<table><tr><th>Image</th><th>State</th><th>Reason</th><th>Message</th>"
        f'<th class="num">Attempts</th><th class="num">Next try</th></tr>{rows}</table></section>'
    )


def one_image_html(image: Mapping[str, Any], query: ReportQuery) -> str:
    groups: dict[tuple[str, str], list[str]] = {}
    for node, cell in (image.get("nodes") or {}).items():
        if query.node_matches(node) and query.state_matches(cell.get("state", "")):
            groups.setdefault((cell.get("state", ""), cell.get("reason", "")), []).append(node)
    rows = "".join(
        f'<tr><td class="state">{state_dot(state)}</td>'
        f'<td class="{"reason" if state == "failed" else "why"}">{escape(reason)}</td><td class="num"><details><summary>{len(nodes)} nodes</summary>'
        f'<div class="names">{name_list(nodes)}</div></details></td></tr>'
        for (state, reason), nodes in sorted(
            groups.items(), key=lambda g: (WORST_FIRST.get(g[0][0], 9), -len(g[1]))
        )
    )
    return (
        f'<section class="card" id="image"><h3>Image <code>{escape(image["image"])}</code></h3>'
        f'<p class="muted">{escape(image.get("source", ""))}, score {escape(image.get("score", ""))}: '
        f"present on {escape(image.get('nodesPresent', 0))} of {escape(image.get('nodesWanted', 0))} "
        f"wanted nodes, {escape(image.get('nodesPulling', 0))} pulling, "
        f"{escape(image.get('nodesFailed', 0))} failed</p>"
        f'<table><tr><th>State</th><th>Reason</th><th class="num">Nodes</th></tr>{rows}</table></section>'
    )


def single_match(
    items: Iterable[Mapping[str, Any]], key: str, text: str
) -> Mapping[str, Any] | None:
    """The item named exactly `text`, else the only one matching it, else None."""
    matches = [i for i in items if text.lower() in str(i[key]).lower()]
    exact = [i for i in matches if i[key] == text]
    return exact[0] if exact else matches[0] if len(matches) == 1 else None


def _budget_of(node: Mapping[str, Any]) -> str:
    """` of 81.6 GB (diskBudget 50% of 163.2 GB)`: the budget and which limit sets it."""
    budget = node.get("budgetBytes")
    if budget is None:
        return ""
    reason = node.get("budgetReason") or ""
    return f" of {escape(format_bytes(float(budget)))}" + (f" ({escape(reason)})" if reason else "")
