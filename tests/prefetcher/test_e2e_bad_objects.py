"""One bad object, or a defect that fails every pass, never hides behind a green /healthz."""

from __future__ import annotations

import json
from typing import Any

import requests
from kubernetes import client

from prefetcher import observe
from tests.prefetcher.conftest import SMALL, Running, declare, report, sim_config, untyped
from tests.waiting import wait_for


def test_absurd_quantities_are_unknown_not_fatal() -> None:
    assert observe.parse_quantity("1e400") is None
    assert observe.parse_quantity("-1e400") is None
    assert observe.parse_quantity("9" * 400) is None
    assert observe.parse_quantity("100Gi") == 100 * 2**30
    assert observe.parse_quantity("1500m") == 1.5
    assert observe.parse_quantity("not a size") is None
    node = observe.node_info(
        {
            "metadata": {
                "name": "n1",
                "annotations": {"image-sync.io/image-fs-capacity": "1e400"},
            },
            "status": {"capacity": {"ephemeral-storage": "100Gi"}},
        }
    )
    assert node.image_fs_capacity == 100 * 2**30  # the annotation is ignored, not fatal


def test_a_node_with_an_absurd_annotation_does_not_stop_the_others(
    sim: Any, prefetchers: Running
) -> None:
    api = sim.api_client()
    node = sim.node_names()[0]
    untyped(client.CoreV1Api(api)).patch_node(
        node, {"metadata": {"annotations": {"image-sync.io/image-fs-capacity": "1e400"}}}
    )
    declare(api, SMALL)
    prefetcher = prefetchers.start()
    wait_for(
        lambda: report(prefetcher)["summary"]["coverage"] == 1.0,
        timeout=120,
        interval=0.5,
        what="coverage 1.0",
    )


def test_an_object_that_cannot_be_read_is_skipped_and_reported(sim: Any) -> None:
    from prefetcher.__main__ import Prefetcher

    api = sim.api_client()
    nodes = untyped(client.CoreV1Api(api)).list_node(_preload_content=False)
    objs = json.loads(nodes.data)["items"]
    # Not started: no pass runs beside this one, so what it records stays put.
    prefetcher = Prefetcher(api, sim_config(), bind=None)
    controller = prefetcher.controller

    def picky(obj: Any) -> Any:
        if obj["metadata"]["name"] == objs[0]["metadata"]["name"]:
            raise OverflowError("(34, 'Numerical result out of range')")
        return observe.node_info(obj)

    read = controller._converted("Node", objs, picky)
    assert [n.name for n in read] == [o["metadata"]["name"] for o in objs[1:]]
    bad = prefetcher.runtime()["badObjects"]["Node"]
    assert list(bad) == [objs[0]["metadata"]["name"]]
    assert "OverflowError" in bad[objs[0]["metadata"]["name"]]
    assert (
        prefetcher.metrics.registry.get_sample_value(
            "image_sync_prefetcher_bad_objects", {"kind": "Node"}
        )
        == 1.0
    )
    # Once the object reads again, it is no longer listed.
    controller._converted("Node", objs, observe.node_info)
    assert "Node" not in prefetcher.runtime()["badObjects"]


def test_passes_that_keep_failing_make_healthz_fail(sim: Any) -> None:
    def broken(snapshot: Any, config: Any) -> Any:
        raise RuntimeError("a defect in planning")

    running = Running(sim)
    try:
        prefetcher = running.start(sim_config(pass_coalesce=1.0), plan_fn=broken)
        url = f"http://127.0.0.1:{prefetcher.server.port}/healthz"
        # Each failed pass retries after RETRY_PASS_MAX; new triggers bring the next sooner.
        api = sim.api_client()
        for index in range(3):
            declare(api, f"harbor.example.internal/library/app:bad-{index}")
            failed = index + 1
            wait_for(
                lambda failed=failed: prefetcher.controller.failing_passes >= failed,  # type: ignore[misc]
                timeout=120,
                interval=0.2,
                what=f"{failed} failed passes",
            )

        def unhealthy() -> str:
            response = requests.get(url, timeout=10)
            return response.text if response.status_code == 503 else ""

        assert "passes failed" in wait_for(unhealthy, timeout=60, what="/healthz 503")
    finally:
        running.stop_all()
