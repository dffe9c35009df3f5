"""Upgrading from the layout where puller and keeper pods ran in `image-sync` leaves none there."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from imagesync.names import LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_NODE
from tests.prefetcher.conftest import NAMESPACE, SMALL, Running, declare, our_pods, report, untyped
from tests.waiting import wait_for


def old_layout_pod(name: str, component: str, node: str) -> dict[str, Any]:
    """A keeper or puller as a release before the pod namespace made it: in `image-sync`."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {
                LABEL_MANAGED_BY: "image-sync",
                LABEL_COMPONENT: component,
                LABEL_NODE: node,
            },
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "keep", "image": SMALL, "imagePullPolicy": "IfNotPresent"}],
        },
    }


def pods_in(api: client.ApiClient, namespace: str, selector: str = "") -> list[Any]:
    return list(
        untyped(client.CoreV1Api(api)).list_namespaced_pod(namespace, label_selector=selector).items
    )


def test_pods_left_in_the_old_namespace_are_deleted(sim: Any, prefetchers: Running) -> None:
    api = sim.api_client()
    core = untyped(client.CoreV1Api(api))
    core.create_namespaced_pod(NAMESPACE, old_layout_pod("isync-keep-0ld", "keeper", "cpu-1"))
    core.create_namespaced_pod(NAMESPACE, old_layout_pod("isync-pull-0ld", "puller", "cpu-2"))
    # Not ours: a pod of image-sync's own namespace without the labels stays.
    bystander = old_layout_pod("webhook-x", "keeper", "cpu-3")
    bystander["metadata"]["labels"] = {"app.kubernetes.io/name": "image-sync"}
    core.create_namespaced_pod(NAMESPACE, bystander)
    declare(api, SMALL)

    prefetcher = prefetchers.start()
    wait_for(
        lambda: not pods_in(api, NAMESPACE, f"{LABEL_MANAGED_BY}=image-sync"),
        timeout=120,
        interval=0.2,
        what="the old namespace emptied of our pods",
    )
    assert [p.metadata.name for p in pods_in(api, NAMESPACE)] == ["webhook-x"]
    wait_for(
        lambda: report(prefetcher)["summary"]["coverage"] == 1.0,
        timeout=120,
        interval=0.5,
        what="coverage from the pod namespace",
    )
    assert our_pods(api), "keepers run in the pod namespace"
