"""The Grafana dashboard: well-formed, laid out without overlaps, and showing what the issue asks."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.manifests.render import MANIFESTS
from tests.monitoring.shipped import COMPONENT, DASHBOARD_FILE, dashboard, panels, queries

DATASOURCE = "${datasource}"


def test_the_configmap_holds_the_file_as_is() -> None:
    import json

    path = Path(MANIFESTS / COMPONENT / DASHBOARD_FILE)
    assert dashboard() == json.loads(path.read_text())


def test_dashboard_identity_and_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] == "image-sync" and board["title"] == "image-sync"
    assert board["schemaVersion"] >= 36
    [variable] = board["templating"]["list"]
    assert variable == {
        **variable,
        "name": "datasource",
        "type": "datasource",
        "query": "prometheus",
    }


def test_every_panel_queries_the_chosen_prometheus() -> None:
    for panel in panels():
        assert panel["type"] in {"stat", "timeseries", "table"}, "core panel types only"
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    everything = dashboard()["panels"]
    ids = [p["id"] for p in everything]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in everything:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x, y in itertools.product(
            range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
        ):
            assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
            cells[(x, y)] = panel["title"]


@pytest.mark.parametrize(
    ("what", "needle"),
    [
        ("coverage over time", "image_sync_prefetcher_coverage_ratio"),
        (
            "pulls started by registry",
            "by (registry) (rate(image_sync_prefetcher_pulls_started_total",
        ),
        (
            "pulls succeeded by registry",
            "by (registry) (rate(image_sync_prefetcher_pulls_succeeded_total",
        ),
        (
            "pulls failed by registry",
            "by (registry, reason) (rate(image_sync_prefetcher_pulls_failed_total",
        ),
        ("bytes by registry", "by (registry) (rate(image_sync_prefetcher_pulled_bytes_total"),
        ("time to warm new nodes", "image_sync_prefetcher_node_warm_seconds_bucket"),
        ("nodes still waiting", "image_sync_prefetcher_node_warming_since_timestamp_seconds"),
        ("sweep and pass duration", "image_sync_prefetcher_pass_seconds_bucket"),
        ("webhook request rate", "by (outcome) (rate(image_sync_webhook_requests_total"),
        ("webhook latency", "image_sync_webhook_request_duration_seconds_bucket"),
    ],
)
def test_the_dashboard_shows(what: str, needle: str) -> None:
    assert any(needle in expr for where, expr in queries().items() if where.startswith("panel")), (
        f"no panel shows {what}"
    )
