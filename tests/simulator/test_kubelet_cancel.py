"""Deleting a pod whose image pull is in flight: a real kubelet pulls on; one that cancels
frees the node's pull queue and the registry at once."""

from __future__ import annotations

import pytest

from simulator.noderuntime import NodeRuntime
from simulator.nodes import NodeConfig
from tests.simulator.noderuntime_fixtures import MB, T0, make_pod, pod_status, sample_registries

PYTORCH = "nvcr.io/nvidia/pytorch:24.08-py3"


def _node(cancel: bool) -> NodeRuntime:
    config = NodeConfig(name="n1", bandwidth=100 * MB, cancel_pull_on_delete=cancel)
    return NodeRuntime(config, sample_registries(), T0)


@pytest.mark.parametrize("cancel", [False, True])
def test_deleting_a_puller_cancels_its_pull_only_on_a_kubelet_that_cancels(cancel: bool) -> None:
    node = _node(cancel)
    puller = make_pod("puller", PYTORCH, restartPolicy="Never")
    node.sync_pod(puller)
    node.advance(T0)
    node.sync_pod(make_pod("web", "busybox:1.36"))
    node.advance(T0 + 10)
    assert node.pulls_in_flight() == [PYTORCH]
    assert node.registries.active_transfers("nvcr.io") == 1
    puller["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    node.sync_pod(puller, T0 + 10)
    if cancel:
        # The pull stops: the registry is free at once, the workload pull starts next.
        assert node.pulls_in_flight() == []
        assert node.registries.active_transfers("nvcr.io") == 0
        node.advance(T0 + 13)
        assert pod_status(node, "web")["phase"] == "Running"
        assert node.store.find(PYTORCH) is None  # the bytes fetched are lost
    else:
        # As a real kubelet: the pull runs on (95 s of pytorch); the workload pull waits.
        node.advance(T0 + 13)
        assert node.pulls_in_flight() == [PYTORCH]
        assert pod_status(node, "web")["phase"] == "Pending"
        node.advance(T0 + 200)
        assert node.store.find(PYTORCH) is not None
        assert pod_status(node, "web")["phase"] == "Running"
