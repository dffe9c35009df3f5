"""The main path on a real control plane: pods made by the real Deployment and Job controllers
are mutated through the shipped MutatingWebhookConfiguration, their images are learned, and
the prefetcher puts every image on every eligible node, all under the shipped RBAC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imagesync import names
from tests.realk8s.components import (
    NAMESPACE,
    PREFETCHER_ACCOUNT,
    REFUSED,
    Process,
    get_json,
    kubectl,
    log_lines,
    start_prefetcher,
    token_kubeconfig,
)
from tests.realk8s.conftest import CPU_NODES, GPU_NODES, Installed
from tests.waiting import wait_for
from tests.webhook.conftest import WebhookProcess

APP = "harbor.example.internal/library/app:1.0"
DECLARED = "harbor.example.internal/library/app:1.1"
CUDA = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"
GPU_SELECTOR = {names.GPU_PRESENT_LABEL: "true"}


def workloads() -> list[dict[str, Any]]:
    """A web Deployment on CPU nodes and a GPU Job, written as users write them."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "web", "image": APP, "imagePullPolicy": "Always"}]
                },
            },
        },
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "cuda-check", "namespace": "ml"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": GPU_SELECTOR,
                    "tolerations": [
                        {"key": names.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "containers": [
                        {
                            "name": "check",
                            "image": CUDA,
                            "command": ["sleep", "5"],
                            "resources": {"limits": {names.GPU_RESOURCE: "1"}},
                        }
                    ],
                }
            }
        },
    }
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        for name in ("shop", "ml")
    ]
    return [*namespaces, deployment, job]


def declared(image: str) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.CACHED_IMAGE_KIND,
        "metadata": {"name": "declared-app"},
        "spec": {"image": image, "source": names.SOURCE_DECLARED},
    }


def pods(installed: Installed, namespace: str, selector: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = get_json(
        installed.control_plane, "pods", "-n", namespace, "-l", selector
    )["items"]
    return found


def policies(pod: dict[str, Any]) -> list[str]:
    return [c.get("imagePullPolicy", "") for c in pod["spec"]["containers"]]


def cached_images(installed: Installed) -> dict[str, dict[str, Any]]:
    items = get_json(installed.control_plane, names.CACHED_IMAGE_CRD)["items"]
    return {item["spec"]["image"]: item for item in items}


def keepers(installed: Installed) -> dict[str, dict[str, Any]]:
    """node -> its Running keeper pod."""
    return {
        pod["spec"]["nodeName"]: pod
        for pod in pods(
            installed,
            names.POD_NAMESPACE_DEFAULT,
            f"{names.LABEL_COMPONENT}={names.COMPONENT_KEEPER}",
        )
        if pod["status"].get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")
    }


def test_pods_are_mutated_learned_and_prefetched_everywhere_eligible(
    installed: Installed, kubelets: Process, webhook: WebhookProcess, tmp_path: Path
) -> None:
    plane = installed.control_plane
    webhook_start = len(webhook.log())
    kubeconfig = token_kubeconfig(plane, PREFETCHER_ACCOUNT, tmp_path / "prefetcher.kubeconfig")
    prefetcher = start_prefetcher(kubeconfig, installed.config_file, tmp_path, "prefetcher-a")
    try:
        installed.apply(declared(DECLARED), *workloads())

        web = wait_for(
            lambda: (
                len(pods(installed, "shop", "app=web")) == 2 and pods(installed, "shop", "app=web")
            ),
            what="the Deployment's pods",
        )
        assert all(policies(p) == ["IfNotPresent"] for p in web), [policies(p) for p in web]
        [check] = wait_for(
            lambda: pods(installed, "ml", "job-name=cuda-check"), what="the Job's pod"
        )
        assert policies(check) == ["IfNotPresent"]

        learned = wait_for(
            lambda: (
                (images := cached_images(installed))
                and {APP, CUDA} <= images.keys()
                and all((images[i].get("status") or {}).get("useCount") for i in (APP, CUDA))
                and images
            ),
            what="images learned into CachedImages, with their counts",
        )
        for image in (APP, CUDA):
            assert learned[image]["spec"]["source"] == names.SOURCE_LEARNED
            assert learned[image]["status"]["useCount"] >= 1, learned[image]

        def covered() -> dict[str, Any] | None:
            report = prefetcher.report()
            if (
                report
                and report["summary"]["coverage"] == 1.0
                and {APP, DECLARED, CUDA} <= {i["image"] for i in report["images"] if i["wanted"]}
            ):
                return report
            return None

        report = wait_for(covered, timeout=120, interval=0.5, what="full coverage")
        by_image = {i["image"]: i["nodes"] for i in report["images"]}
        # The web pods do not tolerate the GPU nodes' taint, the GPU Job needs a GPU node.
        expected = {
            DECLARED: {node: "present" for node in (*CPU_NODES, *GPU_NODES)},
            APP: {**dict.fromkeys(CPU_NODES, "present"), **dict.fromkeys(GPU_NODES, "ineligible")},
            CUDA: {**dict.fromkeys(CPU_NODES, "ineligible"), **dict.fromkeys(GPU_NODES, "present")},
        }
        for image, states in expected.items():
            assert {node: cell["state"] for node, cell in by_image[image].items()} == states, image

        guards = wait_for(
            lambda: (
                len(keepers(installed)) == len(CPU_NODES) + len(GPU_NODES) and keepers(installed)
            ),
            timeout=90,
            what="a Running keeper on every node",
        )
        for node, keeper in guards.items():
            images = {c["image"] for c in keeper["spec"]["containers"]}
            wanted = {image for image, states in expected.items() if states[node] == "present"}
            assert wanted <= images and not (set(expected) - wanted) & images, (node, images)
            assert keeper["spec"]["priorityClassName"] == "image-sync-keeper"
            # Admitted by the pod guard: its account, no token, only the tolerations it asked
            # for (none of everything, none of node pressure).
            assert keeper["spec"]["serviceAccountName"] == names.POD_SERVICE_ACCOUNT
            assert not any(v.get("projected") for v in keeper["spec"]["volumes"])
            assert all(t.get("key") for t in keeper["spec"]["tolerations"])
            assert (
                keeper["spec"]["priority"]
                == get_json(plane, "priorityclass", "image-sync-keeper")["value"]
            )

        # The prefetcher's status writes are accepted by the CRD's schema.
        status = wait_for(
            lambda: (
                cached_images(installed)[CUDA]["status"].get("nodesPresent") == 2
                and cached_images(installed)[CUDA]["status"]
            ),
            what="CachedImage status written by the prefetcher",
        )
        assert status["nodesWanted"] == 2, status
        # Every call of both components was authorized and every write accepted.
        assert not log_lines(webhook.log(), REFUSED, webhook_start)
        assert not log_lines(prefetcher.process.log(), REFUSED)
        metrics = webhook.get("/metrics").text
        assert "image_sync_webhook_patches_total" in metrics
    finally:
        prefetcher.process.stop()
    assert prefetcher.process.process.returncode == 0, prefetcher.process.log()
    lease = json.loads(
        kubectl(
            plane, "get", "lease", "-n", NAMESPACE, "image-sync-prefetcher", "-o", "json"
        ).stdout
    )
    assert not lease["spec"].get("holderIdentity"), "a clean stop hands the Lease back"
