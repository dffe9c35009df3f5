"""The virtual scheduler: kube-scheduler's filters, ImageLocality, and pods waiting for room."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.scoring import resource_fit_score
from simulator.virtual.cluster import VirtualCluster
from simulator.virtual.pods import Pod, PodSpec
from simulator.virtual.policy import Policy
from simulator.virtual.scheduler import (
    MAX_CONTAINER_THRESHOLD,
    MIN_THRESHOLD,
    RESOURCES,
    Scheduler,
    allocatable,
    filter_problem,
    image_locality,
)
from tests.virtual.small_cluster import APP, BIG, GPU_IMAGE, pod, scenario


def test_image_locality_scales_size_by_spread_and_clamps_to_the_thresholds() -> None:
    size = 600 * 1024 * 1024
    half = image_locality((BIG,), {BIG: size}, {BIG: 0.5})
    expected = 100 * (size * 0.5 - MIN_THRESHOLD) / (MAX_CONTAINER_THRESHOLD - MIN_THRESHOLD)
    assert half == pytest.approx(expected)
    assert image_locality((BIG,), {}, {BIG: 1.0}) == 0.0
    assert image_locality((BIG,), {BIG: 10 * size}, {BIG: 1.0}) == 100.0


def run(pods: list[PodSpec], **kwargs: Any) -> VirtualCluster:
    cluster = VirtualCluster(scenario(**kwargs), pods, Policy(), 3600.0)
    cluster.run()
    return cluster


def test_the_scheduler_prefers_the_node_that_holds_the_image() -> None:
    # The first pod pulls big onto cpu-1 (alphabetical tie); the second, once it ran, goes
    # to the node that has the image although cpu-1 is now busier.
    cluster = run([pod("first", 0.0, BIG, cpu=2.0), pod("second", 100.0, BIG, cpu=0.1)])
    placed = {p.name: p.node for p in cluster.workload}
    assert placed == {"first": "cpu-1", "second": "cpu-1"}


def test_gpu_pods_need_toleration_selector_and_free_gpus() -> None:
    toleration = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)
    selector = {"nvidia.com/gpu.present": "true"}
    pods = [
        pod(
            f"train-{i}",
            0.0,
            GPU_IMAGE,
            duration=600.0,
            gpus=8,
            tolerations=toleration,
            node_selector=selector,
        )
        for i in range(3)
    ]
    cluster = run(pods, gpu_nodes=2)
    nodes = sorted(p.node for p in cluster.workload if p.bound_at == 0.0)
    assert nodes == ["gpu-1", "gpu-2"]
    waiting = next(p for p in cluster.workload if p.name == "train-2")
    # It waited for a node to free its 8 GPUs: bound when the first training pod ended.
    first_end = min(p.finished_at or 1e9 for p in cluster.workload if p.name != "train-2")
    assert waiting.bound_at == pytest.approx(first_end)


def test_a_pod_without_the_gpu_toleration_never_lands_on_a_gpu_node() -> None:
    cluster = run([pod(f"web-{i}", 0.0, cpu=15.0) for i in range(3)], cpu_nodes=2, gpu_nodes=1)
    assert {p.node for p in cluster.workload if p.node} == {"cpu-1", "cpu-2"}
    assert sum(1 for p in cluster.workload if p.bound_at is not None and p.bound_at > 0) == 1


BIN_PACKING = {
    "type": "MostAllocated",
    "resources": [
        {"name": "cpu", "weight": 1},
        {"name": "memory", "weight": 1},
        {"name": "nvidia.com/gpu", "weight": 3},
    ],
}


@pytest.mark.parametrize(
    ("scoring", "second_on", "whole_node_job_waits"),
    [(None, "gpu-2", True), (BIN_PACKING, "gpu-1", False)],
)
def test_most_allocated_packs_gpu_jobs_and_keeps_a_whole_node_free(
    scoring: dict[str, Any] | None, second_on: str, whole_node_job_waits: bool
) -> None:
    """Two 4-GPU jobs, then one that needs all 8 GPUs of a node: spread (the default), the
    two jobs take a node each and the third waits; packed, they share one node."""
    toleration = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)
    job: dict[str, Any] = {"duration": 600.0, "tolerations": toleration, "cpu": 8.0}
    job["memory"] = 64 * 2**30
    pods = [
        pod("half-1", 0.0, GPU_IMAGE, gpus=4, **job),
        pod("half-2", 10.0, GPU_IMAGE, gpus=4, **job),
        pod("whole", 20.0, GPU_IMAGE, gpus=8, **job),
    ]
    cluster = run(pods, cpu_nodes=0, gpu_nodes=2, scoring=scoring)
    placed = {p.name: p for p in cluster.workload}
    assert placed["half-1"].node == "gpu-1"
    assert placed["half-2"].node == second_on
    whole = placed["whole"]
    assert (whole.bound_at is not None and whole.bound_at > 20.0) == whole_node_job_waits


def reference_choice(scheduler: Scheduler, pod: Pod) -> str | None:
    """kube-scheduler's choice computed from scratch: every node filtered and scored anew."""
    live = [node for _, node in sorted(scheduler.nodes.items()) if not node.removed]
    feasible = []
    for node in live:
        alloc = allocatable(node)
        used = scheduler.used.get(node.name, {})
        free = {r: alloc[r] - used.get(r, 0.0) for r in RESOURCES}
        if filter_problem(pod, node, free) is None:
            feasible.append((node, alloc, free))
    if not feasible:
        return None
    images = pod.spec.images if pod.spec is not None else ()
    listed = {node.name: node.top_images() for node in live}
    spread = {i: sum(1 for held in listed.values() if i in held) / len(live) for i in images}
    scored = [
        (
            -(
                resource_fit_score(scheduler.scoring, free, alloc, pod.requests)
                + image_locality(images, listed[node.name], spread)
            ),
            node.name,
        )
        for node, alloc, free in feasible
    ]
    return min(scored)[1]


