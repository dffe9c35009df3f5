"""`/report` at any size: every summary first, the (node, image) pairs a page of nodes at a time.

At 1,000 nodes x 200 images the whole report is 22 MiB of JSON, 200,000 pairs that nobody
reads at once and that a poller fetched every time. A report of more than FULL_PAIRS pairs
is answered with every summary (the cluster's, each node's and each image's counts, the
failures grouped) and the pairs of one page of nodes (`?page=`, `?pageSize=`); `?pairs=all`
gives the whole report as before, at any size, and `?pairs=none` the summaries alone. A
smaller report is answered whole, as it always was (`?pairs=page` pages it too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefetcher.report_query import (
    JSON_PAGE_SIZE,
    PAIRS_ALL,
    PAIRS_NONE,
    PAIRS_PAGE,
    ReportQuery,
)

# The most pairs /report holds unless asked for more (100 nodes x 200 images): up to it the
# whole report is a few MB and is answered as it always was.
FULL_PAIRS = 20_000
PAIRS_KEY = "pairs"


def pair_count(report: Mapping[str, Any]) -> int:
    """The (node, image) pairs the report holds."""
    return sum(len(node.get("images") or ()) for node in report.get("nodes") or ())


def pairs_shown(query: ReportQuery, pairs: int) -> str:
    """Which pairs the answer holds: what the query asked, else every pair of a small
    report and a page of a large one."""
    if query.pairs:
        return query.pairs
    return PAIRS_ALL if pairs <= FULL_PAIRS else PAIRS_PAGE


def _without(entry: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != key}


def paged_report(report: Mapping[str, Any], query: ReportQuery, pairs: int) -> dict[str, Any]:
    """`report` with every summary and the pairs of one page of its nodes (none with
    `pairs=none`): the page's nodes keep their `images`, the other nodes and every image
    go without their pairs (`images[].nodes`); `failures`, `budgetLeftOut` and
    `pullsStarted` (a puller lists its images) hold the page's nodes' entries. `pairs`
    says what was left out and links the next page."""
    nodes = report.get("nodes") or []
    size = query.page_size
    pages = max(1, -(-len(nodes) // size))
    first = (query.page - 1) * size
    paging = query.pairs != PAIRS_NONE
    shown = {n["name"] for n in nodes[first : first + size]} if paging else set()
    section: dict[str, Any] = {
        "shown": PAIRS_PAGE if paging else PAIRS_NONE,
        "pairs": pairs,
        "nodes": len(nodes),
        "page": query.page if paging else None,
        "pageSize": size if paging else None,
        "pages": pages,
        "next": (
            "/report" + query.params(page=query.page + 1) if paging and query.page < pages else None
        ),
        "all": "/report" + query.params(page=1, pairs=PAIRS_ALL, page_size=JSON_PAGE_SIZE),
    }
    head = {k: report[k] for k in ("generatedAt", "summary") if k in report}
    paged = {
        "failureGroups": report.get("failureGroups") or [],
        "nodes": [n if n["name"] in shown else _without(n, "images") for n in nodes],
        "images": [_without(i, "nodes") for i in report.get("images") or []],
        "failures": [f for f in report.get("failures") or [] if f["node"] in shown],
        "budgetLeftOut": [b for b in report.get("budgetLeftOut") or [] if b["node"] in shown],
        "pullsStarted": [p for p in report.get("pullsStarted") or [] if p["node"] in shown],
    }
    rest = {k: v for k, v in report.items() if k not in head and k not in paged}
    return {**head, PAIRS_KEY: section, **rest, **paged}
