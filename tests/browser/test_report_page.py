"""The report page as a person uses it, in headless Chromium with JavaScript off.

Once against a real `image-sync prefetcher` process on the simulator at the demo's size (the
GPU-cluster scenario: six nodes), with an image missing from its registry on every node; once
on a synthetic plan of 1,000 nodes x 200 images served by the same report server. Each checks
that the summary and the failures come first, a failure on many nodes is one row that opens
onto its node list, a node and an image are found through the form, and the page stays light.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.report_scale import image_ref, node_name, serve_plan, synthetic_plan
from prefetcher.report_grid import NODES_PER_PAGE
from tests.browser.browser import browser, chromium, page_weight
from tests.prefetcher.conftest import BUSYBOX, NAMESPACE, declare, install_image_sync
from tests.prefetcher.test_e2e_cli import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
NOT_FOUND = "docker.io/library/does-not-exist:1.0"
NGINX = "docker.io/library/nginx:1.27"
# What "light" means here: a page a laptop on a slow link opens at once.
LIGHT_BYTES = 400_000
LIGHT_ELEMENTS = 10_000


@pytest.fixture(autouse=True)
def _chromium() -> None:
    """Skip (or fail, in CI) before starting a cluster when there is no browser."""
    chromium()


@pytest.fixture
def demo_cluster() -> Iterator[Any]:
    """The demo's scenario at real speed, image-sync installed, and three images declared."""
    from simulator.cluster import SimCluster

    with SimCluster("gpu-cluster", speed=1.0) as cluster:
        api = cluster.api_client()
        install_image_sync(api)
        for image in (BUSYBOX, NGINX, NOT_FOUND):
            declare(api, image)
        api.close()
        yield cluster


@pytest.fixture
def prefetcher_url(demo_cluster: Any) -> Iterator[str]:
    """`image-sync prefetcher` in its own process against the simulated cluster."""
    port = free_port()
    env = {**os.environ, "POD_NAMESPACE": NAMESPACE, "IMAGE_SYNC_REGISTRIES": "docker.io/library"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagesync.cli",
            "prefetcher",
            "--kubeconfig",
            str(demo_cluster.kubeconfig),
            "--bind",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _rows(page: Any) -> list[str]:
    return [name.strip() for name in page.locator("#grid th.n").all_inner_texts()]


def _find(page: Any, **fields: str) -> None:
    """Fill the form as a person would and submit it (a plain GET: no script needed)."""
    for name, value in fields.items():
        if name == "state":
            page.select_option("select[name=state]", value)
        else:
            page.fill(f"input[name={name}]", value)
    with page.expect_navigation():
        page.click("form.find button")


def _check_order(page: Any) -> None:
    html = page.content()
    assert html.index('id="summary"') < html.index('id="failures"') < html.index('id="grid"')


def test_demo_sized_report_from_a_running_prefetcher(
    prefetcher_url: str, demo_cluster: Any
) -> None:
    nodes = demo_cluster.node_names()

    def settled() -> bool:
        try:
            report = requests.get(f"{prefetcher_url}/report", timeout=10).json()
        except (requests.RequestException, ValueError):
            return False
        groups = report["failureGroups"]
        images = {i["image"]: i for i in report["images"]}
        return (
            bool(groups)
            and groups[0]["nodeCount"] == len(nodes)
            and all(images[i]["nodesPresent"] == len(nodes) for i in (BUSYBOX, NGINX))
        )

    wait_for(
        settled, timeout=240, interval=1.0, what="busybox and nginx present, one group failing"
    )
    with browser(java_script_enabled=False) as context:
        page = context.new_page()
        assert page.goto(f"{prefetcher_url}/").status == 200
        _check_order(page)
        weight = page_weight(page)
        assert weight["bytes"] < 60_000 and weight["elements"] < 2_000, weight
        failures = page.locator("#failures tr.failure")
        assert failures.count() == 1, "one image failing on every node is one row"
        row = failures.first
        assert NOT_FOUND in row.inner_text() and "not-found" in row.inner_text()
        summary = row.locator("details summary")
        assert summary.inner_text().strip() == f"{len(nodes)} nodes"
        assert not row.locator(".names").is_visible()
        summary.click()
        assert row.locator(".names").is_visible()
        assert set(row.locator(".names").inner_text().split()) == set(nodes)
        assert len(_rows(page)) == len(nodes)

        _find(page, node=nodes[-1])
        assert f"node={nodes[-1]}" in page.url
        assert _rows(page) == [nodes[-1]]
        assert page.locator("#node h3").inner_text().startswith(f"Node {nodes[-1]}")
        assert "ErrImagePull" in page.locator("#node").inner_text()
        folded = page.locator("#node tr.present-images")
        assert folded.locator("summary").inner_text() == "2 images present"
        folded.locator("summary").click()
        assert set(folded.locator(".names").inner_text().split()) == {BUSYBOX, NGINX}

        page.goto(f"{prefetcher_url}/")
        _find(page, image="nginx")
        assert page.locator("#grid th.i").count() == 1
        assert page.locator("#image h3").inner_text() == f"Image {NGINX}"
        assert page.locator("#failures tr.failure").count() == 0


def test_report_at_1000_nodes_by_200_images() -> None:
    plan = synthetic_plan(1000, 200)
    failing = [c for c in plan.cells if c.image == image_ref(3) and c.state == "failed"]
    with serve_plan(plan) as url, browser(java_script_enabled=False) as context:
        page = context.new_page()
        assert page.goto(f"{url}/").status == 200
        _check_order(page)
        weight = page_weight(page)
        print(f"\n1,000 x 200 page: {weight}")
        assert weight["bytes"] < LIGHT_BYTES and weight["elements"] < LIGHT_ELEMENTS, weight

        # Failures first and grouped: the image missing everywhere is the first row, once.
        first = page.locator("#failures tr.failure").first
        assert image_ref(3) in first.inner_text() and "not-found" in first.inner_text()
        assert first.locator("summary").inner_text().strip() == f"{len(failing):,} nodes"
        first.locator("summary").click()
        names = first.locator(".names").inner_text().split()
        assert sorted(names) == sorted(c.node for c in failing)

        # The grid shows one page of nodes, worst first, and pages on.
        rows = _rows(page)
        assert len(rows) == NODES_PER_PAGE
        with page.expect_navigation():
            page.locator('[data-pager="nodes"] a', has_text="next").click()
        assert "page=2" in page.url
        next_rows = _rows(page)
        assert len(next_rows) == NODES_PER_PAGE and not set(rows) & set(next_rows)

        # One node, found by part of its name.
        wanted = node_name(417)
        _find(page, node="0417")
        assert _rows(page) == [wanted]
        assert page.locator("#node h3").inner_text().startswith(f"Node {wanted}")
        node = next(n for n in synthetic_plan(1000, 200).nodes if n.name == wanted)
        present = page.locator("#node tr.present-images summary").inner_text()
        assert present == f"{node.present} images present"
        assert page.locator("#node tr").count() == 1 + 200 - node.present + 1

        # One image, and the nodes where it failed.
        page.goto(f"{url}/")
        _find(page, image=image_ref(5), state="failed")
        assert page.locator("#grid th.i").count() == 1
        assert re.search(r"unauthorized", page.locator("#failures").inner_text())
        assert all(
            cls == "f"
            for cls in page.locator("#grid td").evaluate_all("tds => tds.map(t => t.className)")
        )
        assert page_weight(page)["bytes"] < LIGHT_BYTES
