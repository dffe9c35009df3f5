"""Prefetches take at most `prefetchBandwidthShare` of a registry's known bandwidth."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from prefetcher.model import ContainerObservation, ManagedPod, Snapshot, StartingPod
from prefetcher.planner import plan
from prefetcher.pods import puller_name
from tests.prefetcher.test_core_fixtures import APP, CUDA, GB, NOW, PYTORCH, config, image, node

MB = 1_000_000
NODES = tuple(node(f"n{i:02d}", gpu=8) for i in range(10))
SNAP = Snapshot(now=NOW, nodes=NODES, images=(image(CUDA, gpu=True, size=GB),))
# A workload pod pulling from nvcr.io on a node of its own.
PULLING = StartingPod(
    node="other", pod="ml/train-0", since=NOW - timedelta(seconds=5), registries=("nvcr.io",)
)


def nvcr_pulls(snap: Snapshot, **overrides: object) -> int:
    result = plan(snap, config(**overrides))
    return sum(p.images[0] == CUDA for p in result.pulls)


def test_without_a_known_bandwidth_only_the_pull_caps_apply() -> None:
    assert nvcr_pulls(SNAP) == 10


def test_while_a_workload_pod_pulls_a_known_bandwidth_caps_prefetches_at_their_share() -> None:
    known = {"registry_bandwidth": (("nvcr.io", 250 * MB),)}
    # Nobody else pulls from nvcr.io: only the pull caps apply.
    assert nvcr_pulls(SNAP, **known, pull_deadline_min_bandwidth=50 * MB) == 10
    busy = replace(SNAP, starting=(PULLING,))
    # 250 MB/s, half of it for prefetches, each expected at pullDeadlineMinBandwidth (10 MB/s).
    assert nvcr_pulls(busy, **known) == 10  # 12 would fit
    assert nvcr_pulls(busy, **known, pull_deadline_min_bandwidth=50 * MB) == 2
    assert (
        nvcr_pulls(busy, **known, pull_deadline_min_bandwidth=50 * MB, prefetch_bandwidth_share=0.2)
        == 1
    )  # never none at all
    # Measured: our pulls from nvcr.io got 25 MB/s each; 125 MB/s hold five.
    measured = replace(busy, pull_throughput={"nvcr.io": 25 * MB})
    result = plan(measured, config(**known))
    assert sum(p.images[0] == CUDA for p in result.pulls) == 5
    waiting = [c for c in result.cells if c.image == CUDA and c.state == "missing"]
    assert waiting[0].message == "waiting: prefetches from nvcr.io at their share of its bandwidth"
    # Harbor's bandwidth is not known, and the pod does not pull from it: not capped.
    harbor = replace(measured, images=(image(APP),))
    assert len(plan(harbor, config(**known)).pulls) == 10


def test_a_finished_puller_is_measured_for_the_next_pass() -> None:
    created = NOW - timedelta(seconds=300)

    def at(seconds: float) -> datetime:
        return created + timedelta(seconds=seconds)

    done = ManagedPod(
        name=puller_name("n00", [PYTORCH, CUDA]),
        uid="p",
        node="n00",
        role="puller",
        images=(PYTORCH, CUDA),
        phase="Succeeded",
        created=created,
        containers=(
            # The tools image waited 100 s for the node's queue: not part of any pull.
            ContainerObservation(
                "tools",
                "ghcr.io/x/tools:1",
                "terminated",
                exit_code=0,
                finished_at=at(100),
                init=True,
            ),
            # pytorch was already on the node (started a second later): no sample.
            ContainerObservation("c0", PYTORCH, "terminated", exit_code=0, started_at=at(101)),
            ContainerObservation("c1", CUDA, "terminated", exit_code=0, started_at=at(151)),
        ),
    )
    sized = replace(SNAP, images=(image(CUDA, gpu=True, size=GB), image(PYTORCH, size=20 * GB)))
    result = plan(replace(sized, pods=(done,)), config())
    # cuda: 1 GB on disk is about 455 MB sent (2.2 bytes on disk per byte sent), in 50 s.
    assert round(result.pull_throughput["nvcr.io"] / MB) == 9
    # Carried on when no puller finished this pass.
    again = plan(replace(SNAP, pull_throughput=result.pull_throughput), config())
    assert again.pull_throughput == result.pull_throughput


def test_with_a_known_bandwidth_a_workload_pull_throttles_instead_of_pausing() -> None:
    snap = replace(SNAP, starting=(PULLING,))
    assert nvcr_pulls(snap) == 0  # paused at nvcr.io while the pod pulls from it
    known = {"registry_bandwidth": (("nvcr.io", 250 * MB),), "pull_deadline_min_bandwidth": 50 * MB}
    assert nvcr_pulls(snap, **known) == 2  # within the share
