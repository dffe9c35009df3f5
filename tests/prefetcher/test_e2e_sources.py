"""End to end on the simulator: the Observed source spreads what nodes hold to their pool."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from imagesync.cachedimage import source_object_name
from tests.prefetcher.conftest import (
    CUDA,
    SMALL,
    Running,
    report,
    sim_config,
    untyped,
    wait_for,
)
from tests.prefetcher.test_e2e_lifecycle import gpu_pod


def short_pod(name: str, image: str, node: str) -> dict[str, Any]:
    """A pod that ran and finished before image-sync was installed."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"sim.image-sync.io/run-seconds": "5"}},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": image}],
        },
    }


def cached_images(api: client.ApiClient) -> dict[str, dict[str, Any]]:
    items = untyped(client.CustomObjectsApi(api)).list_cluster_custom_object(
        "image-sync.io", "v1alpha1", "cachedimages"
    )["items"]
    return {item["metadata"]["name"]: item for item in items}


def test_images_nodes_hold_spread_to_their_pool_only(sim: Any, prefetchers: Running) -> None:
    api = sim.api_client()
    core = untyped(client.CoreV1Api(api))
    nodes = sim.node_names()
    cpus = [n for n in nodes if n.startswith("cpu")]
    gpus = [n for n in nodes if n.startswith("gpu")]
    core.create_namespaced_pod("default", short_pod("old-job", SMALL, cpus[0]))
    gpu = gpu_pod("old-train", CUDA, gpus[0])
    gpu["metadata"]["annotations"]["sim.image-sync.io/run-seconds"] = "5"
    gpu["spec"]["restartPolicy"] = "Never"
    core.create_namespaced_pod("default", gpu)

    def finished() -> bool:
        pods = ("old-job", "old-train")
        return {core.read_namespaced_pod(n, "default").status.phase for n in pods} == {"Succeeded"}

    wait_for(finished, timeout=120, what="the old pods finished")
    config = sim_config(default_sources=("Declared", "Learned", "Observed"))
    prefetcher = prefetchers.start(config)

    def spread() -> bool:
        return all(sim.image_store(n).has(SMALL) for n in cpus) and all(
            sim.image_store(n).has(CUDA) for n in gpus
        )

    wait_for(spread, timeout=180, interval=0.5, what="held images spread to their pools")
    assert not any(sim.image_store(n).has(CUDA) for n in cpus)
    assert not any(sim.image_store(n).has(SMALL) for n in gpus)
    objects = cached_images(api)
    for image in (SMALL, CUDA):
        obj = objects[source_object_name(image, "Observed")]
        assert obj["spec"]["source"] == "Observed"
        assert obj["status"]["nodesReporting"] >= 1 and obj["status"]["lastSeen"]
    sources = report(prefetcher)["sources"]["observed"]
    assert sources["images"] >= 2 and sources["nodesAtImageListCap"] == []
