"""The report: JSON shape from DESIGN.md, failures grouped, filters and pages, and an escaped,
self-contained HTML page that stays light at 1,000 nodes x 200 images."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import orjson
import pytest

from bench.report_scale import image_ref, node_name, synthetic_plan
from prefetcher.model import Plan
from prefetcher.report import SweepInfo, build_report
from prefetcher.report_cache import ReportCache
from prefetcher.report_grid import NODES_PER_PAGE
from prefetcher.report_page import render_html
from prefetcher.report_query import ReportQuery, filter_report, parse_query
from tests.prefetcher.test_core_fixtures import (
    APP,
    MISSING,
    NOW,
    PYTORCH,
    World,
    image,
    node,
    world,
)


def _failing_world() -> World:
    w = world()
    w.images.append(image(MISSING, uses=1))
    w.fail[MISSING] = ("ErrImagePull", 'failed to pull "<nope>": not found')
    return w


def test_report_has_the_contract_fields() -> None:
    w = _failing_world()
    for _ in range(12):
        w.step()
    result = w.plan()
    report = build_report(
        result, SweepInfo(started=NOW, seconds=0.25, trigger="sweep", done={"podsCreated": 3})
    )
    json.dumps(report)  # JSON-able
    assert 0.0 < report["summary"]["coverage"] < 1.0
    states = {cell["state"] for n in report["nodes"] for cell in n["images"].values()}
    assert states <= {"present", "pulling", "missing", "failed", "ineligible"}
    gpu_cell = next(n for n in report["nodes"] if n["name"] == "cpu-1")["images"][PYTORCH]
    assert gpu_cell["state"] == "ineligible" and "GPU" in gpu_cell["reason"]
    failure = report["failures"][0]
    assert failure["image"] == MISSING and failure["reason"] == "ErrImagePull"
    assert "not found" in failure["message"] and failure["kind"] == "not-found"
    assert failure["retryAt"].endswith("Z")
    by_image = {i["image"]: i for i in report["images"]}
    assert by_image[APP]["nodes"]["cpu-1"]["state"] == "present"
    assert by_image[MISSING]["lastError"]
    assert report["lastSweep"]["seconds"] == 0.25 and report["lastSweep"]["done"] == {
        "podsCreated": 3
    }


def test_html_is_escaped_self_contained_and_failures_first() -> None:
    w = _failing_world()
    for _ in range(3):
        w.step()
    page = render_html(build_report(w.plan()))
    assert page.startswith("<!doctype html>")
    assert "<nope>" not in page and "&lt;nope&gt;" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.index("Failures") < page.index("Nodes &times; images")
    assert '<td class="f" title="failed: ErrImagePull' in page and '<td class="p">' in page


def test_empty_cluster_report() -> None:
    w = World(nodes=[], images=[])
    report = build_report(w.plan())
    assert report["summary"]["coverage"] == 1.0
    assert "No wanted images" in render_html(report)


def test_budget_left_out_is_reported() -> None:
    w = World(
        nodes=[node("small", gpu=1, capacity=10_000_000_000)],
        images=[image(PYTORCH, gpu=True, size=20_400_000_000)],
    )
    w.now += timedelta(seconds=1)
    report = build_report(w.plan())
    assert report["budgetLeftOut"][0]["image"] == PYTORCH
    assert "disk budget" in report["budgetLeftOut"][0]["why"]
    assert "20.4 GB" in render_html(report)


def test_one_image_failing_everywhere_is_one_group() -> None:
    w = _failing_world()
    for _ in range(12):
        w.step()
    report = build_report(w.plan())
    failing_nodes = sorted(f["node"] for f in report["failures"])
    assert len(failing_nodes) > 1
    (group,) = report["failureGroups"]
    assert group["image"] == MISSING and group["kind"] == "not-found"
    assert group["reason"] == "ErrImagePull" and "not found" in group["message"]
    assert group["nodeCount"] == len(failing_nodes) and sorted(group["nodes"]) == failing_nodes
    assert group["retryAt"] == min(f["retryAt"] for f in report["failures"])
    page = render_html(report)
    assert page.count('<tr class="failure">') == 1
    assert f"<summary>{len(failing_nodes)} nodes</summary>" in page


def test_parse_query() -> None:
    assert parse_query("") == ReportQuery()
    query = parse_query("node=+gpu-1+&image=cuda&state=failed&page=3&imagePage=2")
    assert query == ReportQuery(node="gpu-1", image="cuda", state="failed", page=3, image_page=2)
    assert query.params(page=1) == "?node=gpu-1&image=cuda&state=failed&imagePage=2"
    assert parse_query("pairs=all&pageSize=20") == ReportQuery(pairs="all", page_size=20)
    for bad in ("state=gone", "page=0", "page=-1", "imagePage=two", "pairs=x", "pageSize=0"):
        with pytest.raises(ValueError):
            parse_query(bad)


def test_filters_narrow_the_json_and_keep_its_keys() -> None:
    w = _failing_world()
    for _ in range(12):
        w.step()
    full = build_report(w.plan())
    one = filter_report(full, ReportQuery(node="cpu-1"))
    assert set(full) <= set(one) and one["summary"] == full["summary"]
    assert [n["name"] for n in one["nodes"]] == ["cpu-1"]
    cpu_1 = next(n for n in full["nodes"] if n["name"] == "cpu-1")
    assert one["nodes"][0]["images"] == cpu_1["images"]
    assert {f["node"] for f in one["failures"]} == {"cpu-1"}
    assert all(set(i["nodes"]) == {"cpu-1"} for i in one["images"])
    failed = filter_report(full, ReportQuery(state="failed"))
    assert {i["image"] for i in failed["images"]} == {MISSING}
    assert all(c["state"] == "failed" for n in failed["nodes"] for c in n["images"].values())
    assert failed["failureGroups"] == full["failureGroups"]
    present = filter_report(full, ReportQuery(state="present", image="app"))
    assert present["failures"] == [] and present["failureGroups"] == []
    assert {i["image"] for i in present["images"]} == {APP}


# --- at 1,000 nodes x 200 images ------------------------------------------------------

LIGHT_PAGE_BYTES = 400_000


class Big(NamedTuple):
    cache: ReportCache
    plan: Plan


@pytest.fixture(scope="module")
def big() -> Big:
    return Big(ReportCache(), synthetic_plan(1000, 200))


def _page(big: Big, query: ReportQuery) -> str:
    return big.cache.html(big.plan, None, query)


def test_large_report_groups_failures_and_keeps_every_pair_when_asked(big: Big) -> None:
    body = big.cache.json(big.plan, None, ReportQuery(pairs="all"), {"runtime": {}})
    report = orjson.loads(body)
    assert sum(len(n["images"]) for n in report["nodes"]) == 200_000
    top = report["failureGroups"][0]
    assert top["image"] == image_ref(3) and top["kind"] == "not-found"
    assert top["nodeCount"] == len(top["nodes"]) > 900
    assert report["runtime"] == {}


def test_the_whole_report_is_serialized_once_per_plan_with_the_summaries_first(big: Big) -> None:
    sweep = SweepInfo(started=datetime(2026, 1, 1, tzinfo=UTC), seconds=1.5, done={"x": 1})
    every = ReportQuery(pairs="all")
    first = big.cache.json(big.plan, sweep, every, {"runtime": {"passes": 1}})
    again = big.cache.json(big.plan, None, every, {"runtime": {"passes": 2}})
    expected = {**build_report(big.plan, sweep), "runtime": {"passes": 1}}
    assert orjson.loads(first) == orjson.loads(orjson.dumps(expected, default=str))
    assert orjson.loads(again)["lastSweep"] == orjson.loads(
        orjson.dumps(build_report(big.plan)["lastSweep"])
    )
    assert orjson.loads(again)["runtime"] == {"passes": 2}
    assert list(orjson.loads(first))[:4] == ["generatedAt", "summary", "lastSweep", "runtime"]
    assert first.index(b'"runtime"') < 2_000 < first.index(b'"nodes":[')


def test_large_json_holds_every_summary_and_one_page_of_pairs(big: Big) -> None:
    """Past FULL_PAIRS pairs /report holds the summaries and the pairs of 100 nodes; the
    pages together hold every pair once, as `pairs=all` does."""
    whole = orjson.loads(big.cache.json(big.plan, None, ReportQuery(pairs="all"), {}))
    first = orjson.loads(big.cache.json(big.plan, None, ReportQuery(), {"runtime": {}}))
    assert list(first)[:3] == ["generatedAt", "summary", "pairs"]
    assert first["summary"] == whole["summary"] and first["runtime"] == {}
    assert first["failureGroups"] == whole["failureGroups"]
    assert [n["name"] for n in first["nodes"]] == [n["name"] for n in whole["nodes"]]
    assert [{**n, "images": {}} for n in first["nodes"] if "images" in n][:1] == [
        {**whole["nodes"][0], "images": {}}
    ]
    assert all("nodes" not in i for i in first["images"])
    assert first["pairs"] == {
        "shown": "page",
        "pairs": 200_000,
        "nodes": 1000,
        "page": 1,
        "pageSize": 100,
        "pages": 10,
        "next": "/report?page=2",
        "all": "/report?pairs=all",
    }
    cells: dict[tuple[str, str], object] = {}
    failures = []
    link: str | None = "/report"
    while link:
        query = parse_query(link.partition("?")[2])
        page = orjson.loads(big.cache.json(big.plan, None, query, {}))
        for entry in page["nodes"]:
            for ref, cell in (entry.get("images") or {}).items():
                assert (entry["name"], ref) not in cells
                cells[(entry["name"], ref)] = cell
        failures += page["failures"]
        link = page["pairs"]["next"]
    every = {(n["name"], i): c for n in whole["nodes"] for i, c in n["images"].items()}
    assert cells == every

    def order(f: dict[str, str]) -> tuple[str, str]:
        return (f["image"], f["node"])

    assert sorted(failures, key=order) == whole["failures"]
    assert len(first["failures"]) < len(whole["failures"])
    summaries = orjson.loads(big.cache.json(big.plan, None, ReportQuery(pairs="none"), {}))
    assert all("images" not in n for n in summaries["nodes"]) and summaries["failures"] == []
    one = orjson.loads(big.cache.json(big.plan, None, ReportQuery(node=node_name(17)), {}))
    assert "pairs" not in one and len(one["nodes"][0]["images"]) == 200  # few pairs: all


def test_a_small_report_is_whole_unless_a_page_is_asked_for() -> None:
    w = _failing_world()
    for _ in range(12):
        w.step()
    plan, cache = w.plan(), ReportCache()
    whole = orjson.loads(cache.json(plan, None, ReportQuery(), {}))
    assert "pairs" not in whole
    assert whole == orjson.loads(orjson.dumps(build_report(plan), default=str))
    paged = orjson.loads(cache.json(plan, None, ReportQuery(pairs="page", page_size=1), {}))
    assert [n["name"] for n in paged["nodes"] if "images" in n] == [whole["nodes"][0]["name"]]
    assert paged["pairs"]["pages"] == len(whole["nodes"])
    assert paged["pairs"]["next"] == "/report?page=2&pairs=page&pageSize=1"


def test_large_page_is_light_and_shows_failures_first(big: Big) -> None:
    page = _page(big, ReportQuery())
    assert len(page.encode()) < LIGHT_PAGE_BYTES
    assert page.index('id="summary"') < page.index('id="failures"') < page.index('id="grid"')
    assert page.count("<td") < 60 * (NODES_PER_PAGE + 1) * 12
    first_row = page[page.index('<tr class="failure">') :]
    assert image_ref(3) in first_row[: first_row.index("</tr>")]
    rows = re.findall(r'<tr><th class="n">.*?</tr>', page)
    assert len(rows) == NODES_PER_PAGE
    assert 'class="f"' in rows[0], "the worst nodes come first"
    pager = re.search(r'data-pager="nodes">(.*?)</div>', page)
    assert pager and "next</a>" in pager[1] and "nodes 1&ndash;50 of 1000" in pager[1]


def test_large_page_finds_one_node_and_one_image(big: Big) -> None:
    name = node_name(17)
    page = _page(big, ReportQuery(node=name))
    assert len(page.encode()) < LIGHT_PAGE_BYTES
    assert f"<h3>Node {name}" in page
    assert len(re.findall(r'<tr><th class="n">', page)) == 1
    image = image_ref(42)
    page = _page(big, ReportQuery(image=image))
    assert "<h3>Image <code>" + image in page
    assert len(re.findall(r'<th class="i"', page)) == 1
    last = _page(big, ReportQuery(page=20))
    assert len(re.findall(r'<tr><th class="n">', last)) == NODES_PER_PAGE
    pager = re.search(r'data-pager="nodes">(.*?)</div>', last)
    assert pager and "next</a>" not in pager[1] and "previous</a>" in pager[1]
    assert "nodes 951&ndash;1000 of 1000" in pager[1]


def test_html_shows_the_sources_and_nodes_at_the_image_list_cap() -> None:
    report = build_report(World(nodes=[], images=[]).plan())
    report["sources"] = {
        "observed": {"images": 3, "nodesAtImageListCap": ["cpu-9"]},
        "catalog": {
            "prefixes": {
                "harbor.example.internal/library": {
                    "images": None,
                    "lastSuccess": None,
                    "lastError": {"kind": "unauthorized", "message": "HTTP 401 <x>", "at": "t"},
                }
            }
        },
    }
    page = render_html(report)
    assert "cpu-9" in page and "nodeStatusMaxImages" in page
    assert "harbor.example.internal/library" in page and "unauthorized: HTTP 401 &lt;x&gt;" in page


def test_passes_prepare_reports_only_while_someone_reads_them() -> None:
    from prefetcher.report_cache import READERS_WINDOW

    w = world()
    first = w.plan()
    w.step()
    second = w.plan()
    cache = ReportCache()
    cache.prepare(first)
    assert cache._plan is None  # nobody has read a report: nothing built
    assert orjson.loads(cache.json(first, None, ReportQuery(), {}))["nodes"]  # built for it
    cache.prepare(second)
    assert cache._plan is second and cache._head_json  # a reader: built and serialized
    cache._read_at -= READERS_WINDOW + 1  # the reader went away
    cache.prepare(first)
    assert cache._plan is None and not cache._body  # let go
    page = cache.html(first, None, ReportQuery())
    assert 'id="summary"' in page and cache._plan is first
