"""End to end on the wall-clock simulator: a puller yields to a workload pod that starts on its
node and misses an image (a PrefetchYielded Event, image_sync_prefetcher_pulls_yielded_total), on kubelets
that finish a deleted pod's pull (as real ones) and on kubelets that cancel it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from kubernetes import client

from simulator.cluster import SimCluster
from simulator.scenario import load_scenario
from tests.prefetcher.conftest import (
    CUDA,
    POD_NAMESPACE,
    Running,
    bound_gpu_pod,
    declare,
    install_image_sync,
    sim_config,
    untyped,
)
from tests.waiting import wait_for

PYTORCH = "nvcr.io/nvidia/pytorch:24.08-py3"  # 9.5 GB: about 330 simulated seconds on gpu-1
SPEED = 30.0  # the pull takes about 11 s of wall time: room for the prefetcher to react
NODE = "gpu-1"


@pytest.fixture(params=[False, True], ids=["kubelet-finishes-pull", "kubelet-cancels-pull"])
def cancelling(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def cluster(cancelling: bool) -> Iterator[Any]:
    scenario = load_scenario("gpu-cluster").with_kubelets(cancel_pull_on_delete=cancelling)
    with SimCluster(scenario, speed=SPEED) as sim:
        api = sim.api_client()
        install_image_sync(api)
        api.close()
        yield sim


def has(sim: Any, image: str) -> bool:
    return bool(sim.image_store(NODE).has(image))


def yielded_total(prefetcher: Any) -> float:
    text = requests.get(f"http://127.0.0.1:{prefetcher.server.port}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith('image_sync_prefetcher_pulls_yielded_total{registry="nvcr.io"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_puller_yields_to_a_starting_pod_that_misses_an_image(
    cluster: Any, cancelling: bool
) -> None:
    api = cluster.api_client()
    core = untyped(client.CoreV1Api(api))
    declare(api, PYTORCH, {"kubernetes.io/hostname": NODE})
    prefetchers = Running(cluster)
    try:
        prefetcher = prefetchers.start(sim_config())

        def pulling() -> bool:
            # In flight, not only queued: the kubelet's queue puts a workload pod's pull ahead
            # of a queued one of our (lowest-priority) pullers, never ahead of one in flight.
            runtime = cluster.kubelets.runtime(NODE)
            return runtime is not None and PYTORCH in runtime.pulls_in_flight()

        wait_for(pulling, timeout=60, interval=0.1, what="the prefetch of pytorch in flight")
        assert not has(cluster, PYTORCH)
        core.create_namespaced_pod("default", bound_gpu_pod("check", CUDA, NODE))

        events = wait_for(
            lambda: [
                e
                for e in core.list_namespaced_event(POD_NAMESPACE).items
                if e.reason == "PrefetchYielded"
            ],
            timeout=60,
            interval=0.1,
            what="a PrefetchYielded Event",
        )
        assert events[0].type == "Normal"
        assert "yielded to pod default/check starting on the node" in events[0].message
        assert PYTORCH in events[0].message
        assert wait_for(lambda: yielded_total(prefetcher) >= 1, timeout=30, what="the metric")

        def running() -> bool:
            pod = core.read_namespaced_pod("check", "default")
            return bool(pod.status.phase == "Running")

        wait_for(running, timeout=60, interval=0.05, what="the workload pod running")
        if cancelling:
            # The deleted puller's pull stopped: the pod's own pull went first.
            assert not has(cluster, PYTORCH)
        else:
            # As on real kubelets: the pull in flight ran to its end before the pod's.
            assert has(cluster, PYTORCH)
        # Either way the prefetch is planned again once the pod started, and completes.
        wait_for(lambda: has(cluster, PYTORCH), timeout=120, interval=0.2, what="pytorch pulled")
    finally:
        prefetchers.stop_all()
        api.close()
