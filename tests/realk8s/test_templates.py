"""Learning from workload templates on a real control plane: a Deployment scaled to zero (the
real Deployment controller makes its ReplicaSet, no pod ever exists) has its image learned
with the template's placement and prefetched, under the shipped read-only RBAC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagesync import names
from tests.realk8s.components import (
    FORBIDDEN,
    PREFETCHER_ACCOUNT,
    REFUSED,
    Process,
    kubectl,
    log_lines,
    start_prefetcher,
    token_kubeconfig,
)
from tests.realk8s.conftest import GPU_NODES, Installed
from tests.realk8s.test_end_to_end import cached_images, declared, pods
from tests.realk8s.test_rbac import without_verb
from tests.waiting import wait_for

CUDA = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"
NAMESPACE = "templates"
DECLARED_PROBE = "docker.io/library/busybox:1.36"


def scaled_to_zero() -> list[dict[str, Any]]:
    labels = {"app": "trainer"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "trainer", "namespace": NAMESPACE},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {names.GPU_PRESENT_LABEL: "true"},
                    "tolerations": [{"key": names.GPU_RESOURCE, "operator": "Exists"}],
                    "containers": [
                        {
                            "name": "train",
                            "image": CUDA,
                            "resources": {"limits": {names.GPU_RESOURCE: "1"}},
                        }
                    ],
                },
            },
        },
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    return [namespace, deployment]


def template_profile(installed: Installed) -> dict[str, Any] | None:
    item = cached_images(installed).get(CUDA)
    for profile in (item or {}).get("spec", {}).get("profiles") or []:
        if profile.get("namespace") == NAMESPACE:
            return dict(profile)
    return None


def test_a_deployment_scaled_to_zero_is_learned_and_prefetched(
    installed: Installed, kubelets: Process, tmp_path: Path
) -> None:
    plane = installed.control_plane
    kubeconfig = token_kubeconfig(plane, PREFETCHER_ACCOUNT, tmp_path / "prefetcher.kubeconfig")
    prefetcher = start_prefetcher(kubeconfig, installed.config_file, tmp_path, "templates")
    try:
        installed.apply(*scaled_to_zero())
        profile = wait_for(lambda: template_profile(installed), what="the template's profile")
        assert profile["ownerKind"] == "ReplicaSet"  # what its pods would carry
        assert profile["gpu"] is True
        assert profile["nodeSelector"] == {names.GPU_PRESENT_LABEL: "true"}
        # The limit alone is the request; the real API server keeps the field.
        assert profile["requests"] == {names.GPU_RESOURCE: "1"}

        def present_on_gpu_nodes() -> bool:
            report = prefetcher.report() or {"images": []}
            cells: dict[str, Any] = next(
                (i["nodes"] for i in report["images"] if i["image"] == CUDA), {}
            )
            return all(cells.get(node, {}).get("state") == "present" for node in GPU_NODES)

        wait_for(present_on_gpu_nodes, timeout=120, interval=0.5, what="present on GPU nodes")
        assert pods(installed, NAMESPACE, "app=trainer") == []
        assert not log_lines(prefetcher.process.log(), REFUSED)
    finally:
        prefetcher.process.stop()
        kubectl(plane, "delete", "namespace", NAMESPACE, "--wait=false")


def test_without_the_workload_rule_the_prefetcher_says_so_and_prefetches_the_rest(
    installed: Installed, kubelets: Process, tmp_path: Path
) -> None:
    """An upgrade that missed the new RBAC rule: 403s in the log, everything else works."""
    plane = installed.control_plane
    kubeconfig = token_kubeconfig(plane, PREFETCHER_ACCOUNT, tmp_path / "prefetcher.kubeconfig")
    probe = declared(DECLARED_PROBE) | {"metadata": {"name": "templates-probe"}}
    with without_verb(installed, "ClusterRole", "image-sync-prefetcher", "deployments", "list"):
        installed.apply(probe)
        prefetcher = start_prefetcher(kubeconfig, installed.config_file, tmp_path, "no-rule")
        try:
            # Each workload kind's informer meets its own 403, in no fixed order.
            wait_for(
                lambda: [
                    line
                    for line in log_lines(prefetcher.process.log(), FORBIDDEN)
                    if "deployments" in line
                ],
                what="a 403 on deployments in the prefetcher's log",
            )

            def present() -> bool:
                report = prefetcher.report() or {"images": []}
                image = next((i for i in report["images"] if i["image"] == DECLARED_PROBE), None)
                return image is not None and image["nodesPresent"] == image["nodesWanted"] > 0

            wait_for(present, timeout=150, interval=0.5, what="the declared image present")
        finally:
            prefetcher.process.stop()
            kubectl(plane, "delete", names.CACHED_IMAGE_CRD, "templates-probe")
