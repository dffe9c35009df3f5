"""The node x image grid of the report page, worst nodes first, paged over nodes and images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefetcher.report_markup import STATE_CLASS, escape, link, short_name
from prefetcher.report_query import ReportQuery

NODES_PER_PAGE = 50
IMAGES_PER_PAGE = 40


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


def grid_html(report: Mapping[str, Any], query: ReportQuery) -> str:
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
        f'<th class="i" title="{escape(i["image"])}"><div>'
        f"{link(query, short_name(i['image']), image=i['image'], page=1, image_page=1)}</div></th>"
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
            title = f' title="{escape(f"{state}: {detail}" if detail else state)}"'
            tds.append(
                f'<td class="{STATE_CLASS.get(state, "i")}"{title if state != "present" else ""}></td>'
            )
        rows.append(
            f'<tr><th class="n">{link(query, node["name"], node=node["name"], page=1, image_page=1)}</th>'
            f'{"".join(tds)}<th class="c">{escape(node.get("present", 0))}/{escape(node.get("wanted", 0))}</th></tr>'
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
        links.append("&laquo; " + link(query, "first", **{field: 1}))
        links.append("&lsaquo; " + link(query, "previous", **{field: page - 1}))
    if page < pages:
        links.append(link(query, "next", **{field: page + 1}) + " &rsaquo;")
        links.append(link(query, "last", **{field: pages}) + " &raquo;")
    return f'<div class="pager" data-pager="{what}">{" ".join(links)}</div>'
