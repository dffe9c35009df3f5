"""End to end on the wall-clock simulator: a node's own pods need the disk its keeper holds;
the budget gives way (the keeper lets its lowest-ranked image go, the kubelet's image GC takes
it), no pod's pull fails, and once the pods leave the budget holds their room for budgetHold
(the image is not pulled again meanwhile), then grows back."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from simulator.cluster import SimCluster
from simulator.scenario import load_scenario
from tests.prefetcher.conftest import (
    POD_NAMESPACE,
    Running,
    bound_gpu_pod,
    declare,
    install_image_sync,
    report,
    sim_config,
    untyped,
)
from tests.waiting import wait_for

NODE = "gpu-1"
PYTORCH = "nvcr.io/nvidia/pytorch:24.08-py3"  # 20.4 GB on disk
TRAINER = "harbor.example.internal/ml/trainer:2.3"  # 8.1 GB
TRITON = "nvcr.io/nvidia/tritonserver:24.08-py3"  # 17.4 GB
TENSORFLOW = "nvcr.io/nvidia/tensorflow:24.08-tf2-py3"  # 16.9 GB
DISK = 60_000_000_000  # diskBudget 0.75: 45 GB (the GC high threshold, 85 %: 51 GB)
SPEED = 30.0
HOLD = 600.0  # budgetHold, simulated seconds: 20 s of wall time


@pytest.fixture
def cluster() -> Iterator[Any]:
    scenario = load_scenario("gpu-cluster").with_kubelets(disk=DISK, system_disk_used=500_000_000)
    scenario = dataclasses.replace(scenario, workload=(), events=())
    with SimCluster(scenario, speed=SPEED) as sim:
        api = sim.api_client()
        install_image_sync(api)
        api.close()
        yield sim


def keeper_images(core: Any) -> set[str] | None:
    """The images the running keeper on NODE holds (None: no keeper runs there)."""
    for pod in core.list_namespaced_pod(
        POD_NAMESPACE, label_selector="app.kubernetes.io/component=keeper"
    ).items:
        if pod.spec.node_name == NODE and pod.status.phase == "Running":
            return set(json.loads(pod.metadata.annotations["image-sync.io/images"]))
    return None


def pulling_on_node(core: Any, image: str) -> bool:
    """Whether a puller on NODE pulls `image`."""
    return any(
        pod.spec.node_name == NODE
        and image in json.loads(pod.metadata.annotations["image-sync.io/images"])
        for pod in core.list_namespaced_pod(
            POD_NAMESPACE, label_selector="app.kubernetes.io/component=puller"
        ).items
    )


def node_entry(prefetcher: Any) -> dict[str, Any]:
    return next(n for n in report(prefetcher)["nodes"] if n["name"] == NODE)


def test_the_budget_gives_the_disk_back_to_the_nodes_pods_and_takes_it_again(
    cluster: Any,
) -> None:
    api = cluster.api_client()
    core = untyped(client.CoreV1Api(api))
    on_node = {"kubernetes.io/hostname": NODE}
    # Prefetched on NODE: 28.5 GB of the 45 GB budget. The pods' images are wanted elsewhere
    # (learned or declared images are what image-sync knows the sizes of).
    declare(api, PYTORCH, on_node)
    declare(api, TRAINER, on_node)
    declare(api, TRITON, {"kubernetes.io/hostname": "gpu-2"})
    declare(api, TENSORFLOW, {"kubernetes.io/hostname": "gpu-2"})
    prefetchers = Running(cluster)
    try:
        prefetcher = prefetchers.start(
            sim_config(disk_budget=0.75, sweep_interval=120.0, budget_hold=HOLD)
        )
        wait_for(
            lambda: keeper_images(core) == {PYTORCH, TRAINER},
            timeout=180,
            interval=0.5,
            what="the keeper on gpu-1 holding pytorch and trainer",
        )
        wait_for(
            lambda: all(cluster.image_store("gpu-2").has(i) for i in (TRITON, TENSORFLOW)),
            timeout=180,
            interval=0.5,
            what="triton and tensorflow on gpu-2 (their sizes known)",
        )
        assert node_entry(prefetcher)["budgetReason"] == "diskBudget 75% of 60.0 GB"

        # Two pods need 34.3 GB more on a 60 GB disk whose keeper pins 28.5 GB (63.3 GB in
        # all): the budget shrinks to 45 - 34.3 = 10.7 GB, so pytorch (20.4 GB) must go.
        core.create_namespaced_pod("default", bound_gpu_pod("serve", TRITON, NODE))
        core.create_namespaced_pod("default", bound_gpu_pod("train", TENSORFLOW, NODE))

        def running(name: str) -> bool:
            return bool(core.read_namespaced_pod(name, "default").status.phase == "Running")

        wait_for(
            lambda: running("serve") and running("train"),
            timeout=240,
            interval=0.5,
            what="both workload pods running",
        )
        failed = [
            e.message
            for e in core.list_namespaced_event("default").items
            if e.reason in ("Failed", "ErrImagePull")
        ]
        assert failed == []  # no pod's own pull failed for lack of space
        assert keeper_images(core) == {TRAINER}
        # The report follows at the next pass that sees both pods running.
        wait_for(
            lambda: node_entry(prefetcher)["budgetBytes"] < 20_400_000_000,
            timeout=60,
            interval=0.5,
            what="the report's budget without room for pytorch",
        )
        assert "the node's pods use" in node_entry(prefetcher)["budgetReason"]
        assert not cluster.image_store(NODE).has(PYTORCH)  # the kubelet's image GC took it

        # The pods leave: their images' room stays held for budgetHold, so pytorch is not
        # pulled again at once (8 s of wall time: 240 of the 600 simulated seconds).
        for name in ("serve", "train"):
            core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
        wait_for(
            lambda: "(held)" in node_entry(prefetcher)["budgetReason"],
            timeout=60,
            interval=0.5,
            what="the report showing the budget held for the pods' images",
        )
        assert node_entry(prefetcher)["budgetReason"] == (
            "diskBudget 75% of 60.0 GB, less 34.3 GB for 2 image(s) the node's pods used "
            "within budgetHold 10m (held)"
        )
        until = time.monotonic() + 8.0
        while time.monotonic() < until:
            assert keeper_images(core) == {TRAINER}
            assert not pulling_on_node(core, PYTORCH)
            assert not cluster.image_store(NODE).has(PYTORCH)
            time.sleep(0.5)

        # Past the hold, the budget grows back: pytorch is pulled and kept again.
        wait_for(
            lambda: keeper_images(core) == {PYTORCH, TRAINER},
            timeout=240,
            interval=0.5,
            what="the keeper holding pytorch again",
        )
        assert node_entry(prefetcher)["budgetReason"] == "diskBudget 75% of 60.0 GB"
    finally:
        prefetchers.stop_all()
        api.close()
