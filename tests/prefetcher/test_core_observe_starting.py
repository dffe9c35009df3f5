"""Reading starting workload pods: the images and registries they still wait for."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefetcher import observe
from tests.prefetcher.test_core_fixtures import NOW


def test_starting_workload_pods() -> None:
    def pod(
        phase: str = "Pending", reason: str = "ContainerCreating", **meta: Any
    ) -> dict[str, Any]:
        return {
            "metadata": {
                "name": "w",
                "namespace": "ml",
                "creationTimestamp": "2026-11-22T02:00:00Z",
                **meta,
            },
            "spec": {"nodeName": "gpu-1"},
            "status": {
                "phase": phase,
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "True",
                        "lastTransitionTime": "2026-11-22T02:01:00Z",
                    }
                ],
                "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": reason}}}],
            },
        }

    starting = observe.starting_pod(pod())
    assert starting is not None and (starting.node, starting.pod) == ("gpu-1", "ml/w")
    assert starting.since == NOW - timedelta(minutes=59)
    assert observe.starting_pod(pod(reason="ImagePullBackOff")) is None  # stuck, not starting
    assert observe.starting_pod(pod(phase="Running")) is None
    assert observe.starting_pod(pod(deletionTimestamp="2026-11-22T02:02:00Z")) is None
    ours = pod(labels={"app.kubernetes.io/managed-by": "image-sync"})
    assert observe.starting_pod(ours) is None


def test_a_starting_pod_names_the_registries_of_the_images_it_still_waits_for() -> None:
    obj = {
        "metadata": {"name": "w", "namespace": "ml"},
        "spec": {
            "nodeName": "gpu-1",
            "initContainers": [{"name": "init", "image": "busybox:1.36"}],
            "containers": [
                {"name": "main", "image": "nvcr.io/nvidia/pytorch:24.08-py3"},
                {"name": "side", "image": "harbor.example.internal/library/app:1.0"},
            ],
        },
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [{"name": "init", "state": {"terminated": {"exitCode": 0}}}],
            "containerStatuses": [
                {"name": "main", "state": {"waiting": {"reason": "ContainerCreating"}}},
                {"name": "side", "state": {"waiting": {"reason": "ContainerCreating"}}},
            ],
        },
    }
    starting = observe.starting_pod(obj)
    assert starting is not None
    # The init container ran: its image (docker.io) is pulled; the others are not.
    assert starting.registries == ("harbor.example.internal", "nvcr.io")
    assert starting.images == (
        "nvcr.io/nvidia/pytorch:24.08-py3",
        "harbor.example.internal/library/app:1.0",
    )
