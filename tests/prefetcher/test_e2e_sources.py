"""End to end on the simulator: the Observed source spreads what nodes hold to their pool."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from imagesync.cachedimage import source_object_name
from tests.prefetcher.conftest import BUSYBOX, CUDA, SMALL, Running, report, sim_config, untyped
from tests.prefetcher.test_e2e_lifecycle import gpu_pod
from tests.waiting import wait_for


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
    # Once every copy is image-sync's own (keepers guard them), no node holds them on its own;
    # the objects stay until imageRetention passes.
    wait_for(
        lambda: report(prefetcher)["sources"]["observed"]["images"] == 0,
        timeout=120,
        interval=0.5,
        what="keepers guard every copy",
    )
    assert report(prefetcher)["sources"]["observed"]["nodesAtImageListCap"] == []
    assert {source_object_name(i, "Observed") for i in (SMALL, CUDA)} <= set(cached_images(api))


def test_catalog_images_everywhere_and_a_failing_prefix_stops_nothing(
    sim: Any, prefetchers: Running
) -> None:
    import base64
    import dataclasses

    from imagesync.sources import parse_rules
    from prefetcher.registry.credentials import Credentials, dockerconfigjson

    urls = sim.serve_registries()
    # harbor.example.internal's API asks for credentials (as a private Harbor project does).
    harbor = sim.registries.registries["harbor.example.internal"]
    harbor.credentials, harbor.unauthorized = "robot$sync:s3cret", ()
    api = sim.api_client()
    untyped(client.CoreV1Api(api)).create_namespaced_secret(
        "image-sync",
        {
            "metadata": {"name": "harbor-pull"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {
                ".dockerconfigjson": base64.b64encode(
                    dockerconfigjson(
                        {"harbor.example.internal": Credentials("robot$sync", "s3cret")}
                    ).encode()
                ).decode()
            },
        },
    )
    rules = parse_rules(
        [
            {
                "prefix": "harbor.example.internal/library",
                "from": ["catalog", "learned"],
                "tags": 1,
                "endpoint": urls["harbor.example.internal"],
            },
            # No pull secret for it, and nothing listens there: reported, nothing else stops.
            {"prefix": "nvcr.io/nvidia", "from": ["catalog"], "endpoint": "http://127.0.0.1:9"},
            {
                "prefix": "docker.io/library",
                "from": ["declared"],
                "endpoint": urls["docker.io"],
            },
        ],
        float,
    )
    config = dataclasses.replace(
        sim_config(), sources=rules, image_pull_secrets=("harbor-pull",), catalog_interval=600.0
    )
    declare_busybox(api)
    prefetcher = prefetchers.start(config)
    newest = [
        "harbor.example.internal/library/app:1.1",
        "harbor.example.internal/library/api:2.4.0",
    ]
    nodes = sim.node_names()

    def everywhere() -> bool:
        return all(sim.image_store(n).has(i) for n in nodes for i in newest)

    wait_for(everywhere, timeout=180, interval=0.5, what="the newest Harbor tags on every node")
    assert not any(sim.image_store(n).has(SMALL) for n in nodes)  # app:1.0 is not the newest
    objects = cached_images(api)
    app = objects[source_object_name(newest[0], "Catalog")]
    assert app["status"]["compressedSize"] == 49_000_000
    assert app["status"]["platforms"] == ["linux/amd64", "linux/arm64"]
    busybox = objects[source_object_name(BUSYBOX, "Declared")]
    assert busybox["status"]["compressedSize"] == 2_200_000  # a size lookup, before any pull
    catalog = report(prefetcher)["sources"]["catalog"]["prefixes"]
    assert catalog["harbor.example.internal/library"]["images"] == 2
    assert catalog["harbor.example.internal/library"]["lastError"] is None
    assert catalog["nvcr.io/nvidia"]["lastError"]["kind"] == "unreachable"
    metrics = requests_text(f"http://127.0.0.1:{prefetcher.server.port}/metrics")
    assert (
        'image_sync_prefetcher_source_errors_total{kind="unreachable",prefix="nvcr.io/nvidia",'
        'source="catalog"}' in metrics
    )


def declare_busybox(api: client.ApiClient) -> None:
    from tests.prefetcher.conftest import declare

    declare(api, BUSYBOX)


def requests_text(url: str) -> str:
    import requests

    response = requests.get(url, timeout=30)
    response.raise_for_status()
    return response.text
