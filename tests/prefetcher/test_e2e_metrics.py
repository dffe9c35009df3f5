"""The prefetcher's /metrics on the simulator: what the alerts and the dashboard read, checked by promtool.

One run walks through what the alerts watch: passes that fail while every pod create is
refused, pulls counted per registry once they are allowed, an image that fails on every node,
a joining node that waits for it, and that node turning warm once the image is withdrawn.
"""

from __future__ import annotations

from typing import Any

import requests
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from imagesync.cachedimage import object_name
from tests import promtool
from tests.prefetcher.conftest import (
    CUDA,
    GPU_SELECTOR,
    POD_NAMESPACE,
    SMALL,
    Running,
    declare,
    sim_config,
    untyped,
)
from tests.waiting import wait_for

P = "image_sync_prefetcher"
MISSING = "harbor.example.internal/library/does-not-exist:1.0"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(prefetcher: Any) -> str:
    answer = requests.get(f"http://127.0.0.1:{prefetcher.server.port}/metrics", timeout=30)
    answer.raise_for_status()
    return answer.text


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_metrics_follow_failures_pulls_and_warming(sim: Any, prefetchers: Running) -> None:
    from simulator.apiserver import FaultRule

    api = sim.api_client()
    declare(api, SMALL)
    declare(api, CUDA, GPU_SELECTOR)
    declare(api, MISSING)
    sim.server.set_faults(
        [FaultRule(path=f"/api/v1/namespaces/{POD_NAMESPACE}/pods", verbs=("create",), status=500)],
        seed=1,
    )
    prefetcher = prefetchers.start(sim_config(write_workers=4))
    try:
        failed = wait_for(
            lambda: (
                total(parse(scrape(prefetcher)), f"{P}_pass_failures_total", reason="api-errors")
                and parse(scrape(prefetcher))
            ),
            timeout=120,
            interval=0.2,
            what="a pass ended by refused creates",
        )
    finally:
        sim.server.clear_faults()
    assert total(failed, f"{P}_last_successful_pass_timestamp_seconds") == 0
    assert total(failed, f"{P}_leader") == 1

    def pulled() -> Samples | None:
        s = parse(scrape(prefetcher))
        done = (
            total(s, f"{P}_pulls_succeeded_total", registry="harbor.example.internal") >= 6
            and total(s, f"{P}_pulls_succeeded_total", registry="nvcr.io") >= 2
            and total(s, f"{P}_image_failed_nodes", image=MISSING) == 6
        )
        return s if done else None

    s = wait_for(pulled, timeout=180, interval=0.5, what="pulls done and the missing image failing")
    assert total(s, f"{P}_pulls_started_total", registry="nvcr.io") >= 2
    assert total(s, f"{P}_pulled_bytes_total", registry="nvcr.io") > 0
    assert total(s, f"{P}_pulls_failed_total", registry="harbor.example.internal") >= 6
    assert total(s, f"{P}_last_successful_pass_timestamp_seconds") > 0
    assert not [k for k in s if k[0] == f"{P}_node_warming_since_timestamp_seconds"], (
        "nodes there from the start are not 'joining'"
    )

    joined_at = sim.clock.now()
    node = sim.add_node("cpu")
    waiting = wait_for(
        lambda: total(
            parse(scrape(prefetcher)), f"{P}_node_warming_since_timestamp_seconds", node=node
        ),
        timeout=120,
        interval=0.2,
        what="the joining node shown as waiting",
    )
    assert joined_at <= waiting <= sim.clock.now()

    untyped(client.CustomObjectsApi(api)).delete_cluster_custom_object(
        "image-sync.io", "v1alpha1", "cachedimages", object_name(MISSING)
    )

    def warm() -> str | None:
        text = scrape(prefetcher)
        s = parse(text)
        gone = not [
            k for k in s if k[0].endswith(("warming_since_timestamp_seconds", "failed_nodes"))
        ]
        return text if gone and total(s, f"{P}_node_warm_seconds_count") >= 1 else None

    text = wait_for(warm, timeout=120, interval=0.5, what="the node warm, the failing image gone")
    promtool.check_metrics(text)
