"""A node's pull queue and image GC in virtual time."""

from __future__ import annotations

import dataclasses

import pytest

from simulator.virtual.loop import EventLoop
from simulator.virtual.network import Network
from simulator.virtual.node import PREFETCH, WORKLOAD, PullResult, VirtualNode
from tests.virtual.small_cluster import APP, BIG, GPU_IMAGE, scenario


def make_node(
    disk: str = "200Gi", cancel: bool = False, parallel: int = 1
) -> tuple[EventLoop, VirtualNode]:
    setup = scenario(cpu_nodes=1, disk=disk)
    loop = EventLoop()
    registries = setup.build_registries(0.0)
    config = dataclasses.replace(
        setup.initial_nodes()[0],
        cancel_pull_on_delete=cancel,
        serialize_image_pulls=parallel == 1,
        max_parallel_image_pulls=parallel if parallel > 1 else 0,
    )
    node = VirtualNode(config, "cpu", loop, Network(loop, registries), registries, joined=0.0)
    return loop, node


def test_pulls_are_serialized_and_a_workload_pull_waits_behind_a_prefetch() -> None:
    loop, node = make_node()
    done: dict[str, float] = {}
    node.pull(BIG, False, PREFETCH, lambda r: done.setdefault("big", loop.now))
    job = node.pull(APP, False, WORKLOAD, lambda r: done.setdefault("app", loop.now))
    loop.run(100.0)
    # 1 GB at the node's 50 MB/s, then 100 MB: the workload pull starts only after 20 s.
    assert done == {"big": pytest.approx(20.0), "app": pytest.approx(22.0)}
    assert job.behind_prefetch and job.started == pytest.approx(20.0)


def test_with_parallel_pulls_a_workload_pull_starts_beside_a_prefetch_sharing_the_link() -> None:
    loop, node = make_node(parallel=2)
    done: dict[str, float] = {}
    node.pull(BIG, False, PREFETCH, lambda r: done.setdefault("big", loop.now))
    job = node.pull(APP, False, WORKLOAD, lambda r: done.setdefault("app", loop.now))
    third = node.pull(GPU_IMAGE, False, WORKLOAD, lambda r: done.setdefault("gpu", loop.now))
    loop.run(1000.0)
    # At once, at half the node's 50 MB/s each: 100 MB in 4 s (serialized: 22 s).
    assert job.started == pytest.approx(0.0) and done["app"] == pytest.approx(4.0, abs=0.5)
    # maxParallelImagePulls: 2, so the third waits for a slot; 1 GB at 25 MB/s throughout.
    assert third.started == pytest.approx(done["app"])
    assert done["big"] == pytest.approx(40.0, abs=0.5) and node.has(BIG)


@pytest.mark.parametrize("cancel", [False, True])
def test_deleting_the_puller_stops_its_pull_in_flight_only_on_a_kubelet_that_cancels(
    cancel: bool,
) -> None:
    loop, node = make_node(cancel=cancel)
    done: dict[str, float] = {}

    def prefetched(result: PullResult) -> None:
        done["big"] = loop.now

    prefetch = node.pull(BIG, False, PREFETCH, prefetched)
    job = node.pull(APP, False, WORKLOAD, lambda r: done.setdefault("app", loop.now))
    loop.run(5.0)
    node.withdraw(prefetch, prefetched)  # the puller pod is deleted 5 s into its pull
    loop.run(100.0)
    transfer = node.network.log[0]
    if cancel:
        # The queue and the registry are free at once; the 250 MB fetched are lost.
        assert done == {"app": pytest.approx(7.0)} and not node.has(BIG)
        assert transfer.ended == pytest.approx(5.0) and not transfer.ok
        assert transfer.sent == pytest.approx(250_000_000, rel=0.01)
        assert job.started == pytest.approx(5.0)
    else:
        # As a real kubelet: the pull runs on to the end; the workload pull waits for it.
        assert done == {"app": pytest.approx(22.0)} and node.has(BIG)
        assert transfer.ok and job.started == pytest.approx(20.0)


def test_a_pull_of_an_image_already_in_flight_joins_it() -> None:
    loop, node = make_node()
    done: list[float] = []
    first = node.pull(APP, False, PREFETCH, lambda r: done.append(loop.now))
    second = node.pull(APP, False, WORKLOAD, lambda r: done.append(loop.now))
    loop.run(10.0)
    assert first is second and done == [pytest.approx(2.0)] * 2
    assert len(node.network.log) == 1


def test_a_failed_pull_reports_the_registry_error() -> None:
    loop, node = make_node()
    results: list[PullResult] = []
    node.pull("harbor.example.internal/library/missing:1", False, WORKLOAD, results.append)
    loop.run(1.0)
    assert not results[0].ok and "not found" in results[0].message


def test_image_gc_removes_the_oldest_unused_image_and_spares_running_ones() -> None:
    # 10 GiB disk: the high threshold (85 %) is 8.5 GiB; pytorch 4 GB + big 2 GB + app 0.2 GB.
    loop, node = make_node(disk="7GiB")
    for image in (GPU_IMAGE, BIG):
        node.pull(image, False, WORKLOAD, lambda r: None)
    loop.run(200.0)
    pytorch_id = node.image_id(GPU_IMAGE)
    assert pytorch_id is not None and node.has(BIG)
    node.running_images[pytorch_id] += 1  # a running container uses pytorch
    loop.run(400.0)
    node.collect(need=2_000_000_000)
    assert node.has(GPU_IMAGE), "a running container's image is never collected"
    assert not node.has(BIG) and BIG in node.gc_removed
