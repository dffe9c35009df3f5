"""End to end on the simulator: a Deployment created through the API, with no pod ever made
(the simulated API server runs no controllers), makes its image present on eligible nodes."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from imagesync.cachedimage import object_name
from imagesync.config import load_config
from tests.prefetcher.conftest import (
    BUSYBOX,
    CUDA,
    GPU_SELECTOR,
    SMALL,
    Running,
    our_pods,
    report,
    sim_config,
    untyped,
)
from tests.waiting import wait_for

NEXT = "harbor.example.internal/library/app:1.1"
API = "harbor.example.internal/library/api:2.4.0"
GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists"}]


def deployment(
    name: str, image: str, namespace: str = "default", **pod_spec: Any
) -> dict[str, Any]:
    annotations = pod_spec.pop("annotations", {})
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {"containers": [{"name": "main", "image": image}], **pod_spec},
            },
        },
    }


def test_a_deployment_makes_its_image_present_before_any_pod(
    sim: Any, prefetchers: Running
) -> None:
    api = sim.api_client()
    apps = untyped(client.AppsV1Api(api))
    apps.create_namespaced_deployment("default", deployment("web", SMALL))
    apps.create_namespaced_deployment(
        "default",
        deployment(
            "train",
            CUDA,
            nodeSelector=GPU_SELECTOR,
            tolerations=GPU_TOLERATION,
        ),
    )
    apps.create_namespaced_deployment(
        "default", deployment("skip", BUSYBOX, annotations={"image-sync.io/enabled": "false"})
    )
    core = untyped(client.CoreV1Api(api))
    core.create_namespace(
        {"metadata": {"name": "private", "labels": {"image-sync.io/enabled": "false"}}}
    )
    apps.create_namespaced_deployment("private", deployment("hidden", NEXT, "private"))
    nightly = deployment("nightly", API)["spec"]["template"]
    nightly["spec"]["restartPolicy"] = "Never"
    untyped(client.BatchV1Api(api)).create_namespaced_cron_job(
        "default",
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "default"},
            "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": nightly}}},
        },
    )
    prefetcher = prefetchers.start()

    nodes = sim.node_names()
    gpu_nodes = [n for n in nodes if n.startswith("gpu")]
    cpu_nodes = [n for n in nodes if n not in gpu_nodes]

    def present_everywhere() -> bool:
        return all(sim.image_store(n).has(SMALL) for n in cpu_nodes) and all(
            sim.image_store(n).has(CUDA) for n in gpu_nodes
        )

    wait_for(present_everywhere, timeout=180, interval=0.5, what="template images present")
    # The GPU nodes' taint keeps the web pods (no toleration) away; no GPU, no CUDA image.
    assert not any(sim.image_store(n).has(CUDA) for n in cpu_nodes)
    assert not any(sim.image_store(n).has(SMALL) for n in gpu_nodes)

    custom = untyped(client.CustomObjectsApi(api))
    learned = custom.get_cluster_custom_object(
        "image-sync.io", "v1alpha1", "cachedimages", object_name(CUDA)
    )
    assert learned["spec"]["source"] == "Learned"
    (profile,) = learned["spec"]["profiles"]
    assert profile["nodeSelector"] == GPU_SELECTOR
    assert profile["ownerKind"] == "ReplicaSet" and profile["namespace"] == "default"
    names = {
        o["spec"]["image"]
        for o in custom.list_cluster_custom_object("image-sync.io", "v1alpha1", "cachedimages")[
            "items"
        ]
    }
    assert BUSYBOX not in names  # its pod template opted out
    assert NEXT not in names  # its namespace opted out
    cron = _cached(api, API)
    assert cron is not None and [p["ownerKind"] for p in cron["spec"]["profiles"]] == ["Job"]
    workload_pods = untyped(client.CoreV1Api(api)).list_namespaced_pod("default").items
    assert workload_pods == []  # no pod was ever created: the templates alone taught it
    summary = report(prefetcher)["summary"]
    assert summary["wantedPairs"] == 2 * len(cpu_nodes) + len(gpu_nodes)  # web, nightly, train


def test_a_rollout_brings_the_new_image_and_releases_the_old_after_the_grace(
    sim: Any, prefetchers: Running
) -> None:
    api = sim.api_client()
    apps = untyped(client.AppsV1Api(api))
    apps.create_namespaced_deployment("default", deployment("web", SMALL))
    prefetcher = prefetchers.start(sim_config(rollout_grace=600.0))  # 10 s of wall time at 60x
    cpu_nodes = [n for n in sim.node_names() if not n.startswith("gpu")]
    wait_for(
        lambda: all(sim.image_store(n).has(SMALL) for n in cpu_nodes),
        timeout=120,
        interval=0.5,
        what="the first version present",
    )
    apps.patch_namespaced_deployment(
        "web",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": NEXT}]}}}},
    )
    wait_for(
        lambda: all(sim.image_store(n).has(NEXT) for n in cpu_nodes),
        timeout=120,
        interval=0.5,
        what="the new version present",
    )

    def old_released() -> bool:
        images = {i["image"]: i for i in report(prefetcher)["images"]}
        return SMALL in images and not images[SMALL]["wanted"]

    wait_for(old_released, timeout=120, interval=0.5, what="the old version released")

    def keepers_hold_only_the_new_version() -> bool:
        held = [
            json.loads(p.metadata.annotations["image-sync.io/images"])
            for p in our_pods(api)
            if p.metadata.labels["app.kubernetes.io/component"] == "keeper"
        ]
        return len(held) == len(cpu_nodes) and all(images == [NEXT] for images in held)

    wait_for(keepers_hold_only_the_new_version, timeout=120, interval=0.5, what="old unguarded")


PYTORCH_JOB_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "pytorchjobs.kubeflow.org"},
    "spec": {
        "group": "kubeflow.org",
        "scope": "Namespaced",
        "names": {"plural": "pytorchjobs", "singular": "pytorchjob", "kind": "PyTorchJob"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def test_a_configured_custom_kind_is_learned_and_a_missing_one_does_not_stop_the_rest(
    sim: Any, prefetchers: Running
) -> None:
    api = sim.api_client()
    untyped(client.ApiextensionsV1Api(api)).create_custom_resource_definition(PYTORCH_JOB_CRD)
    worker = deployment("unused", CUDA, nodeSelector=GPU_SELECTOR, tolerations=GPU_TOLERATION)
    worker = worker["spec"]["template"]
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "bert", "namespace": "default"},
        "spec": {"pytorchReplicaSpecs": {"Worker": {"replicas": 2, "template": worker}}},
    }
    wait_for(
        lambda: _create_custom(api, job), timeout=30, interval=0.2, what="the PyTorchJob created"
    )
    # The CRD keeps unknown fields, so nothing checks the template: one that cannot be read
    # is skipped and listed, and the others are learned.
    junk = json.loads(json.dumps(job))
    junk["metadata"]["name"] = "junk"
    junk["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["tolerations"] = "all"
    assert _create_custom(api, junk)
    kinds = (
        "[{apiVersion: kubeflow.org/v1, kind: PyTorchJob,"
        " templatePaths: [spec.pytorchReplicaSpecs.*.template]},"
        " {apiVersion: example.com/v1, kind: Missing, templatePaths: [spec.template]}]"
    )
    custom_kinds = load_config(environ={"IMAGE_SYNC_TEMPLATE_KINDS": kinds}).template_kinds
    prefetcher = prefetchers.start(sim_config(template_kinds=custom_kinds))
    learned = wait_for(
        lambda: _cached(api, CUDA), timeout=60, interval=0.5, what="the PyTorchJob's image learned"
    )
    assert [p["ownerKind"] for p in learned["spec"]["profiles"]] == ["PyTorchJob"]
    bad = prefetcher.runtime()["badObjects"]["PyTorchJob.kubeflow.org"]
    assert list(bad) == ["default/junk"]
    # Planning goes on although the other configured kind's CRD does not exist.
    gpu_nodes = [n for n in sim.node_names() if n.startswith("gpu")]
    wait_for(
        lambda: all(sim.image_store(n).has(CUDA) for n in gpu_nodes),
        timeout=120,
        interval=0.5,
        what="the PyTorchJob's image present on the GPU nodes",
    )


def _create_custom(api: Any, body: dict[str, Any]) -> bool:
    try:
        untyped(client.CustomObjectsApi(api)).create_namespaced_custom_object(
            "kubeflow.org", "v1", "default", "pytorchjobs", body
        )
    except client.exceptions.ApiException as exc:
        if exc.status == 404:  # the CRD is not served yet
            return False
        raise
    return True


def _cached(api: Any, image: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = untyped(client.CustomObjectsApi(api)).get_cluster_custom_object(
            "image-sync.io", "v1alpha1", "cachedimages", object_name(image)
        )
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found
