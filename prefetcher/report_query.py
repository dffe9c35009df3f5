"""What a reader asked the report for: a node, an image, a state, a page of the grid.

At 1,000 nodes x 200 images nobody reads every pair: `/report?node=gpu-7` or
`/?image=pytorch&state=failed` narrows both the JSON and the page to what a person looks
for. Node and image filters match a case-insensitive part of the name; `state` is one
cell state. The summary always covers the whole cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlencode

from prefetcher.model import CELL_STATES

MAX_PAGE = 100_000
# What `/report` holds of the (node, image) pairs: every one, a page of nodes, or none.
PAIRS_ALL, PAIRS_PAGE, PAIRS_NONE = "all", "page", "none"
PAIRS = (PAIRS_ALL, PAIRS_PAGE, PAIRS_NONE)
JSON_PAGE_SIZE = 100  # nodes a page of /report holds by default
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ReportQuery:
    """Filters (empty: everything) and the page of the grid's nodes and image columns."""

    node: str = ""
    image: str = ""
    state: str = ""
    page: int = 1
    image_page: int = 1
    pairs: str = ""  # /report: PAIRS_*, "" for the default (every pair on a small cluster)
    page_size: int = JSON_PAGE_SIZE  # /report: nodes a page holds

    @property
    def filtered(self) -> bool:
        return bool(self.node or self.image or self.state)

    def node_matches(self, name: str) -> bool:
        return not self.node or self.node.lower() in name.lower()

    def image_matches(self, image: str) -> bool:
        return not self.image or self.image.lower() in image.lower()

    def state_matches(self, state: str) -> bool:
        return not self.state or state == self.state

    def params(self, **changes: Any) -> str:
        """This query (with `changes`) as a URL query string, defaults left out."""
        query = replace(self, **changes)
        pairs = [
            ("node", query.node),
            ("image", query.image),
            ("state", query.state),
            ("page", query.page if query.page != 1 else ""),
            ("imagePage", query.image_page if query.image_page != 1 else ""),
            ("pairs", query.pairs),
            ("pageSize", query.page_size if query.page_size != JSON_PAGE_SIZE else ""),
        ]
        return "?" + urlencode([(k, v) for k, v in pairs if v != ""])


def parse_query(query_string: str) -> ReportQuery:
    """`node=…&image=…&state=…&page=…&imagePage=…&pairs=…&pageSize=…` → ReportQuery;
    ValueError when malformed."""
    fields = {k: v[-1].strip() for k, v in parse_qs(query_string, keep_blank_values=True).items()}
    state = fields.get("state", "")
    if state and state not in CELL_STATES:
        raise ValueError(f"state must be one of {', '.join(CELL_STATES)}, got {state!r}")
    pairs = fields.get("pairs", "")
    if pairs and pairs not in PAIRS:
        raise ValueError(f"pairs must be one of {', '.join(PAIRS)}, got {pairs!r}")
    size = fields.get("pageSize", "")
    if size and not (size.isdigit() and 1 <= int(size) <= MAX_PAGE_SIZE):
        raise ValueError(f"pageSize is a number from 1 to {MAX_PAGE_SIZE}, got {size!r}")
    return ReportQuery(
        node=fields.get("node", "")[:253],
        image=fields.get("image", "")[:512],
        state=state,
        page=_page(fields.get("page", "")),
        image_page=_page(fields.get("imagePage", "")),
        pairs=pairs,
        page_size=int(size) if size else JSON_PAGE_SIZE,
    )


def _page(text: str) -> int:
    if not text:
        return 1
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise ValueError(f"a page is a number from 1, got {text!r}")
    return int(text)


def filter_report(report: Mapping[str, Any], query: ReportQuery) -> dict[str, Any]:
    """The report narrowed to the nodes, images and cell state asked for (same keys).

    A node or image stays when its name matches and, with a state filter, when one of its
    cells (among the matching images or nodes) is in that state; its cells are narrowed the
    same way. `filter` echoes the query.
    """
    if not query.filtered:
        return dict(report)

    def cells(by_name: Mapping[str, Any], name_matches: Any) -> dict[str, Any]:
        return {
            name: cell
            for name, cell in by_name.items()
            if name_matches(name) and query.state_matches(cell.get("state", ""))
        }

    nodes = []
    for node in report.get("nodes") or []:
        if query.node_matches(node["name"]):
            kept = cells(node.get("images") or {}, query.image_matches)
            if kept or (not query.state and not query.image):
                nodes.append({**node, "images": kept})
    images = []
    for image in report.get("images") or []:
        if query.image_matches(image["image"]):
            kept = cells(image.get("nodes") or {}, query.node_matches)
            if kept or (not query.state and not query.node):
                images.append({**image, "nodes": kept})

    def pair(entry: Mapping[str, Any]) -> bool:
        return query.node_matches(entry["node"]) and query.image_matches(entry["image"])

    return {
        **report,
        "filter": {"node": query.node, "image": query.image, "state": query.state},
        "failures": [
            f for f in report.get("failures") or [] if pair(f) and query.state_matches("failed")
        ],
        "failureGroups": filter_groups(report.get("failureGroups") or [], query),
        "nodes": nodes,
        "images": images,
        "budgetLeftOut": [b for b in report.get("budgetLeftOut") or [] if pair(b)],
        "pullsStarted": [
            p
            for p in report.get("pullsStarted") or []
            if query.node_matches(p["node"]) and any(query.image_matches(i) for i in p["images"])
        ],
    }


def filter_groups(groups: Iterable[Mapping[str, Any]], query: ReportQuery) -> list[dict[str, Any]]:
    """Failure groups of the matching images, each narrowed to its matching nodes."""
    if not query.state_matches("failed"):
        return []
    out = []
    for group in groups:
        if query.image_matches(group["image"]):
            names = [n for n in group["nodes"] if query.node_matches(n)]
            if names:
                out.append({**group, "nodeCount": len(names), "nodes": names})
    return out
