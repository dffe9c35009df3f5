"""Learned images are prefetched only once a pod the API server stored used them, and only
within the learned-image bounds (simulator, real `kubernetes` client, real webhook learner)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import requests
from kubernetes import client

from imagesync.cachedimage import PlacementProfile, object_name
from tests.prefetcher.conftest import Running, report, sim_config, untyped
from tests.waiting import wait_for
from webhook.learning import Sighting
from webhook.metrics import Metrics
from webhook.recorder import Recorder
from webhook.store import KubeCachedImageStore

FORGED = "harbor.example.internal/library/app:1.0"  # what a forged review names
USED = "docker.io/library/busybox:1.36"


def learn(sim: Any, image: str, namespace: str) -> None:
    """What the webhook's learner writes for one review (a forged one, as far as it knows)."""
    recorder = Recorder(
        KubeCachedImageStore(sim.api_client()), Metrics(), flush_interval=3600, max_pending=10
    )
    profile = PlacementProfile(
        nodeSelector={},
        requiredNodeAffinity=[],
        tolerations=[],
        gpu=False,
        namespace=namespace,
        ownerKind="ReplicaSet",
    )
    recorder.record(Sighting((image,), profile))
    assert recorder.flush().written == 1


def status(sim: Any, image: str) -> dict[str, Any]:
    obj = untyped(client.CustomObjectsApi(sim.api_client())).get_cluster_custom_object(
        "image-sync.io", "v1alpha1", "cachedimages", object_name(image)
    )
    result: dict[str, Any] = obj.get("status") or {}
    return result


def on_nodes(sim: Any, image: str) -> list[str]:
    return [node for node in sim.node_names() if sim.image_store(node).has(image)]


def bound_pod(name: str, image: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"sim.image-sync.io/run-seconds": "360000"}},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": image}]},
    }


def test_a_learned_image_waits_for_a_stored_pod_and_learned_images_are_bounded(
    sim: Any, prefetchers: Running
) -> None:
    core = untyped(client.CoreV1Api(sim.api_client()))
    for namespace in ("shop", "ci"):
        core.create_namespace({"metadata": {"name": namespace}})
    learn(sim, FORGED, "shop")  # no pod ever used it
    learn(sim, USED, "shop")
    config = dataclasses.replace(sim_config(), max_learned_images_per_namespace=1)
    prefetcher = prefetchers.start(config)

    r = wait_for(
        lambda: (lambda r: r if r["learning"]["unconfirmed"] == 2 else None)(report(prefetcher)),
        timeout=120,
        interval=0.5,
        what="both learned images reported as unconfirmed",
    )
    assert r["summary"]["wantedPairs"] == 0
    page = requests.get(f"http://127.0.0.1:{prefetcher.server.port}/", timeout=30).text
    assert "2 learned image(s) wait for a stored pod" in page

    # A pod the API server stored, bound to a node, using USED in "shop": confirmed there.
    cpu = [n for n in sim.node_names() if n.startswith("cpu")]
    core.create_namespaced_pod("shop", bound_pod("web-0", USED, cpu[0]))
    wait_for(
        lambda: status(sim, USED).get("confirmedNamespaces") == ["shop"],
        timeout=120,
        interval=0.5,
        what="USED confirmed in shop",
    )
    assert status(sim, USED)["confirmedAt"]
    assert status(sim, USED)["useCount"] == 1  # the webhook's count is untouched
    wait_for(
        lambda: set(cpu) <= set(on_nodes(sim, USED)),
        timeout=120,
        interval=0.5,
        what="USED prefetched to every CPU node",
    )
    assert on_nodes(sim, FORGED) == [], "an image no stored pod used is never pulled"
    assert "confirmedNamespaces" not in status(sim, FORGED)

    # The bound: shop may have one learned image; a second confirmed one is left out.
    core.create_namespaced_pod("shop", bound_pod("web-1", FORGED, cpu[1]))
    r = wait_for(
        lambda: (lambda r: r if r["learning"]["overNamespaceLimit"] == 1 else None)(
            report(prefetcher)
        ),
        timeout=120,
        interval=0.5,
        what="the namespace bound biting",
    )
    assert r["learning"]["unconfirmed"] == 0
    assert r["learning"]["fullNamespaces"] == ["shop"]
    [line] = r["learning"]["boundReached"]
    assert "maxLearnedImagesPerNamespace (1)" in line and "shop" in line
    exposition = json.dumps(
        [
            (s.labels, s.value)
            for metric in prefetcher.metrics.learned_left_out.collect()
            for s in metric.samples
        ]
    )
    assert '[{"reason": "namespace_limit"}, 1.0]' in exposition
