"""End to end on the simulator: a node whose allocatable cannot hold an image's pods gets no
puller for it, though their nodeSelector and tolerations would let them be scheduled there."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from imagesync.cachedimage import object_name
from tests.prefetcher.conftest import SMALL, Running, our_pods, report, untyped
from tests.prefetcher.test_e2e_lifecycle import cell, covered
from tests.prefetcher.test_e2e_templates import GPU_TOLERATION, deployment
from tests.waiting import wait_for

API = "harbor.example.internal/library/api:2.4.0"
# More cpu than a CPU node of the scenario has (16), less than a GPU node (96).
LARGE = {"requests": {"cpu": "32", "memory": "64Gi"}}


def test_a_node_too_small_for_the_pods_gets_no_puller(sim: Any, prefetchers: Running) -> None:
    api = sim.api_client()
    apps = untyped(client.AppsV1Api(api))
    large = deployment("batch", API, tolerations=GPU_TOLERATION)
    large["spec"]["template"]["spec"]["containers"][0]["resources"] = LARGE
    apps.create_namespaced_deployment("default", large)
    apps.create_namespaced_deployment("default", deployment("web", SMALL))
    prefetcher = prefetchers.start()

    nodes = sim.node_names()
    gpu_nodes = [n for n in nodes if n.startswith("gpu")]
    cpu_nodes = [n for n in nodes if n not in gpu_nodes]
    pulled_on: set[str] = set()  # nodes where a puller of API was seen running

    def converged() -> dict[str, Any] | None:
        for pod in our_pods(api):
            images = (pod.metadata.annotations or {}).get("image-sync.io/images", "")
            if pod.metadata.labels["app.kubernetes.io/component"] == "puller" and API in images:
                pulled_on.add(pod.spec.node_name)
        return covered(prefetcher)

    r = wait_for(converged, timeout=180, interval=0.2, what="coverage")
    assert all(sim.image_store(n).has(API) for n in gpu_nodes)
    assert all(sim.image_store(n).has(SMALL) for n in cpu_nodes)
    assert pulled_on <= set(gpu_nodes)  # polled: the disks below are the proof
    for node in cpu_nodes:
        # Tolerating the GPU taint, selecting nothing: only the requests keep it off.
        found = cell(r, node, API)
        assert (found["state"], found["reason"]) == ("ineligible", "needs 32 cpu, node has 16")
        assert not sim.image_store(node).has(API), node
    assert r["summary"]["wantedPairs"] == len(gpu_nodes) + len(cpu_nodes)

    learned = untyped(client.CustomObjectsApi(api)).get_cluster_custom_object(
        "image-sync.io", "v1alpha1", "cachedimages", object_name(API)
    )
    (profile,) = learned["spec"]["profiles"]
    assert profile["requests"] == {"cpu": "32", "memory": "64Gi"}
    # API off the CPU nodes (too small), the web image off the GPU nodes (their taint).
    assert report(prefetcher)["summary"]["ineligiblePairs"] == len(cpu_nodes) + len(gpu_nodes)
