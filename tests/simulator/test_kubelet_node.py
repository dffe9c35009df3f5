"""The kubelet's node: image GC of unused images, and the node status it reports."""

from __future__ import annotations

from simulator.registry import catalog_image
from tests.simulator.noderuntime_fixtures import (
    T0,
    make_node,
    make_pod,
)


def test_image_gc_spares_running_and_collects_unused() -> None:
    node = make_node(disk=30_000_000_000, system_disk_used=0)
    node.sync_pod(make_pod("keep", "busybox:1.36"))
    node.sync_pod(
        make_pod(
            "job",
            "nvcr.io/nvidia/pytorch:24.08-py3",
            restartPolicy="Never",
            annotations={"sim.image-sync.io/run-seconds": "1"},
        )
    )
    for t in range(0, 400, 5):
        node.advance(T0 + t)
    assert node.store.has("nvcr.io/nvidia/pytorch:24.08-py3")  # 68 % used: under the threshold
    node.forget_pod("uid-job")
    node.sync_pod(make_pod("other", "app:latest"))
    # Fill the disk past 85 % with a second large image on another tag.
    node.registries.registries["nvcr.io"].add(
        catalog_image("nvcr.io/nvidia/pytorch:24.09-py3", compressed="1GB", disk="6GB")
    )
    node.sync_pod(
        make_pod(
            "p2",
            "nvcr.io/nvidia/pytorch:24.09-py3",
            annotations={"sim.image-sync.io/run-seconds": "forever"},
        )
    )
    for t in range(400, 1400, 5):
        node.advance(T0 + t)
    assert not node.store.has("nvcr.io/nvidia/pytorch:24.08-py3")
    assert node.store.has("docker.io/library/busybox:1.36")
    assert node.store.has("nvcr.io/nvidia/pytorch:24.09-py3")


def test_node_status_reports_gpu_capacity_and_images() -> None:
    node = make_node(gpus=8)
    node.sync_pod(make_pod("p", "busybox:1.36"))
    node.advance(T0 + 5)
    status = node.node_status(T0 + 5, T0 + 5)
    assert status["capacity"]["nvidia.com/gpu"] == "8"
    assert status["images"][0]["names"][0].startswith("docker.io/library/busybox@sha256:")
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
