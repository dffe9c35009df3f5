"""The report: JSON shape from DESIGN.md, and an escaped, self-contained HTML page."""

from __future__ import annotations

import json
from datetime import timedelta

from prefetcher.report import SweepInfo, build_report, render_html
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
    assert 'class="failed"' in page and 'class="present"' in page


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
