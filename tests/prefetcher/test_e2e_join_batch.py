"""A node that joins pulls everything it needs in one puller pod: no second pod's start,
init container and end between its pulls."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch

from bench.scale_cluster import image_sizes, install, scenario
from imagesync.names import (
    COMPONENT_PULLER,
    LABEL_COMPONENT,
    POD_NAMESPACE_DEFAULT,
)
from tests.prefetcher.conftest import SPEED, Running, sim_config
from tests.prefetcher.test_e2e_lifecycle import has
from tests.waiting import wait_for

IMAGES = 120  # more than the 100 images a puller took before


@pytest.fixture
def cluster() -> Iterator[Any]:
    from simulator.cluster import SimCluster

    images = image_sizes(IMAGES)
    with SimCluster(scenario(2, images, SPEED), speed=SPEED, scheduler=False) as sim:
        api = sim.api_client()
        install(api, images)
        api.close()
        yield sim


def watch_pullers(api: client.ApiClient, seen: dict[str, set[str]], stop: threading.Event) -> None:
    """Every puller pod created from now on, by node (a watch misses none)."""
    core: Any = client.CoreV1Api(api)
    selector = f"{LABEL_COMPONENT}={COMPONENT_PULLER}"
    version = core.list_namespaced_pod(
        POD_NAMESPACE_DEFAULT, label_selector=selector
    ).metadata.resource_version
    while not stop.is_set():
        for event in watch.Watch().stream(
            core.list_namespaced_pod,
            POD_NAMESPACE_DEFAULT,
            label_selector=selector,
            resource_version=version,
            timeout_seconds=2,
        ):
            pod = event["object"]
            version = pod.metadata.resource_version
            if event["type"] == "ADDED":
                seen.setdefault(pod.spec.node_name, set()).add(pod.metadata.name)


def test_a_joining_node_pulls_its_images_in_one_puller(cluster: Any) -> None:
    refs = [ref for ref, _, _ in image_sizes(IMAGES)]
    running = Running(cluster)
    try:
        running.start(sim_config())
        wait_for(
            lambda: all(has(cluster, node, ref) for node in cluster.node_names() for ref in refs),
            timeout=180,
            interval=0.5,
            what="the first nodes covered",
        )
        seen: dict[str, set[str]] = {}
        stop = threading.Event()
        recorder = threading.Thread(
            target=watch_pullers, args=(cluster.api_client(), seen, stop), daemon=True
        )
        recorder.start()
        joined = cluster.add_node("cpu")
        wait_for(
            lambda: all(has(cluster, joined, ref) for ref in refs),
            timeout=180,
            interval=0.2,
            what="the joining node holding its images",
        )
        stop.set()
        recorder.join(timeout=10)
    finally:
        running.stop_all()
    assert len(seen.get(joined, set())) == 1, seen