class CheckedScheduler(Scheduler):
    """The scheduler, each of its choices checked against the reference."""

    def choose(self, pod: Pod) -> str | None:
        choice = super().choose(pod)
        assert choice == reference_choice(self, pod)
        return choice


GPU_JOB: dict[str, Any] = {
    "tolerations": ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
    "node_selector": {"nvidia.com/gpu.present": "true"},
}
POD = st.tuples(
    st.floats(0.0, 1800.0),
    st.sampled_from([APP, BIG, GPU_IMAGE]),
    st.sampled_from([0.5, 4.0, 15.0]),
    st.sampled_from([0, 2, 8]),
    st.sampled_from([30.0, 300.0, None]),
)


@settings(max_examples=25, deadline=None)
@given(st.lists(POD, max_size=40), st.sampled_from([None, BIN_PACKING]))
def test_kept_scores_and_node_lists_choose_as_a_fresh_look_at_every_node(
    pods: list[tuple[float, str, float, int, float | None]], scoring: dict[str, Any] | None
) -> None:
    """Free resources, fit scores, image lists and filter results kept between choices give
    the choice of checking and scoring every node anew, while pods come and go, images are
    pulled and collected, and nodes are cordoned, turn NotReady and join."""
    specs = [
        pod(f"p{i}", at, image, duration, cpu=cpu, gpus=gpus, **(GPU_JOB if gpus else {}))
        for i, (at, image, cpu, gpus, duration) in enumerate(pods)
    ]
    events: list[dict[str, Any]] = [
        {"at": "5m", "node": "cpu-1", "action": "cordon"},
        {"at": "10m", "node": "gpu-1", "action": "notready"},
        {"at": "12m", "pool": "cpu", "action": "join", "count": 1},
        {"at": "15m", "node": "cpu-1", "action": "uncordon"},
        {"at": "20m", "node": "gpu-1", "action": "ready"},
        {"at": "25m", "node": "cpu-2", "action": "remove"},
    ]
    work = scenario(cpu_nodes=2, gpu_nodes=2, disk="9Gi", events=events, scoring=scoring)
    cluster = VirtualCluster(work, specs, Policy(), 3600.0)
    cluster.scheduler = CheckedScheduler(cluster.nodes, work.scoring)
    cluster.run()
    assert all(p.node for p in cluster.workload if p.bound_at is not None)


def test_equal_scores_go_to_the_first_node_by_name_or_to_a_seeded_draw() -> None:
    # Ten pods one after another, each alone on the cluster, their 1 MB image below
    # ImageLocality's threshold: every node scores the same for each.
    tiny = "ghcr.io/image-sync/image-sync:0.1.0"
    pods = [pod(f"p{i}", i * 100.0, tiny, duration=10.0) for i in range(10)]

    def placed(seed: int | None) -> list[str]:
        s = replace(scenario(cpu_nodes=4), scheduler_seed=seed)
        cluster = VirtualCluster(s, pods, Policy(), 3600.0)
        cluster.run()
        return [p.node for p in cluster.workload]

    assert set(placed(None)) == {"cpu-1"}
    drawn = placed(7)
    assert drawn == placed(7)  # the same seed, the same run
    assert len(set(drawn)) > 1 and drawn != placed(8)
